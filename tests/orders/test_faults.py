"""Broker faults a worker must ride out without a duplicate: rate-limit answers, 5xx, dropped answers."""

from __future__ import annotations

import pytest

from common import keys
from common.client import place_order
from common.redis import get_redis
from devtools.waiting import wait_for
from tests.brokers import marketable, ready
from tests.fixtures.accounts import paper_user_of
from tests.orders.helpers import order_requests

pytestmark = pytest.mark.slow


def test_faults_are_ridden_out_and_each_order_is_placed_once(broker, make_account, celery_workers, paper) -> None:
    """Given the broker answers one request with its rate limit, two with a 5xx and drops the
    answer of one accepted order, When three orders are placed one after another, Then each is
    placed exactly once, the rate-limit answer is counted and backed off, and the dropped one is
    adopted by reconciliation."""
    acct = make_account()
    name = acct.name
    ready(acct)
    celery_workers.start([keys.urgent_queue(name), keys.orders_queue(name)])
    user = paper_user_of(acct).user_id
    r = get_redis()
    handles = []
    for kind, count in (("rate_limit", 1), ("error_5xx", 2), ("accept_then_drop", 1)):
        paper.fault(kind=kind, broker=broker, user_id=user, count=count)
        h = place_order(account=name, exchange="NSE", symbol="INFY", side="BUY", quantity=1, **marketable(broker))
        assert h.wait(20)["state"] in ("OPEN", "COMPLETE"), (kind, h.get())
        handles.append(h)
    placed = [o for o in paper.orders() if o.get("tag") in {h.id for h in handles}]
    assert sorted(o["tag"] for o in placed) == sorted(h.id for h in handles)
    ok = [e for e in order_requests(paper.requests(), user) if e["status"] == 200]
    assert sorted(e["tag"] for e in ok) == sorted(h.id for h in handles)
    # The reconcile counts its adoption after the OPEN update the handle woke on: wait for it.
    wait_for(lambda: int(r.hget(keys.stats(name), "reconciled_adopted") or 0) >= 1, 5,
             what="the dropped answer's order counted as adopted")
    stats = r.hgetall(keys.stats(name))
    assert stats.get("rate_limited") == "1" and int(stats.get("reconciled_adopted", 0)) == 1, stats
