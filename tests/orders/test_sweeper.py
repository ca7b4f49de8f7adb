"""The sweeper settles what dead workers leave behind; a token that expires mid-session."""

from __future__ import annotations

import pytest

from common import keys, orderstore
from common.client import place_order
from common.models import Order
from common.redis import get_redis
from tests.fixtures.accounts import logged_in, paper_user_of
from tests.orders.helpers import order_requests

pytestmark = pytest.mark.slow


def _order(**kw: object) -> Order:
    base: dict[str, object] = dict(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1)
    base.update(kw)
    return Order(**base)  # type: ignore[arg-type]


def test_sweeper_expires_unsent_and_adopts_or_fails_sent_orders(make_accounts, paper) -> None:
    """Given orders a dead worker left NEW, claimed-but-unsent and sent-but-unanswered, all past
    their deadline, When the sweeper runs, Then the unsent ones are EXPIRED, the one the broker
    has is adopted, and the one it never got is FAILED."""
    accts = make_accounts(kite=1, angel=0, extra={"read_timeout_s": 1})
    logged_in(accts)
    from common.brokers.base import adapter_for
    from workers.sweeper import sweep

    r = get_redis()
    new, claimed, adopted, lost = (_order() for _ in range(4))
    for o in (new, claimed, adopted, lost):
        orderstore.create(r, o)
    orderstore.claim(r, claimed.client_order_id, "a")
    for o in (adopted, lost):
        orderstore.claim(r, o.client_order_id, "a")
        assert orderstore.mark_sent(r, o.client_order_id, "a")[0] == "ok"
    adapter_for(accts["kite1"]).place(adopted, None)  # it reached the broker; the answer was lost
    for o in (new, claimed, adopted, lost):  # everything is long past its deadline
        r.hset(keys.order(o.client_order_id), mapping={"deadline_ms": 1, "sent_at_ms": 1} if o in (adopted, lost)
               else {"deadline_ms": 1})
        r.zadd(keys.ORDERS_ACTIVE, {o.client_order_id: 1})
    sweep()
    state = {o.client_order_id: orderstore.get(r, o.client_order_id)["state"] for o in (new, claimed, adopted, lost)}  # type: ignore[index]
    assert state[new.client_order_id] == "EXPIRED"
    assert state[claimed.client_order_id] == "EXPIRED"
    assert state[adopted.client_order_id] in ("OPEN", "COMPLETE")
    assert state[lost.client_order_id] == "FAILED"
    left = {orderstore.get(r, i)["state"] for i, _ in orderstore.active_ids(r)}  # type: ignore[index]
    assert left <= {"OPEN"}  # nothing stays in limbo


def test_expired_token_one_relogin_and_the_order_goes_once(make_accounts, celery_workers, paper) -> None:
    accts = make_accounts(kite=1, angel=0)
    logged_in(accts)
    celery_workers.start([keys.urgent_queue("kite1"), keys.orders_queue("kite1")])
    user = paper_user_of(accts["kite1"]).user_id
    paper.fault(kind="expire_tokens", broker="kite", user_id=user)
    h = place_order(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1)
    assert h.wait(20)["state"] in ("OPEN", "COMPLETE")
    tagged = [e for e in order_requests(paper.requests(), user) if e["tag"] == h.id and e["status"] == 200]
    assert len(tagged) == 1
    assert get_redis().hget(keys.stats("kite1"), "relogins") == "1"
