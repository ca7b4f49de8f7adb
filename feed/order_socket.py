"""Order-update sockets (for brokers that push order updates on a socket of their own): one thread per account, in the feed process.

Each thread: read the account's jwt from the token store, connect with the broker's headers
(``Authorization: Bearer <jwt>``), send the text heartbeat (``ping`` every 10 s; the server
answers ``pong``), hand every JSON message to :func:`feed.orderupdates.on_broker_message`,
and reconnect with exponential backoff and full jitter (first retry immediate) when the
socket drops, stays silent past the watchdog timeout, or the token changes.

After every successful connect it requests one reconcile of the account: an update that
happened while the socket was down (or before the process started) is then still seen.
The socket only moves bytes; parsing is the broker's ``updates``
(:class:`common.brokers.contracts.OrderUpdates`): ``order_socket_headers(jwt, api_key=...)``,
``parse_message``, ``socket_error`` and ``order_socket_messages()`` (sent after every connect,
for a broker that pushes nothing until asked).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis
import websocket

from common import keys
from common.brokers import broker
from common.settings import Account
from feed import orderupdates
from feed.session import backoff_s

__all__ = ["OrderSocket", "start_order_sockets"]

log = logging.getLogger("feed.order_socket")

HEARTBEAT_TTL_S = 30


def _read_token(account: str) -> tuple[str, str] | None:
    """(jwt, version) of the account from the token store, or None (not logged in, or expired)."""
    from common.tokens import get_token

    tok = get_token(account)
    if tok is None or not tok.access_token:
        return None
    return tok.access_token, str(tok.version)


class OrderSocket(threading.Thread):
    """The order-update socket of one account. Stops when ``stop`` is set."""

    CONNECT_TIMEOUT_S = 5.0
    HEALTHY_AFTER_S = 2.0  # frames for this long make a session healthy (its retry is immediate)

    def __init__(
        self,
        account: Account,
        stop: threading.Event,
        *,
        ping_interval_s: float = 10.0,
        stale_after_s: float = 25.0,
        backoff_base_s: float = 0.25,
        backoff_max_s: float = 30.0,
    ) -> None:
        super().__init__(name=f"order-socket-{account.name}", daemon=True)
        self.account = account
        self.stop_event = stop
        self._r: redis.Redis | None = None
        self.ping_interval_s = ping_interval_s
        self.stale_after_s = stale_after_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.updates = broker(account.broker).updates
        self.connects = 0
        self.messages = 0
        self.connected = threading.Event()  # set while a socket is up (tests wait on it)
        self._ws: websocket.WebSocket | None = None
        self._last_hb = 0.0

    @property
    def r(self) -> redis.Redis:
        if self._r is None:
            from common.redis import get_redis

            self._r = get_redis()
        return self._r

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        attempt = 0
        while not self.stop_event.is_set():
            if _read_token(self.account.name) is None:
                # Not logged in yet (or the session ended at midnight): look again each second
                # (the token store caches and is told of new tokens), not with growing backoff,
                # so the socket is up within a second of the daily login.
                self._heartbeat(connected=False)
                self.stop_event.wait(1.0)
                continue
            healthy = False
            try:
                healthy = self._session()
            except Exception as exc:  # any failure means: reconnect (logged, never fatal)
                log.warning("%s: order socket: %s: %s", self.account.name, type(exc).__name__, exc)
            finally:
                self.connected.clear()
                self._close()
                self._heartbeat(connected=False, force=True)
            if self.stop_event.is_set():
                break
            attempt = 0 if healthy else attempt + 1
            # Full jitter; the first retry after a healthy session is immediate.
            self.stop_event.wait(backoff_s(attempt, self.backoff_base_s, self.backoff_max_s))

    def _close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            # Closing a dead socket may fail in several ways; none matter.
            with contextlib.suppress(Exception):
                ws.close(timeout=0.2)

    def _session(self) -> bool:
        """One connection, until it drops. True when it was healthy (frames for ``HEALTHY_AFTER_S``)."""
        token = _read_token(self.account.name)
        if token is None:
            return False
        jwt, version = token
        ws = websocket.create_connection(
            self.account.order_ws_url,
            header=self.updates.order_socket_headers(jwt, api_key=self.account.api_key),
            timeout=self.CONNECT_TIMEOUT_S,
            enable_multithread=True,
        )
        self._ws = ws
        # Some brokers push nothing until the socket subscribes to order events.
        for text in self.updates.order_socket_messages():
            ws.send(text)
        self.connects += 1
        self.connected.set()
        log.info("%s: order socket connected (%d)", self.account.name, self.connects)
        # Whatever happened while we were not listening is in the order book: reconcile once.
        orderupdates.request_reconcile(self.account.name, "order socket connected", r=self.r)
        self._heartbeat(connected=True, force=True)
        ws.settimeout(min(0.5, self.ping_interval_s))
        healthy = False
        started = last_frame = last_ping = time.monotonic()
        last_token_check = last_frame
        while not self.stop_event.is_set() and self._ws is ws:
            now = time.monotonic()
            if now - last_ping >= self.ping_interval_s:
                ws.send("ping")
                last_ping = now
            if now - last_frame > self.stale_after_s:
                log.warning(
                    "%s: order socket silent for %.0f s: reconnecting", self.account.name, now - last_frame
                )
                return healthy
            if now - last_token_check >= 1.0:
                last_token_check = now
                fresh = _read_token(self.account.name)
                if fresh is not None and fresh[1] != version:
                    log.info("%s: token changed: order socket reconnects", self.account.name)
                    return True
            try:
                opcode, data = ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                continue
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return healthy
            last_frame = time.monotonic()
            # Healthy = it carried frames for a while; a server that accepts and drops at once
            # must meet growing backoff, not a hot reconnect loop.
            healthy = last_frame - started >= self.HEALTHY_AFTER_S
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                self._on_frame(data)
            self._heartbeat(connected=True)
        return healthy

    def _on_frame(self, data: bytes) -> None:
        text = data.decode("utf-8", "replace").strip()
        if not text or text == "pong":
            return
        try:
            payload = json.loads(text)
        except ValueError:
            log.warning("%s: order socket: not JSON: %.100r", self.account.name, text)
            return
        if not isinstance(payload, dict):
            return
        err = self.updates.socket_error(payload)
        if err:
            log.warning("%s: order socket error message: %s", self.account.name, err)
            return
        self.messages += 1
        try:
            orderupdates.on_broker_message(self.account, payload, "socket")
        except Exception:  # one bad update must not take the socket down; reconcile will catch up
            log.exception("%s: order update failed", self.account.name)

    def _heartbeat(self, *, connected: bool, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_hb < 1.0:
            return
        self._last_hb = now
        try:
            key = keys.order_socket_heartbeat(self.account.name)
            pipe = self.r.pipeline(transaction=False)
            pipe.hset(
                key,
                mapping={
                    "connected": int(connected),
                    "last_frame_ms": int(time.time() * 1000),
                    "messages": self.messages,
                    "reconnects": max(0, self.connects - 1),
                },
            )
            pipe.expire(key, HEARTBEAT_TTL_S)
            pipe.execute()
        except redis.RedisError:
            pass  # health is best effort; the socket keeps going


def start_order_sockets(
    accounts: Iterable[Account], stop_event: threading.Event, **kw: Any
) -> list[threading.Thread]:
    """Start one order-update socket thread per account whose broker has one and a URL.

    Other accounts get none: their updates come as postbacks and on the ticker socket.
    """
    threads: list[threading.Thread] = []
    for acct in accounts:
        if not broker(acct.broker).updates.ORDER_SOCKET or not acct.order_ws_url:
            continue
        t = OrderSocket(acct, stop_event, **kw)
        t.start()
        threads.append(t)
    return threads
