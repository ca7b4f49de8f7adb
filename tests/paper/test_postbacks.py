"""Kite postbacks: shape and checksum as in the fixture, asynchronous, duplicated or reordered
on demand."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.fixtures.paper import PaperBroker, kite_session
from tests.paths import KITE_FIXTURES

FIXTURES = KITE_FIXTURES
ROOMY = {"orders": ["1000/s"], "orderbook": ["1000/s"], "other": ["1000/s"], "login": ["1000/s"]}


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length))
                with received.lock:
                    received.bodies.append(body)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/postback/kite1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.bodies)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


def test_postback_on_status_change_with_fixture_shape_and_checksum(paper: PaperBroker, receiver: Receiver) -> None:
    user = paper.add_user(broker="kite", caps=ROOMY, postback_url=receiver.url)
    kite = kite_session(paper, user)
    order_id = kite.place_order(variety="regular", exchange="NSE", tradingsymbol="SBIN", transaction_type="BUY",
                                quantity=1, product="CNC", order_type="MARKET", market_protection=-1, tag="pb1")
    bodies = paper.wait_for(lambda: [b for b in receiver.snapshot() if b["status"] == "COMPLETE"] or None)
    body = bodies[0]
    fixture = json.loads((FIXTURES / "postback.json").read_text())
    assert set(fixture) <= set(body)
    assert body["order_id"] == order_id and body["tag"] == "pb1" and body["user_id"] == user.user_id
    expected = hashlib.sha256(f"{order_id}{body['order_timestamp']}{user.api_secret}".encode()).hexdigest()
    assert body["checksum"] == expected
    assert [b["status"] for b in receiver.snapshot()] == ["OPEN", "COMPLETE"]


def test_duplicate_and_reordered_postbacks(paper: PaperBroker, receiver: Receiver) -> None:
    user = paper.add_user(broker="kite", caps=ROOMY, postback_url=receiver.url)
    kite = kite_session(paper, user)
    paper.fault(kind="duplicate_postback", broker="kite", count=1)
    paper.fault(kind="reorder_postbacks", broker="kite", count=1)
    kite.place_order(variety="regular", exchange="NSE", tradingsymbol="SBIN", transaction_type="BUY",
                     quantity=1, product="CNC", order_type="MARKET", market_protection=-1)
    # OPEN is held back (reorder), COMPLETE goes out twice (duplicate), then the held OPEN.
    statuses = paper.wait_for(lambda: [b["status"] for b in receiver.snapshot()] if len(receiver.snapshot()) >= 3
                              else None)
    assert statuses == ["COMPLETE", "COMPLETE", "OPEN"]
