"""End to end on the paper broker, with real workers: ``place_order(...).wait()`` is fed by the
push path (each path every broker has: postbacks through the receiver, an order-update socket of
its own, messages on the ticker socket the feed keeps open), and nobody polls the order book while
the strategy waits."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from common import keys
from common.client import place_order
from common.settings import Account
from devtools.waiting import wait_for
from feed.order_socket import start_order_sockets
from feed.postback import create_app, serve_in_thread
from tests.brokers import PUSH_CASES, marketable, ready
from tests.fixtures.accounts import paper_user_of

pytestmark = pytest.mark.slow

ORDER_BOOK_CLASSES = ("orderbook",)


def book_polls(log: list[dict[str, Any]], user_id: str) -> list[dict[str, Any]]:
    return [e for e in log if e["user_id"] == user_id and e["endpoint_class"] in ORDER_BOOK_CLASSES]


@contextlib.contextmanager
def pushing(path: str, broker: str, make_account: Any, workers: Any, paper: Any, r: Any) -> Iterator[tuple[Account, str]]:
    """An account of ``broker``, logged in, with its order workers and the push path ``path``
    running (as the receiver and the feed process run it); yields it and the source its updates
    carry."""

    def account(**kw: Any) -> Account:
        acct = ready(make_account(**kw))
        workers.start([keys.urgent_queue(acct.name), keys.orders_queue(acct.name)])
        return acct

    if path == "postback":
        # A receiver (accounts read from the accounts file on first use), and an account whose
        # postback URL points at it (make_accounts names a broker's first account <broker>1).
        app = create_app(reconcile_on_start=False)
        receiver = serve_in_thread(app)
        try:
            yield account(postback_url=f"{receiver.url}/postback/{broker}1"), "postback"
            assert app.state.stats.accepted >= 1
        finally:
            receiver.stop()
    elif path == "order_socket":
        acct = account()
        stop = threading.Event()
        threads = start_order_sockets([acct], stop)
        try:
            assert len(threads) == 1 and threads[0].connected.wait(10)  # type: ignore[attr-defined]
            yield acct, "socket"
        finally:
            stop.set()
            for t in threads:
                t.join(5)
    else:  # the ticker: the feed's market-data socket carries the order updates too
        from feed.supervisor import Feed

        acct = account()
        feed = Feed({acct.name: acct}, r, heartbeat_s=0.1)
        feed.start()
        try:
            wait_for(lambda: r.hget(keys.feed_heartbeat(acct.name, 0), "connected") == "1", 10,
                     what="the ticker connected")
            yield acct, "socket"
        finally:
            feed.stop()


@pytest.mark.parametrize(("broker", "path"), PUSH_CASES)
def test_wait_is_fed_by_the_push_path(
    broker: str, path: str, make_account: Any, celery_workers: Any, paper: Any, r: Any
) -> None:
    # Given an account whose broker pushes order updates this way, the push path running
    with pushing(path, broker, make_account, celery_workers, paper, r) as (acct, source):
        name = acct.name
        user = paper_user_of(acct).user_id
        before = len(paper.requests())
        # When a strategy places a market order and waits for it to settle
        h = place_order(account=name, exchange="NSE", symbol="SBIN", side="BUY", quantity=1, **marketable(broker))
        got = h.wait(20, final=True)
        # Then it is COMPLETE with the exact fill price, pushed by that path
        assert got["state"] == "COMPLETE", got
        (at_broker,) = [o for o in paper.orders() if o["tag"] == h.id]
        assert Decimal(got["average_price"]) == Decimal(str(at_broker["average_price"])) > 0
        assert any(step.get("source") == source for step in got["history"]), got["history"]
        # And nobody read the order book while it waited
        assert book_polls(paper.requests()[before:], user) == []
