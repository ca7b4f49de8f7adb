"""The official KiteTicker driven from a test thread (its Twisted reactor runs once per process)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from kiteconnect import KiteTicker
from twisted.internet import reactor


class TickerProbe:
    """A KiteTicker that records what it receives; commands run on the reactor thread."""

    def __init__(self, api_key: str, access_token: str, root: str,
                 on_connect: Callable[[KiteTicker], None] | None = None) -> None:
        self.kt = KiteTicker(api_key, access_token, root=root, reconnect=False)
        self.lock = threading.Lock()
        self.ticks: list[dict[str, Any]] = []
        self.binary: list[bytes] = []
        self.texts: list[str] = []
        self.orders: list[dict[str, Any]] = []
        self.errors: list[Any] = []
        self.connected = threading.Event()
        self.closed = threading.Event()
        self.close_code: Any = None

        def _connect(ws: KiteTicker, response: Any) -> None:
            if on_connect is not None:
                on_connect(ws)
            self.connected.set()

        def _message(ws: KiteTicker, payload: Any, is_binary: bool) -> None:
            with self.lock:
                if is_binary:
                    self.binary.append(bytes(payload))
                else:
                    self.texts.append(payload.decode() if isinstance(payload, bytes) else payload)

        def _ticks(ws: KiteTicker, ticks: list[dict[str, Any]]) -> None:
            with self.lock:
                self.ticks.extend(ticks)

        def _order(ws: KiteTicker, data: dict[str, Any]) -> None:
            with self.lock:
                self.orders.append(data)

        def _error(ws: KiteTicker, code: Any, reason: Any) -> None:
            with self.lock:
                self.errors.append((code, reason))

        def _close(ws: KiteTicker, code: Any, reason: Any) -> None:
            self.close_code = code
            self.closed.set()

        self.kt.on_connect = _connect
        self.kt.on_message = _message
        self.kt.on_ticks = _ticks
        self.kt.on_order_update = _order
        self.kt.on_error = _error
        self.kt.on_close = _close

    def start(self) -> TickerProbe:
        if reactor.running:
            reactor.callFromThread(self.kt.connect, threaded=True)
        else:
            self.kt.connect(threaded=True)
        return self

    def do(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the reactor thread (autobahn is not thread-safe)."""
        reactor.callFromThread(fn)

    def latest(self, token: int) -> dict[str, Any] | None:
        with self.lock:
            for tick in reversed(self.ticks):
                if tick["instrument_token"] == token:
                    return tick
        return None

    def stop(self) -> None:
        reactor.callFromThread(self.kt.close)
