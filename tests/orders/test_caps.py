"""Caps are held where the broker counts them: the paper broker's own request log."""

from __future__ import annotations

import pytest

from common import keys, orderstore
from common.client import place_order
from common.ratelimit import max_in_window
from common.redis import get_redis
from devtools.waiting import wait_for
from tests.brokers import marketable, ready
from tests.fixtures.accounts import logged_in, paper_user_of
from tests.orders.helpers import order_requests

pytestmark = pytest.mark.slow
NS = 1_000_000_000


def _queues(name: str) -> list[str]:
    return [keys.urgent_queue(name), keys.orders_queue(name)]


def _settled(ids: list[str], states: tuple[str, ...]) -> bool:
    r = get_redis()
    return all((orderstore.get(r, i) or {}).get("state") in states for i in ids)


# Twenty seconds of three workers contending for 3 slots a second, as issue #5 states it; mostly
# waiting, so it costs little wall time beside other tests (make test runs two at a time).
ORDERS = 60


# Kite's in make test; every broker's in make chaos (20 s each, mostly waiting, but a test slot).
@pytest.mark.parametrize("broker", ["kite", *(pytest.param(b, marks=pytest.mark.chaos) for b in ("angel", "fyers",
                                                                                                  "shoonya"))])
def test_three_workers_hold_3_per_second(make_account, celery_workers, paper) -> None:
    """Given three worker processes on one account capped at 3/s, When 60 orders are enqueued at
    once, Then the broker never sees more than 3 order requests in any sliding second, and never
    answers with its rate limit: every request placed its order."""
    acct = make_account(caps={"orders": ["3/s"]})
    name = acct.name
    ready(acct)
    celery_workers.start_many([(_queues(name), {}) for _ in range(3)])
    handles = [place_order(account=name, exchange="NSE", symbol="INFY", side="BUY", quantity=1, deadline_s=60,
                           **marketable(acct.broker)) for _ in range(ORDERS)]
    ids = [h.id for h in handles]
    wait_for(lambda: _settled(ids, ("OPEN", "COMPLETE")), 40, 0.2, f"all {ORDERS} orders at the broker")
    user = paper_user_of(acct).user_id
    log = order_requests(paper.requests(), user)
    assert {e["status"] for e in log} == {200}, "the broker answered with its rate limit"
    assert len(log) == ORDERS and {e["tag"] for e in log} == set(ids)
    assert sorted(o["tag"] for o in paper.orders() if o["user_id"] == user) == sorted(ids)
    arrivals = [e["arrival_ns"] for e in log]
    assert max_in_window(arrivals, NS) <= 3
    span_s = (max(arrivals) - min(arrivals)) / NS
    # A liveness bound, not a speed claim (bench/orders.py measures utilization): 3 at once, then
    # 3 a second is (ORDERS - 3) / 3 s at best; a cap used at 2/s would take 9 s longer.
    assert span_s < (ORDERS - 3) / 3 + 5, f"cap under-used: {ORDERS} orders at 3/s took {span_s:.1f} s"


def test_two_windows_and_never_late(make_accounts, celery_workers, paper) -> None:
    """Given caps 5/s and 20/min, When 25 orders with an 8 s deadline are enqueued, Then 20 reach
    the broker within both windows and the 5 that cannot get a slot before their deadline end
    EXPIRED without ever reaching it."""
    accts = make_accounts(kite=1, angel=0, caps={"orders": ["5/s", "20/min"]})
    logged_in(accts)
    celery_workers.start_many([(_queues("kite1"), {}) for _ in range(2)])
    handles = [place_order(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1, deadline_s=8)
               for _ in range(25)]
    ids = [h.id for h in handles]
    wait_for(lambda: _settled(ids, ("OPEN", "COMPLETE", "EXPIRED")), 20, 0.2, "all 25 orders settled")
    r = get_redis()
    states = {i: orderstore.get(r, i)["state"] for i in ids}  # type: ignore[index]
    expired = {i for i, s in states.items() if s == "EXPIRED"}
    log = order_requests(paper.requests(), paper_user_of(accts["kite1"]).user_id)
    assert len(log) == 20 and len(expired) == 5 and {e["status"] for e in log} == {200}
    assert not expired & {e["tag"] for e in log}
    arrivals = [e["arrival_ns"] for e in log]
    assert max_in_window(arrivals, NS) <= 5
    assert max_in_window(arrivals, 60 * NS) <= 20
