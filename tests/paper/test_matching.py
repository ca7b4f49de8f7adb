"""The pure core: deterministic prices, order transitions and fills, caps arithmetic; no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paper.angel.payloads import angel_order_payload
from paper.caps import CapLimiter, parse_cap
from paper.kite.payloads import kite_order_payload
from paper.matching import MatchingEngine, OrderError, OrderRequest
from paper.state import PaperState
from paper.users import User


def make(seed: int = 7) -> tuple[PaperState, MatchingEngine, User, list[str]]:
    state = PaperState(seed=seed)
    user = state.add_user(User("kite", "U1", "pw", "JBSWY3DPEHPK3PXP", "key", "secret"))
    # Listeners get the live order object: they must read it during the call.
    events: list[str] = []
    state.add_order_listener("kite", "U1", lambda o: events.append(o.status))
    return state, MatchingEngine(state), user, events


def request(state: PaperState, **kw: object) -> OrderRequest:
    fields: dict[str, object] = {
        "instrument": state.by_symbol("NSE", "INFY"),
        "variety": "regular",
        "transaction_type": "BUY",
        "order_type": "LIMIT",
        "product": "CNC",
        "quantity": 1,
        "price": 0,
        "trigger_price": 0,
    }
    fields.update(kw)
    return OrderRequest(**fields)  # type: ignore[arg-type]


def test_prices_are_deterministic_per_seed_and_on_the_tick_grid() -> None:
    a, b, c = PaperState(seed=7), PaperState(seed=7), PaperState(seed=8)
    infy = a.by_symbol("NSE", "INFY")
    assert infy is not None
    path_a = [a.prices.quote(infy)["last_price"] for _ in range(50)]
    path_b = [b.prices.quote(infy)["last_price"] for _ in range(50)]
    path_c = [c.prices.quote(infy)["last_price"] for _ in range(50)]
    assert path_a == path_b != path_c
    assert all(p % infy.tick_size_paise == 0 for p in path_a)
    quote = a.prices.quote(infy, advance=False)
    assert quote["last_price"] == path_a[-1]
    assert quote["low"] <= quote["last_price"] <= quote["high"]
    assert len(quote["depth"]["buy"]) == len(quote["depth"]["sell"]) == 5
    assert quote["depth"]["buy"][0]["price"] < quote["last_price"] < quote["depth"]["sell"][0]["price"]


def test_universe_lookups_agree() -> None:
    state = PaperState(seed=1)
    sbin = state.by_kite_token(779521)
    assert sbin is not None and sbin.symbol == "SBIN" and sbin.angel_symbol == "SBIN-EQ"
    assert state.by_angel_token(1, "3045") is sbin and state.by_symbol("NSE", "SBIN-EQ") is sbin
    nifty = state.by_kite_token(256265)
    assert nifty is not None and nifty.is_index and state.by_angel_token(1, "99926000") is nifty
    assert sum(1 for i in state.universe if i.tradable) >= 9000


def test_limit_rests_until_the_walk_crosses_it() -> None:
    state, engine, user, events = make()
    infy = state.by_symbol("NSE", "INFY")
    assert infy is not None
    last = state.prices.last_price(infy)
    order = engine.place(user, request(state, price=last - 2 * infy.tick_size_paise))
    assert order.status == "OPEN" and events[-1] == "OPEN"
    for _ in range(10_000):
        if order.status == "COMPLETE":
            break
        engine.tick()
    assert order.status == "COMPLETE" and order.filled_quantity == 1
    assert order.trades[0].price <= order.price  # never worse than the limit
    assert [h["status"] for h in order.history][:4] == ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING",
                                                         "OPEN PENDING", "OPEN"]


def test_stop_loss_triggers_then_fills() -> None:
    state, engine, user, _events = make()
    infy = state.by_symbol("NSE", "INFY")
    assert infy is not None
    last = state.prices.last_price(infy)
    order = engine.place(user, request(state, transaction_type="SELL", order_type="SL-M",
                                       trigger_price=last - infy.tick_size_paise))
    assert order.status == "TRIGGER PENDING"
    for _ in range(10_000):
        if order.status == "COMPLETE":
            break
        engine.tick()
    assert order.status == "COMPLETE"
    assert "OPEN" in [h["status"] for h in order.history]


def test_modify_cancel_and_refusals() -> None:
    state, engine, user, events = make()
    order = engine.place(user, request(state, price=100))
    engine.modify(order, price=105, quantity=2)
    assert order.price == 105 and order.quantity == 2 and order.modified
    engine.cancel(order)
    assert order.status == "CANCELLED" and order.cancelled_quantity == 2
    assert events == ["OPEN", "OPEN", "CANCELLED"]
    with pytest.raises(OrderError) as info:
        engine.cancel(order)
    assert info.value.kind == "order"
    with pytest.raises(OrderError):
        engine.place(user, request(state, quantity=0))
    rejected = engine.place(user, request(state, price=101))  # 1.01 is off the 0.05 grid
    assert rejected.status == "REJECTED"
    nifty = state.by_kite_token(256265)
    assert engine.place(user, request(state, instrument=nifty, order_type="MARKET")).status == "REJECTED"


def test_payload_shapes() -> None:
    state, engine, user, _ = make()
    order = engine.place(user, request(state, order_type="MARKET", tag="abc"))
    kite = kite_order_payload(order)
    assert kite["status"] == "COMPLETE" and kite["pending_quantity"] == 0 and kite["tag"] == "abc"
    angel = angel_order_payload(order)
    assert angel["orderstatus"] == "complete" and angel["ordertype"] == "MARKET" and angel["filledshares"] == "1"


def test_cap_windows() -> None:
    assert parse_cap("10/s") == (10, 1.0) and parse_cap("400/min") == (400, 60.0)
    assert parse_cap("5000/day") == (5000, 86400.0) and parse_cap("1000/hour") == (1000, 3600.0)
    with pytest.raises(ValueError):
        parse_cap("3/fortnight")
    limiter = CapLimiter()
    caps = ["3/s", "4/min"]
    assert [limiter.admit("kite", "U", "orders", caps) for _ in range(4)] == [True, True, True, False]
    assert limiter.admit("kite", "V", "orders", caps)  # per user
    assert limiter.admit("kite", "U", "quote", caps)  # per class


def test_session_expiry_times() -> None:
    import datetime as dt

    from paper.kite.rest import token_expiry_epoch
    from paper.orders import IST

    morning = dt.datetime(2026, 1, 5, 5, 59, tzinfo=IST)
    assert token_expiry_epoch(morning) == dt.datetime(2026, 1, 5, 6, 0, tzinfo=IST).timestamp()
    evening = dt.datetime(2026, 1, 5, 8, 45, tzinfo=IST)
    assert token_expiry_epoch(evening) == dt.datetime(2026, 1, 6, 6, 0, tzinfo=IST).timestamp()


def test_ioc_limit_that_cannot_fill_is_cancelled() -> None:
    state, engine, user, events = make()
    order = engine.place(user, request(state, price=100, validity="IOC"))
    assert order.status == "CANCELLED" and events == ["OPEN", "CANCELLED"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5_000_000_000), min_size=1, max_size=200))
def test_admitted_requests_never_exceed_any_window(offsets_ns: list[int]) -> None:
    # Given arrivals at arbitrary times, when each asks for a slot under 3/s and 5/min,
    limiter = CapLimiter()
    admitted = [t for t in sorted(offsets_ns) if limiter.admit("kite", "U", "orders", ["3/s", "5/min"], now_ns=t)]
    # then no sliding 1 s window holds more than 3 admitted, and no 60 s window more than 5.
    for i, start in enumerate(admitted):
        assert sum(1 for t in admitted[i:] if t - start < 1_000_000_000) <= 3
    assert len(admitted) <= 5


def test_a_fill_carries_the_wall_clock_other_processes_share() -> None:
    """Benchmarks time a fill's way to brokergate from the moment the paper broker made it."""
    import time

    from paper.control import order_summary

    state, engine, user, _ = make()
    before = time.time_ns()
    order = engine.place(user, request(state, order_type="MARKET"))
    after = time.time_ns()
    assert order.status == "COMPLETE"
    assert before <= order.trades[0].fill_wall_ns == order.fill_wall_ns <= after
    assert order_summary(order)["fill_wall_ns"] == order.fill_wall_ns
    tick = order.instrument.tick_size_paise
    resting = engine.place(user, request(state, price=tick))
    assert resting.status == "OPEN" and order_summary(resting)["fill_wall_ns"] is None
