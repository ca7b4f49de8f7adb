"""Small helpers for the order tests: reading the paper log, a recording Kite stand-in, slow
TCP connections."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from common.models import Order, OrderState, OrderUpdate
from common.redis import server_time_ms


def order_requests(log: list[dict[str, Any]], user_id: str, method: str | None = "POST") -> list[dict[str, Any]]:
    """The order-class requests of one user at the paper broker (place = POST), in arrival order."""
    return [e for e in log if e["endpoint_class"] == "orders" and e["user_id"] == user_id
            and (method is None or e["method"] == method)]


def make_order(**kw: Any) -> Order:
    """A market order of account ``acct1`` for 1 NSE:INFY BUY; ``kw`` sets any other field."""
    return Order(**{"account": "acct1", "exchange": "NSE", "symbol": "INFY", "side": "BUY", "quantity": 1, **kw})


def make_update(o: Order, state: OrderState, **kw: Any) -> OrderUpdate:
    """An update of ``o`` (broker id B1, source ``test``) to ``state``; ``kw`` sets any other field."""
    return OrderUpdate(account=o.account, client_order_id=o.client_order_id, broker_order_id="B1",
                       state=state, source="test", **kw)


class KiteRecorder:
    """A Kite REST stand-in on a free local port: every POST is answered with order id ``B1``
    and its arrival noted in ``arrived`` (Redis server time, ms)."""

    def __init__(self, r: Any) -> None:
        self.arrived: list[int] = []
        arrived = self.arrived

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived.append(server_time_ms(r))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps({"status": "success", "data": {"order_id": "B1"}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def slow_connections(monkeypatch: pytest.MonkeyPatch, delay_s: float) -> None:
    """Every new HTTP connection takes ``delay_s`` more (a lost SYN, a slow DNS answer or TLS handshake)."""
    import urllib3.connection

    real = urllib3.connection.HTTPConnection._new_conn

    def slow(self: Any) -> Any:
        time.sleep(delay_s)
        return real(self)

    monkeypatch.setattr(urllib3.connection.HTTPConnection, "_new_conn", slow)
