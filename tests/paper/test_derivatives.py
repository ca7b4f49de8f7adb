"""The paper broker's derivative universe (issue #16): the expiry calendar, contract specs, every
broker's symbol and token for a contract, lookups by each broker's identity, the price model and
fills of derivative orders. The trading date is pinned, so the contracts are known."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from collections.abc import Callable, Hashable

import pytest
from kiteconnect import KiteConnect

from paper import derivatives as d
from paper.derivatives import trading_date
from paper.matching import MatchingEngine, OrderError, OrderRequest
from paper.prices import option_value
from paper.state import PaperState
from paper.universe import PaperInstrument, build_universe, kite_instruments_csv
from paper.users import User
from tests.fixtures.paper import PaperBroker, kite_session

TODAY = dt.date(2025, 12, 10)  # a Wednesday: the docs' examples (16 Dec weekly, 30 Dec monthly) are listed
ROOMY = {"orders": ["1000/s"], "orderbook": ["1000/s"], "other": ["1000/s"], "login": ["1000/s"], "quote": ["1000/s"]}


@pytest.fixture(scope="module")
def state() -> PaperState:
    return PaperState(seed=7, today=TODAY)


def contract(state: PaperState, exchange: str, kite_symbol: str) -> PaperInstrument:
    inst = state.by_symbol(exchange, kite_symbol)
    assert inst is not None, kite_symbol
    return inst


def expiries_of(state: PaperState, underlying: str, kind: str = "option") -> list[dt.date]:
    return sorted({i.expiry for i in state.universe if i.underlying == underlying and i.kind == kind and i.expiry})


# ----- the calendar -----
def test_nifty_has_four_tuesday_weeklies_and_three_last_tuesday_monthlies(state: PaperState) -> None:
    weeklies = [dt.date(2025, 12, 16), dt.date(2025, 12, 23), dt.date(2025, 12, 30), dt.date(2026, 1, 6)]
    monthlies = [dt.date(2025, 12, 30), dt.date(2026, 1, 27), dt.date(2026, 2, 24)]
    assert expiries_of(state, "NIFTY") == sorted(set(weeklies + monthlies))
    assert expiries_of(state, "NIFTY", "future") == monthlies
    assert all(e.weekday() == d.TUESDAY for e in expiries_of(state, "NIFTY"))
    for name in ("BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "INFY", "SBIN", "RELIANCE", "TCS", "HDFCBANK"):
        assert expiries_of(state, name) == monthlies == expiries_of(state, name, "future"), name


def test_bse_expires_on_thursdays(state: PaperState) -> None:
    monthlies = [dt.date(2025, 12, 25), dt.date(2026, 1, 29), dt.date(2026, 2, 26)]
    weeklies = [dt.date(2025, 12, 11), dt.date(2025, 12, 18), dt.date(2025, 12, 25), dt.date(2026, 1, 1)]
    assert expiries_of(state, "SENSEX") == sorted(set(weeklies + monthlies))
    assert expiries_of(state, "BANKEX") == monthlies == expiries_of(state, "BANKEX", "future")
    assert {i.exchange for i in state.universe if i.underlying in ("SENSEX", "BANKEX") and i.is_derivative} == {"BFO"}


def test_calendar_edges() -> None:
    # An expiry day lists its own expiry (it trades until the close); after the month's last
    # Tuesday the monthlies start next month.
    assert d.weekly_expiries(dt.date(2025, 12, 16), d.TUESDAY)[0] == dt.date(2025, 12, 16)
    assert d.monthly_expiries(dt.date(2025, 12, 31), d.TUESDAY) == [
        dt.date(2026, 1, 27), dt.date(2026, 2, 24), dt.date(2026, 3, 31),
    ]  # fmt: skip
    assert d.last_weekday(2026, 3, d.TUESDAY) == dt.date(2026, 3, 31)
    assert d.last_weekday(2026, 2, d.THURSDAY) == dt.date(2026, 2, 26)
    assert d.expiries(dt.date(2025, 12, 10), d.TUESDAY, weekly=False)[0] == (dt.date(2025, 12, 30), True)


def test_trading_date_is_ist_or_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAPER_TRADING_DATE", raising=False)
    late_utc = dt.datetime(2025, 12, 9, 20, 0, tzinfo=dt.UTC)  # 01:30 on the 10th in Kolkata
    assert trading_date(late_utc) == dt.date(2025, 12, 10)
    monkeypatch.setenv("PAPER_TRADING_DATE", "2026-01-05")
    assert trading_date(late_utc) == dt.date(2026, 1, 5)


# ----- contract specs -----
def test_lot_sizes_freeze_quantities_ticks_and_strikes(state: PaperState) -> None:
    lots = {"NIFTY": 65, "BANKNIFTY": 30, "FINNIFTY": 60, "MIDCPNIFTY": 120, "SENSEX": 20, "BANKEX": 30,
            "INFY": 400, "SBIN": 750, "RELIANCE": 500, "TCS": 175, "HDFCBANK": 550}  # fmt: skip
    freeze = {"NIFTY": 1800, "BANKNIFTY": 600, "FINNIFTY": 1800, "MIDCPNIFTY": 2800, "SENSEX": 1000, "BANKEX": 900}
    seen: dict[str, set[tuple[int, int, int]]] = {}
    for inst in state.universe:
        if inst.is_derivative:
            seen.setdefault(inst.underlying, set()).add((inst.lot_size, inst.freeze_quantity, inst.tick_size_paise))
    assert seen == {name: {(lot, freeze.get(name, 0), 5)} for name, lot in lots.items()}
    # ATM +/- 15 steps of 50 around NIFTY's reference 24,000, both rights, every expiry
    strikes = sorted({i.strike_paise // 100 for i in state.universe if i.underlying == "NIFTY" and i.kind == "option"})
    assert strikes == list(range(23_250, 24_751, 50))
    weekly = [i for i in state.universe if i.underlying == "NIFTY" and i.expiry == dt.date(2025, 12, 16)]
    assert Counter(i.right for i in weekly) == {"CE": 31, "PE": 31}
    assert len([i for i in state.universe if i.is_derivative]) < 3_000  # a few thousand rows


def test_new_indices_with_their_real_tokens(state: PaperState) -> None:
    bank = state.by_kite_token(260105)
    assert bank is not None and bank.symbol == "NIFTY BANK" and bank.is_index and bank.underlying == "BANKNIFTY"
    assert state.by_angel_token(1, "99926009") is bank and state.by_shoonya_token("NSE", "26009") is bank
    assert state.by_fyers_symbol("NSE:NIFTYBANK-INDEX") is bank and state.by_fyers_topic("Nifty Bank") is bank
    fin, mid = state.by_kite_token(257801), state.by_kite_token(288009)
    assert fin is not None and fin.fyers_symbol == "NSE:FINNIFTY-INDEX" and fin.angel_token == "99926037"
    assert mid is not None and mid.fyers_symbol == "NSE:MIDCPNIFTY-INDEX" and mid.angel_token == "99926074"
    sensex = state.by_kite_token(265)
    assert sensex is not None and sensex.exchange == "BSE" and sensex.is_index
    assert state.by_angel_token(3, "99919000") is sensex and state.by_shoonya_token("BSE", "1") is sensex
    assert state.by_fyers_symbol("BSE:SENSEX-INDEX") is sensex and state.by_angel_token(3, "99919012") is not None
    nifty = state.by_kite_token(256265)
    assert nifty is not None and nifty.underlying == "NIFTY" and nifty.kind == "index"


# ----- each broker's symbols (the docs/brokers.md examples) -----
def test_symbol_formatters_on_the_documented_examples() -> None:
    weekly, monthly = dt.date(2025, 12, 16), dt.date(2025, 12, 30)
    assert d.kite_option_symbol("NIFTY", weekly, 2_400_000, "CE", monthly=False) == "NIFTY25D1624000CE"
    assert d.kite_option_symbol("NIFTY", monthly, 2_400_000, "CE", monthly=True) == "NIFTY25DEC24000CE"
    assert d.kite_future_symbol("NIFTY", monthly) == "NIFTY25DECFUT"
    assert d.angel_option_symbol("NIFTY", weekly, 2_400_000, "CE") == "NIFTY16DEC2524000CE"
    assert d.angel_option_symbol("NIFTY", dt.date(2024, 4, 4), 2_300_000, "CE") == "NIFTY04APR2423000CE"
    assert d.angel_future_symbol("NIFTY", monthly) == "NIFTY30DEC25FUT"
    assert d.shoonya_option_symbol("NIFTY", weekly, 2_400_000, "CE") == "NIFTY16DEC25C24000"
    assert d.shoonya_future_symbol("NIFTY", monthly) == "NIFTY30DEC25F"
    assert d.fyers_ticker("NFO", "NIFTY25D1624000CE") == "NSE:NIFTY25D1624000CE"
    assert d.fyers_ticker("BFO", "SENSEX25D1880000CE") == "BSE:SENSEX25D1880000CE"
    # Kite's weekly month letter: 1-9, then O, N, D; the day zero-padded; fractional strikes kept
    assert d.kite_option_symbol("NIFTY", dt.date(2026, 1, 6), 2_400_000, "PE", monthly=False) == "NIFTY2610624000PE"
    assert d.kite_option_symbol("NIFTY", dt.date(2025, 10, 7), 2_400_000, "CE", monthly=False) == "NIFTY25O0724000CE"
    assert d.shoonya_option_symbol("SBIN", monthly, 81_250, "PE") == "SBIN30DEC25P812.5"
    assert d.fyers_token("NFO", weekly, 317488) == "1011251216317488"


def test_a_contract_carries_every_brokers_identity(state: PaperState) -> None:
    inst = contract(state, "NFO", "NIFTY25D1624000CE")
    assert (inst.kind, inst.underlying, inst.expiry, inst.strike_paise, inst.right) == (
        "option", "NIFTY", dt.date(2025, 12, 16), 2_400_000, "CE",
    )  # fmt: skip
    assert (inst.instrument_type, inst.segment, inst.name, inst.monthly) == ("CE", "NFO-OPT", "NIFTY", False)
    assert inst.kite_token == inst.exchange_token << 8 | 2 and inst.angel_token == str(inst.exchange_token)
    assert inst.angel_exchange_type == 2 and inst.shoonya_token == inst.angel_token
    assert inst.angel_symbol == "NIFTY16DEC2524000CE" and inst.shoonya_symbol == "NIFTY16DEC25C24000"
    assert inst.fyers_symbol == "NSE:NIFTY25D1624000CE"
    assert inst.fyers_token == f"1011251216{inst.exchange_token}" and inst.fyers_exchange_token == inst.angel_token
    assert inst.spot is state.by_kite_token(256265)
    fut = contract(state, "NFO", "NIFTY25DECFUT")
    assert (fut.kind, fut.monthly, fut.angel_symbol, fut.shoonya_symbol, fut.fyers_symbol, fut.segment) == (
        "future", True, "NIFTY30DEC25FUT", "NIFTY30DEC25F", "NSE:NIFTY25DECFUT", "NFO-FUT",
    )  # fmt: skip
    assert contract(state, "NFO", "NIFTY25DEC24000CE").angel_symbol == "NIFTY30DEC2524000CE"
    sensex = contract(state, "BFO", "SENSEX25D1880000CE")
    assert sensex.kite_token & 0xFF == 5 and sensex.angel_exchange_type == 4
    assert sensex.fyers_symbol == "BSE:SENSEX25D1880000CE" and sensex.fyers_token.startswith("1211251218")
    infy = contract(state, "NFO", "INFY25DEC1560CE")
    assert infy.angel_symbol == "INFY30DEC251560CE" and infy.lot_size == 400


@pytest.mark.parametrize("exchange,kite_symbol", [
    ("NFO", "NIFTY25D1624000CE"), ("NFO", "NIFTY25DECFUT"), ("NFO", "BANKNIFTY26JAN58000PE"),
    ("NFO", "SBIN26FEB800CE"), ("BFO", "SENSEX25D1880000PE"), ("BFO", "BANKEX25DECFUT"),
])  # fmt: skip
def test_lookups_by_every_brokers_identity(state: PaperState, exchange: str, kite_symbol: str) -> None:
    inst = contract(state, exchange, kite_symbol)
    assert state.by_kite_token(inst.kite_token) is inst
    assert state.by_angel_token(inst.angel_exchange_type, inst.angel_token) is inst
    assert state.by_symbol(exchange, inst.angel_symbol) is inst
    assert state.by_symbol(exchange, inst.shoonya_symbol) is inst
    assert state.by_shoonya_token(exchange, inst.shoonya_token) is inst
    assert state.by_fyers_symbol(inst.fyers_symbol) is inst
    assert state.by_fyers_topic(inst.fyers_exchange_token) is inst


Key = Callable[[PaperInstrument], Hashable]
IDENTITIES: dict[str, Key] = {
    "kite token": lambda i: i.kite_token,
    "angel token": lambda i: (i.angel_exchange_type, i.angel_token),
    "shoonya token": lambda i: (i.exchange, i.shoonya_token),
    "fyers ticker": lambda i: i.fyers_symbol,
    "fytoken": lambda i: i.fyers_token,
    "fyers topic": lambda i: i.angel_symbol if i.is_index else i.fyers_exchange_token,
    "kite symbol": lambda i: (i.exchange, i.symbol),
    "angel symbol": lambda i: (i.exchange, i.angel_symbol),
    "shoonya symbol": lambda i: (i.exchange, i.shoonya_symbol),
}


@pytest.mark.parametrize("name", list(IDENTITIES))
def test_identities_are_collision_free_with_the_equities(state: PaperState, name: str) -> None:
    counts = Counter(IDENTITIES[name](i) for i in state.universe)
    assert [k for k, n in counts.items() if n > 1] == []


def test_tokens_are_stable_for_a_contracts_life() -> None:
    later = PaperState(seed=7, today=dt.date(2025, 12, 17))
    first = PaperState(seed=7, today=TODAY)
    assert contract(later, "NFO", "NIFTY26FEB24000CE").kite_token == contract(first, "NFO", "NIFTY26FEB24000CE").kite_token
    assert later.by_symbol("NFO", "NIFTY25D1624000CE") is None  # expired


def test_equities_unchanged_and_masters_keep_their_format(state: PaperState) -> None:
    equities = build_universe()
    assert not any(i.is_derivative for i in equities) and len(equities) == sum(
        1 for i in state.universe if i.kind == "equity" or i.symbol == "NIFTY 50"
    )
    assert [i.symbol for i in equities] == [i.symbol for i in state.universe[: len(equities)]]
    csv_text = kite_instruments_csv(state.universe, "NFO")
    assert csv_text.count("\n") == 1  # the header only: the Kite dialect writes the NFO rows itself


# ----- prices and open interest -----
def test_option_model_sanity() -> None:
    spot, years, vol = 24_000.0, 6 / 365, 0.13
    calls = [option_value(spot, k, years, vol, "CE") for k in (23_000, 23_500, 24_000, 24_500, 25_000)]
    assert calls == sorted(calls, reverse=True) and calls[0] > 1_000 > calls[-1] >= 0
    assert option_value(spot, 23_000, years, vol, "CE") >= 1_000  # never below intrinsic
    assert option_value(spot, 25_000, years, vol, "PE") >= 1_000
    atm_near, atm_far = option_value(spot, 24_000, 2 / 365, vol, "CE"), option_value(spot, 24_000, 60 / 365, vol, "CE")
    assert 0 < atm_near < atm_far
    # put-call parity without rates
    c, p = option_value(spot, 24_200, years, vol, "CE"), option_value(spot, 24_200, years, vol, "PE")
    assert c - p == pytest.approx(spot - 24_200)
    assert option_value(spot, 24_000, 0.0, vol, "PE") == 0.0


def test_quotes_follow_the_underlying_with_open_interest() -> None:
    state = PaperState(seed=3, today=TODAY)
    spot = state.prices.last_price(contract(state, "NFO", "NIFTY25DECFUT").spot)  # type: ignore[arg-type]
    fut = state.prices.quote(contract(state, "NFO", "NIFTY25DECFUT"), advance=False)
    assert spot < fut["last_price"] < spot * 1.01  # a small basis over the spot
    deep_itm = state.prices.quote(contract(state, "NFO", "NIFTY25D1623250CE"), advance=False)["last_price"]
    assert deep_itm >= spot - 2_325_000
    far_otm = contract(state, "NFO", "NIFTY25D1624750CE")
    prices = [state.prices.quote(far_otm)["last_price"] for _ in range(30)]
    assert all(p >= 5 and p % 5 == 0 for p in prices)
    atm = contract(state, "NFO", "NIFTY25D1624000CE")
    quotes = [state.prices.quote(atm) for _ in range(30)]
    ois = [q["oi"] for q in quotes]
    assert all(o > 0 and o % 65 == 0 for o in ois)
    assert max(abs(a - b) for a, b in itertools.pairwise(ois)) <= 3 * 65  # moves slowly
    assert quotes[-1]["oi_day_low"] <= min(ois) and quotes[-1]["oi_day_high"] >= max(ois)
    assert state.prices.quote(far_otm, advance=False)["oi"] < ois[-1]  # most open interest at the money
    infy = state.by_symbol("NSE", "INFY")
    assert infy is not None and state.prices.quote(infy)["oi"] == 0


# ----- orders -----
def engine_with_user(seed: int = 5) -> tuple[PaperState, MatchingEngine, User]:
    state = PaperState(seed=seed, today=TODAY)
    user = state.add_user(User("kite", "D1", "pw", "JBSWY3DPEHPK3PXP", "key", "secret"))
    return state, MatchingEngine(state), user


def order(inst: PaperInstrument, quantity: int, order_type: str = "MARKET", price: int = 0) -> OrderRequest:
    return OrderRequest(inst, "regular", "BUY", order_type, "NRML", quantity, price, 0)


def test_derivative_orders_fill_and_respect_lot_and_freeze() -> None:
    state, engine, user = engine_with_user()
    atm = contract(state, "NFO", "NIFTY25D1624000CE")
    last = state.prices.last_price(atm)
    filled = engine.place(user, order(atm, 130))
    assert filled.status == "COMPLETE" and filled.filled_quantity == 130 and filled.trades[0].price == last
    resting = engine.place(user, order(atm, 65, "LIMIT", 5))
    assert resting.status == "OPEN"
    crossing = engine.place(user, order(atm, 65, "LIMIT", last + 500))
    assert crossing.status == "COMPLETE" and crossing.trades[0].price <= last + 500
    odd = engine.place(user, order(atm, 100))
    assert odd.status == "REJECTED" and "lot size 65" in (odd.status_message or "")
    frozen = engine.place(user, order(atm, 28 * 65))  # 1,820 > NIFTY's 1,800
    assert frozen.status == "REJECTED" and "freeze quantity 1800" in (frozen.status_message or "")
    assert engine.place(user, order(atm, 27 * 65)).status == "COMPLETE"  # 1,755: the most whole lots
    with pytest.raises(OrderError, match="freeze quantity"):
        engine.modify(resting, quantity=28 * 65)


def test_a_resting_derivative_order_fills_as_its_underlying_moves() -> None:
    state, engine, user = engine_with_user(seed=11)
    fut = contract(state, "NFO", "NIFTY25DECFUT")
    assert fut.spot is not None
    limit = state.prices.last_price(fut) + 15  # three ticks above: the jitter or the spot crosses it
    resting = engine.place(user, OrderRequest(fut, "regular", "SELL", "LIMIT", "NRML", 65, limit, 0))
    for _ in range(2_000):
        if resting.status == "COMPLETE":
            break
        engine.tick()
    assert resting.status == "COMPLETE" and resting.trades[0].price >= limit
    # matching stepped the underlying too, not only the future
    assert state.prices.quote(fut.spot, advance=False)["sequence"] > 0


def test_a_kite_client_buys_an_option_at_the_paper_broker(paper: PaperBroker) -> None:
    # Given the contracts the paper broker lists today (the same date in this process)
    listed = build_universe(trading_date())
    atm = next(i for i in listed if i.underlying == "NIFTY" and i.kind == "option" and i.right == "CE"
               and i.strike_paise == 2_400_000)  # fmt: skip
    user = paper.add_user(broker="kite", caps=ROOMY)
    kite: KiteConnect = kite_session(paper, user)
    # When a Kite client buys two lots with a marketable limit
    order_id = kite.place_order(variety="regular", exchange="NFO", tradingsymbol=atm.symbol, transaction_type="BUY",
                                quantity=130, product="NRML", order_type="LIMIT", price=5000)  # fmt: skip
    # Then the paper broker fills it, and refuses an odd lot
    placed = next(o for o in kite.orders() if o["order_id"] == order_id)
    assert placed["status"] == "COMPLETE" and placed["filled_quantity"] == 130 and placed["exchange"] == "NFO"
    odd = kite.place_order(variety="regular", exchange="NFO", tradingsymbol=atm.symbol, transaction_type="BUY",
                           quantity=100, product="NRML", order_type="LIMIT", price=5000)  # fmt: skip
    assert next(o for o in kite.orders() if o["order_id"] == odd)["status"] == "REJECTED"
