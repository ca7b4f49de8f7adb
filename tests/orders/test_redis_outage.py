"""Redis goes away mid-run: the order tasks ride it out (docs/architecture.md § Reliability)."""

from __future__ import annotations

import collections
import time

import pytest

from common import keys
from common.client import place_order
from common.models import TERMINAL_STATES
from common.redis import get_redis
from devtools.waiting import wait_for
from tests.fixtures.accounts import logged_in, paper_user_of
from tests.orders.helpers import order_requests

pytestmark = pytest.mark.slow
TERMINAL = {s.value for s in TERMINAL_STATES}


@pytest.mark.parametrize("held", ["running", "bucket"])
def test_orders_in_flight_through_a_redis_restart_are_each_sent_once(held, redis_server, make_accounts,
                                                                     celery_workers, paper) -> None:
    """Given a worker holding orders, When Redis is stopped for about a second and started again
    (append-only file: nothing enqueued is lost), Then every order is sent within its deadline
    exactly once and ends OPEN or COMPLETE. ``running``: the tasks wait for their limiter slots
    (4/s) when Redis goes: they run their work again once it is back instead of failing (their
    orders expiring). ``bucket``: the messages wait in Celery's rate-limit bucket (4/s), which the
    worker forgets at the connection loss: it puts them back once reconnected instead of leaving
    them to the visibility timeout (60 s), past their deadlines."""
    fields = {"rate_limit": "100/s"} if held == "running" else {}
    accts = make_accounts(kite=1, angel=0, caps={"orders": ["4/s"]}, extra={"read_timeout_s": 1}, **fields)
    logged_in(accts)
    user = paper_user_of(accts["kite1"]).user_id
    celery_workers.start([keys.urgent_queue("kite1"), keys.orders_queue("kite1")], concurrency=4)
    handles = [place_order(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1, deadline_s=20)
               for _ in range(8)]
    wait_for(lambda: len(order_requests(paper.requests(), user)) >= 2, 5, what="the first orders sent")
    redis_server.stop()
    time.sleep(1.0)
    redis_server.start()
    states: dict[str, str] = {}
    from workers.sweeper import sweep

    def settled() -> bool:
        # Beat's sweeper runs beside the workers in production: a message that Redis lost between
        # kombu's pop and its unacked record (a stop can land there) is its to send again.
        sweep()
        for h in handles:
            got = h.get()
            states[h.id] = got["state"] if got else "MISSING"
        return all(s in TERMINAL or s == "OPEN" for s in states.values())

    try:
        wait_for(settled, 15, 0.5, what="every order settled")
    except AssertionError:
        raise AssertionError(f"not settled: {collections.Counter(states.values())}, "
                             f"{get_redis().hlen('unacked')} messages unacked\n{celery_workers.procs[0].log()[-3000:]}"
                             ) from None
    assert set(states.values()) <= {"OPEN", "COMPLETE"}, states
    posts = collections.Counter(e["tag"] for e in order_requests(paper.requests(), user) if e["status"] == 200)
    book = collections.Counter(o.get("tag") for o in paper.orders())
    assert all(posts[h.id] == 1 and book[h.id] == 1 for h in handles), (posts, book)
