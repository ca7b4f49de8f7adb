"""Option chains, expiries, the ATM strike, futures and freeze-quantity slicing (common/chains.py,
common/slicing.py), by generic key, from a master stored in a real Redis. The brokers' own masters
and the paper broker's derivative universe: tests/derivatives/test_<broker>_derivatives.py."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from common import instruments, keys, orderstore, slicing
from common.chains import atm_strike, expiries, future, option_chain
from common.client import get_order, place_order
from common.derivatives import future_symbol, option_symbol
from common.errors import InvalidOrder
from common.models import Instrument
from common.redis import get_redis

TODAY = date.today()
WEEKLY, MONTHLY = TODAY + timedelta(days=2), TODAY + timedelta(days=23)
LOT, FREEZE = 65, 1755  # 27 lots


def _option(expiry: date, strike: int, right: str, token: int) -> Instrument:
    return Instrument(exchange="NFO", symbol=option_symbol("NIFTY", expiry, strike, right), token=str(token),
                      lot_size=LOT, tick_size=Decimal("0.05"), kind="option", underlying="NIFTY", expiry=expiry,
                      strike=Decimal(strike), right=right, freeze_quantity=FREEZE,
                      broker_symbol=f"NIFTYX{strike}{right}", instrument_type=right)


def _master() -> list[Instrument]:
    rows = [Instrument(exchange="NSE", symbol="NIFTY 50", token="256265", kind="index")]
    token = 1000
    for expiry in (WEEKLY, MONTHLY):
        for strike in range(23800, 24250, 50):
            for right in ("CE", "PE"):
                token += 1
                rows.append(_option(expiry, strike, right, token))
    rows.append(Instrument(exchange="NFO", symbol=future_symbol("NIFTY", MONTHLY), token="999", lot_size=LOT,
                           kind="future", underlying="NIFTY", expiry=MONTHLY, freeze_quantity=FREEZE))
    rows.append(_option(TODAY - timedelta(days=1), 24000, "CE", 5))  # expired yesterday: still in a stale master
    return rows


@pytest.fixture
def master(make_accounts: Any, r: Any) -> str:
    make_accounts(kite=1, angel=0)
    instruments.store("kite1", _master())
    return "kite1"


def test_expiries_and_the_option_chain_come_from_the_master(master: str, r: Any) -> None:
    got = expiries("NIFTY")
    # The stale master still lists yesterday's contract (a fresh one would not: the parsers drop them).
    assert got == [TODAY - timedelta(days=1), WEEKLY, MONTHLY] and expiries("NIFTY", kind="future") == [MONTHLY]
    chain = option_chain("NIFTY", WEEKLY)
    assert chain.strikes == [Decimal(k) for k in range(23800, 24250, 50)] and chain.lot_size == LOT
    row = chain.row(24000)
    assert row.call and row.call.symbol == "NIFTY:" + WEEKLY.isoformat() + ":24000:CE" and row.put and row.put.right == "PE"
    assert chain.future is None and option_chain("NIFTY", MONTHLY).future.kind == "future"
    assert future("NIFTY").expiry == MONTHLY


def test_the_atm_strike_follows_the_live_index_price(master: str, r: Any) -> None:
    r.hset(keys.LTP, "NSE:NIFTY 50", "24032.40")
    assert atm_strike("NIFTY", WEEKLY) == Decimal(24050)
    r.hset(keys.LTP, "NSE:NIFTY 50", "23990")
    assert option_chain("NIFTY", WEEKLY).atm() == Decimal(24000)


def test_an_expired_contract_is_refused_at_place_order(master: str) -> None:
    expired = option_symbol("NIFTY", TODAY - timedelta(days=1), 24000, "CE")
    with pytest.raises(InvalidOrder, match="expired"):
        place_order(account=master, exchange="NFO", symbol=expired, side="BUY", quantity=LOT)


def test_a_quantity_off_the_lot_size_is_refused(master: str) -> None:
    sym = option_symbol("NIFTY", WEEKLY, 24000, "CE")
    with pytest.raises(InvalidOrder, match="lot size 65"):
        place_order(account=master, exchange="NFO", symbol=sym, side="BUY", quantity=LOT + 1)


def test_slicing_plan() -> None:
    assert slicing.plan(100, 65, 0) == [100]
    assert slicing.plan(1755 * 3, 65, 1755) == [1755, 1755, 1755]
    assert slicing.plan(1755 * 2 + 130, 65, 1755) == [1755, 1755, 130]
    assert slicing.plan(1800 * 2, 75, 1800) == [1800, 1800]
    with pytest.raises(InvalidOrder, match="at most 10 slices"):
        slicing.plan(1755 * 11, 65, 1755)


def test_three_times_the_freeze_goes_out_as_three_children_and_eleven_is_refused(master: str, r: Any) -> None:
    """Given a contract with a freeze quantity, When a strategy orders 3x it, Then three children are
    stored and enqueued and the parent reads as one order; 11x is refused before anything is stored."""
    sym = option_symbol("NIFTY", WEEKLY, 24000, "CE")
    with pytest.raises(InvalidOrder, match="at most 10 slices"):
        place_order(account=master, exchange="NFO", symbol=sym, side="BUY", quantity=FREEZE * 11)
    assert r.zcard(keys.account_orders(master)) == 0
    h = place_order(account=master, exchange="NFO", symbol=sym, side="BUY", quantity=FREEZE * 3, product="NORMAL")
    assert isinstance(h, slicing.SlicedHandle) and len(h.children) == 3
    kids = [orderstore.get(r, c) for c in h.children]
    assert [k["request"]["quantity"] for k in kids] == [FREEZE] * 3
    parent = get_order(h.id)
    assert parent["state"] == "NEW" and parent["pending_quantity"] == 0 and len(parent["children"]) == 3
    assert parent["request"]["quantity"] == FREEZE * 3
    assert r.llen(keys.orders_queue(master)) == 3


def test_a_parent_settles_from_its_children() -> None:
    req = {"account": "a"}
    done = {"state": "COMPLETE", "filled_quantity": 10, "average_price": "100"}
    assert slicing.aggregate("p", req, [done, {**done, "average_price": "110"}])["average_price"] == "105"
    assert slicing.aggregate("p", req, [done, {"state": "OPEN"}])["state"] == "OPEN"
    assert slicing.aggregate("p", req, [done, {"state": "REJECTED"}])["state"] == "REJECTED"
    assert slicing.aggregate("p", req, [{"state": "NEW"}, {"state": "SENDING"}])["state"] == "NEW"


def test_derivative_orders_need_a_master(make_accounts: Any) -> None:
    make_accounts(kite=1, angel=0)
    assert get_redis().exists(keys.instruments("kite1")) == 0
    with pytest.raises(InvalidOrder, match="no instrument master"):
        place_order(account="kite1", exchange="NFO", symbol=option_symbol("NIFTY", WEEKLY, 24000, "CE"),
                    side="BUY", quantity=LOT)


def test_a_subscription_to_a_contract_the_master_no_longer_lists_is_refused(make_accounts: Any, r: Any) -> None:
    """The daily refresh drops expired contracts (each broker's parser; tests/derivatives/test_<b>_
    derivatives.py), so a tick subscription to one gets a clear error instead of silence."""
    from common.ticks import subscribe

    make_accounts(kite=1, angel=0)
    live = [i for i in _master() if i.expiry is None or i.expiry >= TODAY]
    instruments.store("kite1", live)
    expired = "NFO:" + option_symbol("NIFTY", TODAY - timedelta(days=1), 24000, "CE")
    with pytest.raises(InvalidOrder, match="not in the instrument master"):
        subscribe([expired], "quote", account="kite1", r=r)
    subscribe(["NFO:" + option_symbol("NIFTY", WEEKLY, 24000, "CE")], "quote", account="kite1", r=r)


def test_a_chain_is_decoded_once_per_master_and_again_after_a_refresh(master: str, r: Any) -> None:
    first = option_chain("NIFTY", WEEKLY)
    assert option_chain("NIFTY", WEEKLY) is first  # the same master: the decoded chain again
    rows = [i for i in _master() if not (i.kind == "option" and i.strike == Decimal(23800))]
    instruments.store(master, rows)  # a new master version (a refresh dropped a strike)
    assert option_chain("NIFTY", WEEKLY).strikes[0] == Decimal(23850)
