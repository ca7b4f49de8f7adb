"""End to end on the paper broker, with real workers: ``place_order(...).wait()`` is fed by the
push path (Kite postbacks through the receiver; Angel's order-update socket), and nobody polls
the order book while the strategy waits."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest

from common import keys
from common.client import place_order
from feed.order_socket import start_order_sockets
from feed.postback import create_app, serve_in_thread
from tests.fixtures.accounts import logged_in, paper_user_of

pytestmark = pytest.mark.slow

ORDER_BOOK_CLASSES = ("orderbook",)


def book_polls(log: list[dict[str, Any]], user_id: str) -> list[dict[str, Any]]:
    return [e for e in log if e["user_id"] == user_id and e["endpoint_class"] in ORDER_BOOK_CLASSES]


def test_kite_wait_is_fed_by_postbacks(
    make_accounts: Any, celery_workers: Any, paper: Any, redis_url: str
) -> None:
    # Given a receiver (accounts read from the accounts file on first use) and a Kite account
    # whose postback URL points at it
    app = create_app(reconcile_on_start=False)
    receiver = serve_in_thread(app)
    try:
        accts = make_accounts(kite=1, angel=0, postback_url=f"{receiver.url}/postback/kite1")
        logged_in(accts)
        from common.instruments import refresh

        refresh("kite1")
        celery_workers.start([keys.urgent_queue("kite1"), keys.orders_queue("kite1")])
        user = paper_user_of(accts["kite1"]).user_id
        before = len(paper.requests())
        # When a strategy places a market order and waits for it to settle
        h = place_order(account="kite1", exchange="NSE", symbol="SBIN", side="BUY", quantity=1)
        got = h.wait(20, final=True)
        # Then it is COMPLETE with the exact fill price, from a postback
        assert got["state"] == "COMPLETE", got
        assert Decimal(got["average_price"]) > 0
        assert any(step.get("source") == "postback" for step in got["history"]), got["history"]
        # And nobody read the order book while it waited
        assert book_polls(paper.requests()[before:], user) == []
        assert app.state.stats.accepted >= 1
    finally:
        receiver.stop()


def test_angel_wait_is_fed_by_the_order_socket(
    make_accounts: Any, celery_workers: Any, paper: Any, redis_url: str
) -> None:
    # Given an Angel account, its order-update socket running (as the feed process runs it)
    accts = make_accounts(kite=0, angel=1)
    logged_in(accts)
    from common.instruments import refresh

    refresh("angel1")
    celery_workers.start([keys.urgent_queue("angel1"), keys.orders_queue("angel1")])
    stop = threading.Event()
    threads = start_order_sockets(accts.values(), stop)
    try:
        threads[0].connected.wait(10)  # type: ignore[attr-defined]
        user = paper_user_of(accts["angel1"]).user_id
        before = len(paper.requests())
        # When a strategy places a market order and waits for it to settle
        h = place_order(account="angel1", exchange="NSE", symbol="SBIN", side="BUY", quantity=1)
        got = h.wait(20, final=True)
        # Then it is COMPLETE with the fill price, pushed by the socket, and nobody polled the book
        assert got["state"] == "COMPLETE", got
        assert Decimal(got["average_price"]) > 0
        assert any(step.get("source") == "socket" for step in got["history"]), got["history"]
        assert book_polls(paper.requests()[before:], user) == []
    finally:
        stop.set()
        for t in threads:
            t.join(5)
