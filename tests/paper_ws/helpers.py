"""Helpers for the WebSocket tests: the paper broker (``python -m paper``, from
tests/fixtures/paper.py) seen over HTTP: logged-in users, faults, the tick clock's control routes."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import requests
import websocket

from devtools.waiting import wait_for as _wait_for
from tests.fixtures.paper import PaperBroker, fresh_totp, kite_web_login

T = TypeVar("T")
_ids = itertools.count(1)


def wait_for(predicate: Callable[[], T], timeout_s: float = 5.0, what: str = "condition") -> T:
    """:func:`devtools.waiting.wait_for`, polling fast (socket events come within milliseconds)."""
    return _wait_for(predicate, timeout_s, interval_s=0.005, what=what)


def wait_closed_by_server(ws: websocket.WebSocket, timeout_s: float = 5.0) -> None:
    """Wait for the server to close ``ws``: a close frame, or the connection gone."""

    def closed() -> bool:
        try:
            op, _ = ws.recv_data(control_frame=True)
        except (websocket.WebSocketConnectionClosedException, OSError):
            return True
        return op == websocket.ABNF.OPCODE_CLOSE

    wait_for(closed, timeout_s, "the server to close the socket")


def assert_dropped_without_close_frame(ws: websocket.WebSocket) -> None:
    """Read ``ws`` until the connection ends; a close frame on the way fails (a drop is abrupt)."""
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        while True:
            op, _ = ws.recv_data(control_frame=True)
            assert op != websocket.ABNF.OPCODE_CLOSE, "expected an abrupt drop, got a close frame"


def assert_silent(ws: websocket.WebSocket, for_s: float = 0.6) -> None:
    """Drain what was in flight, then nothing (not even a heartbeat) for ``for_s``; the socket's
    timeout is 5 s again after."""
    ws.settimeout(for_s)
    with pytest.raises(websocket.WebSocketTimeoutException):
        while True:
            ws.recv()
    ws.settimeout(5)


@dataclass
class Session:
    """A logged-in user as the ticker sockets need it."""

    broker: str
    user_id: str
    api_key: str
    access_token: str = ""  # Kite
    jwt_token: str = ""  # Angel
    feed_token: str = ""  # Angel


class WSBroker:
    """The running paper broker: URLs, sessions from its own login endpoints, faults, ticks."""

    def __init__(self, paper: PaperBroker) -> None:
        self.paper = paper
        self.http_url = paper.url
        self.ws_url = "ws" + paper.url[len("http"):]

    def _user_id(self, prefix: str) -> str:
        return f"{prefix}{os.getpid() % 1000:03d}{next(_ids):03d}"

    def kite_user(self) -> Session:
        """A Kite user logged in through /api/login, /api/twofa, /connect/login, /session/token."""
        user = self.paper.add_user(broker="kite", user_id=self._user_id("KW"))
        request_token = kite_web_login(self.http_url, user.user_id, user.password, user.totp_secret, user.api_key)
        checksum = hashlib.sha256((user.api_key + request_token + user.api_secret).encode()).hexdigest()
        r = requests.post(
            f"{self.http_url}/session/token",
            data={"api_key": user.api_key, "request_token": request_token, "checksum": checksum},
            headers={"X-Kite-Version": "3"},
            timeout=5,
        )
        r.raise_for_status()
        return Session("kite", user.user_id, user.api_key, access_token=r.json()["data"]["access_token"])

    def angel_user(self) -> Session:
        """An Angel user logged in through loginByPassword."""
        user = self.paper.add_user(broker="angel", user_id=self._user_id("AW"))
        r = requests.post(
            f"{self.http_url}/rest/auth/angelbroking/user/v1/loginByPassword",
            json={"clientcode": user.user_id, "password": user.password, "totp": fresh_totp(user.totp_secret)},
            headers={"X-PrivateKey": user.api_key, "Content-Type": "application/json", "Accept": "application/json",
                     "X-UserType": "USER", "X-SourceID": "WEB"},
            timeout=5,
        )
        r.raise_for_status()
        data = r.json()["data"]
        return Session("angel", user.user_id, user.api_key, jwt_token=data["jwtToken"], feed_token=data["feedToken"])

    def fault(self, kind: str, broker: str, user_id: str | None = None, **kw: Any) -> None:
        self.paper.fault(kind=kind, broker=broker, user_id=user_id, **kw)

    def ticks(self, **kw: Any) -> dict[str, Any]:
        """``POST /_paper/ticks``: interval_ms, paused, steps."""
        r = requests.post(f"{self.http_url}/_paper/ticks", json=kw, timeout=10)
        r.raise_for_status()
        return dict(r.json())

    def last_sent(self, broker: str, token: int | str) -> list[dict[str, Any]]:
        r = requests.get(f"{self.http_url}/_paper/ticks/last", params={"broker": broker, "token": str(token)}, timeout=5)
        r.raise_for_status()
        return list(r.json())

    def requests(self) -> list[dict[str, Any]]:
        return self.paper.requests()

    def kite_tokens(self, n: int) -> list[int]:
        """``n`` tradable instrument tokens from the Kite instrument dump."""
        r = requests.get(f"{self.http_url}/instruments/NSE", timeout=10)
        r.raise_for_status()
        lines = r.text.splitlines()[1:]
        return [int(line.split(",", 1)[0]) for line in lines[:n]]


__all__ = ["Session", "WSBroker", "wait_for"]
