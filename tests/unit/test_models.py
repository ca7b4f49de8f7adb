"""The generic Order: field-level validation, exact money, a lossless wire form."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import InvalidOrder
from common.models import Instrument, Order, OrderState, OrderUpdate, Tick

BASE = {"account": "kite1", "exchange": "NSE", "symbol": "INFY", "side": "BUY", "quantity": 1}


def order(**kw) -> Order:
    return Order.from_dict({**BASE, **kw})


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"side": "HOLD"}, "side"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": -5}, "quantity"),
        ({"quantity": "ten"}, "quantity"),
        ({"order_type": "LIMIT"}, "price"),
        ({"order_type": "LIMIT", "price": "-1"}, "price"),
        ({"order_type": "SL", "price": "100"}, "trigger_price"),
        ({"order_type": "SL-M"}, "trigger_price"),
        ({"order_type": "MARKET", "price": "100"}, "price"),
        ({"price": "abc", "order_type": "LIMIT"}, "price"),
        ({"exchange": "NYSE"}, "exchange"),
        ({"product": "MARGIN"}, "product"),
        ({"client_order_id": "has space"}, "client_order_id"),
        ({"client_order_id": "x" * 21}, "client_order_id"),
        ({"deadline_s": 0}, "deadline_s"),
        ({"bogus": 1}, "bogus"),
        ({"account": ""}, "account"),
    ],
)
def test_invalid_field_is_named(changes: dict, field: str) -> None:
    with pytest.raises(InvalidOrder) as e:
        order(**changes)
    assert e.value.field == field
    assert field in str(e.value)


def test_missing_required_field_is_named() -> None:
    d = dict(BASE)
    del d["side"]
    with pytest.raises(InvalidOrder, match="side: required"):
        Order.from_dict(d)


def test_lot_and_tick_size_from_the_instrument() -> None:
    nifty_fut = Instrument(exchange="NFO", symbol="NIFTY26DECFUT", token="1", lot_size=75, tick_size=Decimal("0.05"))
    with pytest.raises(InvalidOrder, match="quantity: 50 is not a multiple of the lot size 75"):
        order(exchange="NFO", symbol="NIFTY26DECFUT", quantity=50).check_instrument(nifty_fut)
    with pytest.raises(InvalidOrder, match=r"price: 100\.03 is not a multiple of the tick size 0\.05"):
        order(order_type="LIMIT", price="100.03").check_instrument(Instrument("NSE", "INFY", "408065"))
    order(order_type="LIMIT", price="100.05").check_instrument(Instrument("NSE", "INFY", "408065"))


def test_float_prices_are_taken_exactly() -> None:
    # 0.1 + 0.2 style drift must never reach a broker: a float is read by its shortest repr.
    o = order(order_type="LIMIT", price=1573.15)
    assert o.price == Decimal("1573.15")


paise = st.integers(min_value=5, max_value=10_000_000).map(lambda p: Decimal(p) / 100)


@st.composite
def valid_orders(draw: st.DrawFn) -> Order:
    ot = draw(st.sampled_from(["MARKET", "LIMIT", "SL", "SL-M"]))
    return Order(
        account=draw(st.sampled_from(["kite1", "angel1"])),
        exchange=draw(st.sampled_from(["NSE", "BSE", "NFO"])),
        symbol=draw(st.sampled_from(["INFY", "SBIN", "NIFTY 50", "M&M"])),
        side=draw(st.sampled_from(["BUY", "SELL"])),
        quantity=draw(st.integers(min_value=1, max_value=100_000)),
        order_type=ot,
        product=draw(st.sampled_from(["DELIVERY", "INTRADAY", "NORMAL"])),
        price=draw(paise) if ot in ("LIMIT", "SL") else None,
        trigger_price=draw(paise) if ot in ("SL", "SL-M") else None,
        validity=draw(st.sampled_from(["DAY", "IOC"])),
        deadline_s=draw(st.floats(min_value=0.5, max_value=600)),
        urgent=draw(st.booleans()),
    )


@given(valid_orders())
def test_wire_round_trip_is_lossless(o: Order) -> None:
    wire = json.loads(json.dumps(o.to_dict()))
    back = Order.from_dict(wire)
    assert back == o
    for name in ("price", "trigger_price"):
        value = getattr(back, name)
        if value is not None:
            assert value == value.quantize(Decimal("0.01"))  # exact to the paisa


def test_order_update_round_trip() -> None:
    u = OrderUpdate("kite1", "abc", "2203", OrderState.COMPLETE, 10, 0, Decimal("1573.15"), "COMPLETE")
    assert OrderUpdate.from_dict(json.loads(json.dumps(u.to_dict()))) == u


def test_tick_prices_are_exact() -> None:
    t = Tick("CDS", "USDINR26DECFUT", "1", "ltp", 10_000_000, 832_512_500)
    assert t.ltp == Decimal("83.25125")
    assert Tick("NSE", "INFY", "408065", "ltp", 100, 157315).ltp == Decimal("1573.15")


@pytest.mark.parametrize(
    ("given", "generic"),
    [
        ("CNC", "DELIVERY"), ("MIS", "INTRADAY"), ("NRML", "NORMAL"),
        ("cnc", "DELIVERY"), ("mis", "INTRADAY"), ("nrml", "NORMAL"),
        ("DELIVERY", "DELIVERY"), ("intraday", "INTRADAY"), ("Normal", "NORMAL"),
    ],
)  # fmt: skip
def test_products_by_the_names_every_indian_sdk_uses(given: str, generic: str) -> None:
    """Given a product as the brokers' SDKs name it (CNC, MIS, NRML), When an order is made,
    Then it holds the generic name, and its wire form round-trips to the same order."""
    o = order(product=given)
    assert o.product == generic
    wire = json.loads(json.dumps(o.to_dict()))
    assert wire["product"] == generic
    assert Order.from_dict(wire) == o
