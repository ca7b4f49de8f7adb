"""Pre-trade risk limits end to end (issue #18's "done when"): each limit refuses at the client and,
with the client's check bypassed (enqueued by task name), at a real worker, where the order ends
REJECTED naming the limit and never reaches the paper broker; the daily-loss limit halts the account
from live ticks (the real feed against the paper broker, and the sweeper as Beat runs it)."""

from __future__ import annotations

import os
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from common import accountstate, keys, risk, safety
from common.client import cancel_order, place_order, send_task_by_name
from common.errors import Halted, RiskRefused
from common.models import Order, new_client_order_id
from common.redis import get_redis
from devtools.waiting import wait_for
from tests.brokers import ready
from tests.fixtures.accounts import paper_user_of

pytestmark = pytest.mark.slow

STRATEGY = "burst"
RESTING: list[str] = []  # the open-orders case's resting orders


def _infy(acct: str, **kw: Any) -> Order:
    return Order(**{"account": acct, "exchange": "NSE", "symbol": "INFY", "side": "BUY", "quantity": 1, **kw})


def _state(coid: str) -> str:
    got = get_redis().hget(keys.order(coid), "state")
    return str(got or "")


def _settled_or_open(coid: str) -> bool:
    return _state(coid) in ("OPEN", "COMPLETE", "REJECTED", "CANCELLED")


def _position(acct: str) -> int:
    snap = accountstate.refresh(acct, "positions")
    return sum(p.quantity for p in snap.items if p.symbol == "INFY")


def _case_quantity(acct: str) -> Order:
    return _infy(acct, quantity=51)  # the file's max_order_quantity is 50


def _case_value(acct: str) -> Order:
    risk.set_limits(risk.account_scope(acct), {"max_order_value": "10000"})
    return _infy(acct, quantity=10, order_type="LIMIT", price="1500.00")


def _case_band(acct: str) -> Order:
    get_redis().hset(keys.LTP, "NSE:INFY", "1500.00")  # as the feed writes it
    risk.set_limits(risk.account_scope(acct), {"price_band_pct": "5"})
    return _infy(acct, order_type="SL-M", trigger_price="1700.00")


def _case_open_orders(acct: str) -> Order:
    risk.set_limits(risk.account_scope(acct), {"max_open_orders": "2"})
    resting = [place_order(_infy(acct, order_type="LIMIT", price="1.00")) for _ in range(2)]
    wait_for(lambda: all(_state(h.id) == "OPEN" for h in resting), 15, what="two resting orders open")
    RESTING[:] = [h.id for h in resting]
    return _infy(acct)


def _case_per_minute(acct: str) -> Order:
    # The file's [strategies.burst] allows 2 a minute: two go through, the third is refused.
    sent = [place_order(_infy(acct, strategy=STRATEGY)) for _ in range(2)]
    wait_for(lambda: all(_settled_or_open(h.id) for h in sent), 15, what="the strategy's two orders sent")
    return _infy(acct, strategy=STRATEGY)


def _case_position(acct: str) -> Order:
    net = _position(acct)  # what the earlier cases filled, read from the broker
    risk.set_limits(risk.account_scope(acct), {"max_position": str(net + 1)})
    # An exit (it only reduces the position) is never refused by it.
    risk.check(_infy(acct, side="SELL", quantity=1, reduce_only=True))
    return _infy(acct, quantity=2)


def _case_daily_loss(acct: str) -> Order:
    [p] = [p for p in accountstate.read(get_redis(), acct, "positions").items if p.symbol == "INFY"]
    get_redis().hset(keys.LTP, "NSE:INFY", str(p.average_price - 100))  # a loss of 100 a share
    risk.set_limits(risk.account_scope(acct), {"max_daily_loss": "1"})
    return _infy(acct)


CASES: list[tuple[str, Callable[[str], Order]]] = [
    ("max_order_quantity", _case_quantity), ("max_order_value", _case_value), ("price_band_pct", _case_band),
    ("max_open_orders", _case_open_orders), ("max_orders_per_minute", _case_per_minute),
    ("max_position", _case_position), ("max_daily_loss", _case_daily_loss),
]  # fmt: skip


def test_each_limit_refuses_at_the_client_and_at_the_worker(make_accounts, celery_workers, paper, r) -> None:
    """Given one account with a file limit and a strategy table, and one real worker, When for each
    limit an order that breaks it is placed by the client, Then RiskRefused names the limit before
    anything is stored; and When the same order is enqueued by task name, Then the worker settles it
    REJECTED naming the limit, counts it, and the paper broker never sees it."""
    acct = ready(make_accounts(kite=1, angel=0, risk={"max_order_quantity": 50})["kite1"])
    path = Path(os.environ["BROKERGATE_ACCOUNTS"])
    path.write_text(path.read_text() + f"\n[strategies.{STRATEGY}]\nmax_orders_per_minute = 2\n")
    celery_workers.start([keys.urgent_queue(acct.name), keys.orders_queue(acct.name)])
    refused_ids: list[str] = []
    for limit, case in CASES:
        bad = case(acct.name)
        with pytest.raises(RiskRefused) as e:
            place_order(bad)
        assert e.value.limit == limit, (limit, e.value)
        assert r.hget(keys.order(bad.client_order_id), "state") is None, limit
        # the client's check bypassed: the worker's own check refuses it
        again = bad.with_(client_order_id=new_client_order_id())
        send_task_by_name(keys.PLACE_TASK, args=[again.to_dict()], queue=keys.orders_queue(acct.name))
        wait_for(lambda a=again: _state(a.client_order_id) == "REJECTED", 15, what=f"{limit} refused by the worker")
        error = str(r.hget(keys.order(again.client_order_id), "error"))
        assert error.startswith(f"risk limit {limit}:"), (limit, error)
        refused_ids += [bad.client_order_id, again.client_order_id]
        risk.clear_limits(risk.account_scope(acct.name))
    user = paper_user_of(acct).user_id
    tags = {e.get("tag") for e in paper.requests() if e["user_id"] == user}
    assert not tags & set(refused_ids)
    stats = r.hgetall(keys.stats(acct.name))
    assert {limit: stats.get(f"risk_refused:{limit}") for limit, _ in CASES} == {limit: "2" for limit, _ in CASES}
    # The resting orders counted as open until cancelled at the broker, then no longer.
    assert r.smismember(keys.risk_open(acct.name), RESTING) == [1, 1]
    for coid in RESTING:
        cancel_order(coid)
    wait_for(lambda: all(_state(c) == "CANCELLED" for c in RESTING), 15, what="the resting orders cancelled")
    assert r.smismember(keys.risk_open(acct.name), RESTING) == [0, 0]


class _Ticks:
    """The paper broker's tick clock (``/_paper/ticks``): paused, stepped by hand."""

    def __init__(self, paper: Any) -> None:
        self.paper = paper

    def set(self, **body: Any) -> None:
        self.paper.http.post(f"{self.paper.url}/_paper/ticks", json=body, timeout=10).raise_for_status()


def test_the_daily_loss_limit_halts_the_account_from_live_ticks(make_accounts, celery_workers, paper, r) -> None:
    """Given two accounts with max_daily_loss 1 rupee, one long 100 INFY and one short 100 at the
    same price (the paper clock paused), When the real feed streams INFY and the price moves, Then
    the sweep (Beat's, every 5 s) halts the account that lost, by risk and naming the limit, and
    only that one; its entries are refused, the other's are not."""
    from feed.supervisor import Feed

    accts = make_accounts(kite=2, angel=0, risk={"max_daily_loss": 1})
    for a in accts.values():
        ready(a)
    celery_workers.start([q for a in accts for q in (keys.urgent_queue(a), keys.orders_queue(a))])
    ticks = _Ticks(paper)
    ticks.set(paused=True)
    feed = None
    try:
        orders = {"kite1": place_order(_infy("kite1", quantity=100)),
                  "kite2": place_order(_infy("kite2", side="SELL", quantity=100))}
        wait_for(lambda: all(_state(h.id) in ("OPEN", "COMPLETE") for h in orders.values()), 15,
                 what="both orders at the broker")
        wait_for(lambda: all(_position(a) for a in accts), 15, what="both positions at the broker")
        [fill] = {p.average_price for a in accts for p in accountstate.read(r, a, "positions").items}
        feed = Feed({"kite1": accts["kite1"]}, r, heartbeat_s=0.1, backoff_base_s=0.05, token_poll_s=0.5)
        feed.start()
        from common.ticks import subscribe

        subscribe(["NSE:INFY"], "ltp", account="kite1", r=r)

        def moved() -> bool:
            ticks.set(steps=1)
            got = r.hget(keys.LTP, "NSE:INFY")
            return got is not None and Decimal(got) != fill

        wait_for(moved, 20, what="a live INFY price away from the fill")
        from workers.sweeper import sweep

        counts = sweep()
        last = Decimal(r.hget(keys.LTP, "NSE:INFY"))
        loser, winner = ("kite1", "kite2") if last < fill else ("kite2", "kite1")
        assert counts["risk_halted"] == 1
        h = safety.halted(loser, r)
        assert h is not None and h.by == "risk" and "max_daily_loss" in h.reason, h
        assert safety.halted(winner, r) is None
        with pytest.raises(Halted):
            place_order(_infy(loser))
        risk.check(_infy(winner))
    finally:
        if feed is not None:
            feed.stop()
        ticks.set(paused=False)
