"""Account state in Redis (common/accountstate.py): snapshots with their age, pushed fills, single
flight, and a read that never undoes a newer push. On a real Redis; the broker is a stand-in
adapter here (the paper broker's four dialects are tests/account/test_<broker>_portfolio.py and
test_account_state_e2e.py)."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest

from common import accountstate, keys, orderstore
from common.models import Order, OrderState, OrderUpdate
from common.portfolio import Funds, Position, Segment, Trade, with_fill

D = Decimal


def _pos(**kw: Any) -> Position:
    base: dict[str, Any] = {"exchange": "NSE", "symbol": "INFY", "product": "INTRADAY", "quantity": 0,
                            "average_price": D(0)}
    base.update(kw)
    return Position(**base)


# --- the pure position arithmetic -------------------------------------------------------------------------
def fill(pos: Position | None, side: str, qty: int, price: str) -> Position:
    return with_fill(pos, exchange="NSE", symbol="INFY", product="INTRADAY", side=side, quantity=qty, price=D(price))


def test_fills_that_grow_a_position_move_its_average() -> None:
    p = fill(fill(None, "BUY", 10, "100"), "BUY", 10, "110")
    assert (p.quantity, p.average_price, p.buy_quantity, p.buy_value) == (20, D(105), 20, D(2100))
    assert p.realised_pnl == 0


def test_a_fill_that_shrinks_a_position_realises_at_the_average_and_keeps_it() -> None:
    p = fill(fill(None, "BUY", 10, "100"), "SELL", 4, "103")
    assert (p.quantity, p.average_price, p.realised_pnl) == (6, D(100), D(12))
    assert (p.sell_quantity, p.sell_value, p.day_sell_quantity) == (4, D(412), 4)


def test_a_fill_that_flips_a_position_opens_the_rest_at_the_fill_price() -> None:
    p = fill(fill(None, "BUY", 10, "100"), "SELL", 15, "95")
    assert (p.quantity, p.average_price, p.realised_pnl) == (-5, D(95), D(-50))
    closed = fill(p, "BUY", 5, "90")
    assert (closed.quantity, closed.average_price, closed.realised_pnl) == (0, D(0), D(-25))


def test_pnl_at_a_price_is_realised_plus_mark_to_market() -> None:
    p = fill(fill(None, "BUY", 10, "100"), "SELL", 4, "103")
    assert p.pnl_at(D(101)) == D(12) + 6 * D(1)


# --- snapshots in Redis -------------------------------------------------------------------------------------
class Broker:
    """A stand-in adapter: answers what it is told; ``gate`` holds every read until set."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()
        self.rows: list[Position] = [_pos(quantity=5, average_price=D("10.5"))]

    def positions(self) -> list[Position]:
        self.calls += 1
        assert self.gate.wait(10)
        return list(self.rows)

    def funds(self) -> Funds:
        self.calls += 1
        seg = Segment(available_cash=D(100), used_margin=D(20), available_margin=D(80))
        return Funds.of_segments({"equity": seg})


@pytest.fixture
def acct(make_accounts: Any) -> str:
    make_accounts(kite=1, angel=0)
    return "kite1"


def test_a_read_is_stored_with_its_age_and_read_back_from_redis(acct: str, r: Any) -> None:
    assert accountstate.read(r, acct, "positions").age_s is None  # never read
    snap = accountstate.refresh(acct, "positions", adapter=Broker())
    assert [p.quantity for p in snap.items] == [5] and snap.age_s is not None and snap.age_s < 5
    funds = accountstate.refresh(acct, "funds", adapter=Broker()).items
    assert funds.available_margin == D(80) and funds.segments["equity"].used_margin == D(20)
    assert accountstate.read(r, acct, "funds").items == funds


def test_concurrent_reads_share_one_broker_request(acct: str, r: Any) -> None:
    """Given a read under way, When five more callers ask meanwhile, Then the broker answers once
    and all six get that answer (the rest of a loop's requests are served from the in-flight one)."""
    broker = Broker()
    broker.gate.clear()
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(accountstate.refresh(acct, "positions", adapter=broker)))
               for _ in range(6)]
    for t in threads:
        t.start()
    from devtools.waiting import wait_for

    wait_for(lambda: broker.calls == 1 and r.exists(f"bg:acct:{acct}:positions:refreshing"), 5, what="one read under way")
    broker.gate.set()
    for t in threads:
        t.join(10)
    assert broker.calls == 1 and len(results) == 6
    assert all([p.quantity for p in s.items] == [5] for s in results)


def test_a_read_asked_before_a_pushed_fill_does_not_undo_it(acct: str, r: Any) -> None:
    """Given a positions read asked before a fill is pushed, When its (older) answer arrives after
    the push, Then it is not stored: the pushed fill stays until the next read."""
    asked = accountstate.read(r, acct, "positions").now_ms
    accountstate.apply_fill(r, acct, {"exchange": "NSE", "symbol": "INFY", "product": "INTRADAY", "side": "BUY"},
                            quantity=2, price=D("10"), broker_order_id="B1", client_order_id="c1", filled_total=2)
    assert not accountstate.store(r, acct, "positions", [], asked)
    assert [p.quantity for p in accountstate.read(r, acct, "positions").items] == [2]
    later = accountstate.read(r, acct, "positions").now_ms + 1
    assert accountstate.store(r, acct, "positions", [_pos(quantity=2, average_price=D(10))], later)


def test_an_order_update_that_adds_a_fill_moves_the_position_and_the_trade_book(acct: str, r: Any) -> None:
    """Given a stored order, When updates report 3 then 5 of 5 filled (averages 100, then 101.2),
    Then the position is 5 at 101.2 and the trade book holds both fills (3 at 100, 2 at 103);
    a replay of the last update adds nothing."""
    order = Order(account=acct, exchange="NSE", symbol="INFY", side="BUY", quantity=5, product="INTRADAY")
    orderstore.create(r, order)
    coid = order.client_order_id

    def update(state: OrderState, filled: int, avg: str) -> None:
        orderstore.apply(r, OrderUpdate(account=acct, client_order_id=coid, broker_order_id="B9", state=state,
                                        filled_quantity=filled, pending_quantity=5 - filled,
                                        average_price=D(avg), source="postback"))

    update(OrderState.OPEN, 3, "100")
    update(OrderState.COMPLETE, 5, "101.2")
    update(OrderState.COMPLETE, 5, "101.2")
    # Applied by the process's applier thread, off the update's path (accountstate.apply_fill_soon).
    from devtools.waiting import wait_for

    wait_for(lambda: len(accountstate.read(r, acct, "trades").items) == 2, 5, what="both fills applied")
    [pos] = accountstate.read(r, acct, "positions").items
    assert (pos.quantity, pos.average_price, pos.product) == (5, D("101.2"), "INTRADAY")
    trades: list[Trade] = accountstate.read(r, acct, "trades").items
    assert sorted((t.quantity, t.price) for t in trades) == [(2, D(103)), (3, D(100))]
    assert {t.client_order_id for t in trades} == {coid}


def test_a_reader_releases_its_lock_only_while_it_holds_it(acct: str, r: Any, redis_url: str) -> None:
    """Given a read whose single-flight lock another reader takes right after the first one
    checked it still held it (it lapsed), When the first one releases it, Then the other's lock
    stands: the check and the delete are one step (common/lua/lock_release.lua)."""
    import redis as redis_lib

    lock = keys.account_state_refreshing(acct, "positions")
    handed_over: list[bool] = []

    class HandsOverAfterTheCheck(redis_lib.Redis):
        def get(self, name: Any) -> Any:
            got = super().get(name)
            if name == lock:
                super().set(lock, "the next reader", px=10_000)
                handed_over.append(True)
            return got

    client = HandsOverAfterTheCheck.from_url(redis_url, decode_responses=True)
    accountstate.refresh(acct, "positions", client, adapter=Broker())
    assert r.get(lock) == ("the next reader" if handed_over else None)
