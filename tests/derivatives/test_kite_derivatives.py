"""Kite's futures and options (issue #16): its instrument dump read into generic contracts and back,
orders sent by the master's trading symbol, and (against the paper broker) the derivative universe
in Kite's format, an option order filled and option ticks with open interest.

Golden rows: tests/data/kite/instruments_fo.csv (sources in instruments_fo.md)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from common import instruments
from common.brokers.kite import feed as kite_feed
from common.brokers.kite import instruments as kite_instruments
from common.brokers.kite import portfolio as kite_portfolio
from common.brokers.kite import translate
from common.errors import InvalidOrder
from common.models import Instrument, Order
from tests.derivatives import helpers
from tests.paths import KITE_FIXTURES

GOLDEN = (KITE_FIXTURES / "instruments_fo.csv").read_text()

# tradingsymbol -> (generic key, token, lot size, tick size): each golden row as it must read.
EXPECTED: dict[str, tuple[str, str, int, str]] = {
    # an index weekly option (NSE's Tuesday weekly; month digit 4 / letter O for October)
    "NIFTY2642124350CE": ("NFO:NIFTY:2026-04-21:24350:CE", "16239106", 65, "0.05"),
    "NIFTY26O0622600CE": ("NFO:NIFTY:2026-10-06:22600:CE", "10419458", 65, "0.05"),
    # index monthly options and futures
    "NIFTY26SEP23150CE": ("NFO:NIFTY:2026-09-29:23150:CE", "18920450", 65, "0.05"),
    "NIFTY26OCTFUT": ("NFO:NIFTY:2026-10-27:FUT", "12468226", 65, "0.1"),
    "BANKNIFTY18JAN23500CE": ("NFO:BANKNIFTY:2018-01-25:23500:CE", "12073986", 40, "0.05"),
    # Zerodha's documentation sample: name and the future's strike blank
    "NIFTY15DECFUT": ("NFO:NIFTY:2015-12-31:FUT", "5720322", 75, "0.05"),
    "NIFTY159500CE": ("NFO:NIFTY:2015-12-31:9500:CE", "5720578", 75, "0.05"),
    # a stock option (kiteconnect-mocks)
    "ADANIPORTS17DEC490PE": ("NFO:ADANIPORTS:2017-12-28:490:PE", "13693186", 2500, "0.05"),
    # BFO: an index option and an index future
    "BANKEX26APR63000PE": ("BFO:BANKEX:2026-04-30:63000:PE", "218804229", 30, "0.05"),
    "SENSEX26OCTFUT": ("BFO:SENSEX:2026-10-29:FUT", "221330181", 20, "0.05"),
}
EPOCH = date(2015, 1, 1)  # before every golden expiry: nothing dropped


def _golden(trading_date: date = EPOCH) -> dict[str, Instrument]:
    return {i.broker_symbol: i for i in kite_instruments.parse_csv(GOLDEN, trading_date)}


@pytest.mark.parametrize("tradingsymbol", sorted(EXPECTED))
def test_a_golden_row_reads_as_its_generic_contract(tradingsymbol: str) -> None:
    inst = _golden()[tradingsymbol]
    helpers.assert_reads_as(inst, *EXPECTED[tradingsymbol])
    assert inst.freeze_quantity == 0  # Kite's dump does not publish it


def test_equities_and_indices_keep_their_own_symbols() -> None:
    got = {i.key: i for i in kite_instruments.parse_csv(GOLDEN, EPOCH)}
    infy = got["NSE:INFY"]
    assert (infy.kind, infy.broker_symbol, infy.token) == ("equity", "INFY", "408065")
    index = next(kite_instruments.parse_csv(
        "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
        "instrument_type,segment,exchange\n256265,1001,NIFTY 50,NIFTY 50,0,,0,0,0,EQ,INDICES,NSE\n"))
    assert (index.key, index.kind, index.instrument_type) == ("NSE:NIFTY 50", "index", "INDEX")


def test_contracts_that_expired_before_the_trading_date_are_dropped() -> None:
    on = date(2026, 4, 21)  # the weekly's own expiry day: it still trades
    got = _golden(on)
    assert set(got) == {"INFY", "NIFTY2642124350CE", "NIFTY26O0622600CE", "NIFTY26SEP23150CE", "NIFTY26OCTFUT",
                        "SENSEX26OCTFUT", "BANKEX26APR63000PE"}
    assert "NIFTY2642124350CE" not in _golden(date(2026, 4, 22))


def test_the_mock_dump_reads_whole_and_its_options_by_generic_key() -> None:
    """zerodha/kiteconnect-mocks' whole dump (equities and 2017-18 options with blank names)."""
    rows = list(kite_instruments.parse_csv((KITE_FIXTURES / "instruments_all.csv").read_text(), EPOCH))
    options = [i for i in rows if i.kind == "option"]
    assert len(options) == 25 and {i.underlying for i in options} == {"BANKNIFTY", "ADANIPORTS", "INDIACEM", "INDIANB"}
    assert all(i.key == f"NFO:{i.underlying}:{i.expiry}:{i.strike}:{i.right}" for i in options)


def test_generic_key_resolves_to_the_rows_token_and_trading_symbol_through_the_master(r: Any) -> None:
    """Back: a master built from the golden rows, stored as a refresh stores it, looked up by key."""
    instruments.store("kite1", kite_instruments.parse_csv(GOLDEN, EPOCH))
    for tradingsymbol, (key, token, _lot, _tick) in EXPECTED.items():
        inst = instruments.lookup("kite1", key)
        assert inst is not None and (inst.broker_symbol, inst.token) == (tradingsymbol, token)
        assert instruments.by_token("kite1", token) == inst
        assert kite_feed.key_of(inst) == int(token)  # the ticker subscribes the instrument_token
    assert instruments.contracts("kite1", "NIFTY", date(2026, 10, 27))["future"] == "NIFTY:2026-10-27:FUT"


# ----- orders: the master's trading symbol, never a formatted one -----

def _order(symbol: str, exchange: str = "NFO", **kw: Any) -> Order:
    return Order(account="kite1", exchange=exchange, symbol=symbol, side="BUY", quantity=kw.pop("quantity", 65),
                 product=kw.pop("product", "NORMAL"), **kw)


def test_a_derivative_order_is_sent_by_the_masters_trading_symbol() -> None:
    master = {i.key: i for i in kite_instruments.parse_csv(GOLDEN, EPOCH)}
    weekly = master["NFO:NIFTY:2026-04-21:24350:CE"]
    form = translate.order_form(_order("NIFTY:2026-04-21:24350:CE"), weekly)
    assert (form["exchange"], form["tradingsymbol"], form["product"], form["quantity"]) == (
        "NFO", "NIFTY2642124350CE", "NRML", "65")
    bfo = master["BFO:BANKEX:2026-04-30:63000:PE"]
    form = translate.order_form(_order("BANKEX:2026-04-30:63000:PE", "BFO", quantity=30, product="INTRADAY"), bfo)
    assert (form["exchange"], form["tradingsymbol"], form["product"]) == ("BFO", "BANKEX26APR63000PE", "MIS")
    # The margin calculator names the contract the same way.
    (row,) = kite_portfolio.margin_orders([(_order("NIFTY:2026-04-21:24350:CE"), weekly)])
    assert (row["exchange"], row["tradingsymbol"], row["product"]) == ("NFO", "NIFTY2642124350CE", "NRML")


def test_a_derivative_order_without_its_contract_is_refused_before_sending() -> None:
    master = {i.key: i for i in kite_instruments.parse_csv(GOLDEN, EPOCH)}
    with pytest.raises(InvalidOrder) as exc:
        translate.order_form(_order("NIFTY:2026-04-21:24350:CE"), None)
    assert exc.value.field == "symbol" and "NFO:NIFTY:2026-04-21:24350:CE" in str(exc.value)
    with pytest.raises(InvalidOrder):  # another contract's instrument is no instrument for this one
        translate.order_form(_order("NIFTY:2026-04-21:24400:CE"), master["NFO:NIFTY:2026-04-21:24350:CE"])
    # An equity needs no master row: its generic symbol is Kite's.
    assert translate.order_form(_order("INFY", "NSE", quantity=1, product="DELIVERY"))["tradingsymbol"] == "INFY"


# ----- the paper broker's Kite dump, orders and ticks -----

def test_the_paper_dump_reads_as_the_paper_universe() -> None:
    """The paper Kite dump (equities, then futures and options), read by brokergate's parser, names
    exactly the paper universe's contracts by generic key, with Kite's tokens, symbols and lots."""
    from paper.kite.master import instruments_csv
    from paper.universe import build_universe

    universe = build_universe(helpers.PINNED)
    want = helpers.paper_contracts(universe)
    parsed = {i.key: i for i in kite_instruments.parse_csv(instruments_csv(universe), helpers.PINNED)}
    assert {k for k, i in parsed.items() if i.kind in ("future", "option")} == set(want)
    assert any(k.startswith("BFO:SENSEX:") for k in want) and any(k.startswith("NFO:INFY:") for k in want)
    for key, p in want.items():
        got = parsed[key]
        assert (got.token, got.broker_symbol, got.lot_size) == (str(p.kite_token), p.symbol, p.lot_size)
        assert got.tick_size == Decimal(p.tick_size_paise) / 100 and got.exchange == p.exchange
    # one exchange's dump (GET /instruments/BFO) holds that exchange's rows only
    bfo = list(kite_instruments.parse_csv(instruments_csv(universe, "BFO"), helpers.PINNED))
    assert bfo and {i.exchange for i in bfo} == {"BFO"}
    assert {i.key for i in bfo} == {k for k in want if k.startswith("BFO:")}
    # the day after a weekly's expiry the parser drops it
    weekly = min(p.expiry for p in want.values() if p.underlying == "NIFTY")
    later = {i.key for i in kite_instruments.parse_csv(instruments_csv(universe, "NFO"), weekly + timedelta(days=1))}
    assert not any(f":{weekly.isoformat()}:" in k for k in later)


@pytest.fixture
def kite_with_derivatives(make_accounts: Any, r: Any) -> tuple[Any, Instrument]:
    """kite1, logged in, with the paper broker's dump (its NIFTY contracts and the index) stored."""
    from tests.fixtures.accounts import logged_in

    acct = make_accounts(kite=1, angel=0)["kite1"]
    tokens = logged_in({acct.name: acct})
    rows = kite_instruments.fetch(acct, tokens[acct.name].access_token)
    return acct, helpers.store_nifty(acct.name, rows, r)


@pytest.mark.slow
def test_an_option_ordered_by_generic_key_reaches_the_paper_broker_under_kites_symbol(
        kite_with_derivatives: tuple[Any, Instrument], celery_workers: Any, paper: Any) -> None:
    acct, option = kite_with_derivatives
    h = helpers.order_option(acct, option, celery_workers)
    assert h.wait(20)["broker_order_id"]
    sent = helpers.filled_payload(paper, h)
    assert (sent["tradingsymbol"], sent["exchange"], sent["instrument_token"]) == (
        option.broker_symbol, "NFO", int(option.token))
    assert (sent["product"], sent["quantity"], sent["filled_quantity"]) == ("NRML", option.lot_size, option.lot_size)


@pytest.mark.slow
def test_ticks_of_an_option_subscribed_by_generic_key_carry_open_interest(
        kite_with_derivatives: tuple[Any, Instrument], paper: Any, r: Any) -> None:
    acct, option = kite_with_derivatives
    assert helpers.option_tick(acct, option, r).price_divisor == 100


@pytest.mark.slow
def test_the_official_sdk_reads_the_paper_dump_and_trades_a_contract_from_it(paper: Any) -> None:
    """kiteconnect's own instruments("NFO") / ("BFO") parse the paper dump (dates, floats, ints),
    and its quote and place_order take the contract by the row's exchange and trading symbol."""
    from tests.fixtures.paper import kite_session

    user = paper.add_user(broker="kite", caps={"orders": ["1000/s"], "quote": ["1000/s"], "other": ["1000/s"],
                                               "login": ["1000/s"], "orderbook": ["1000/s"]})
    kite = kite_session(paper, user)
    nfo, bfo = kite.instruments("NFO"), kite.instruments("BFO")
    assert {r["exchange"] for r in nfo} == {"NFO"} and {r["segment"] for r in bfo} == {"BFO-OPT", "BFO-FUT"}
    row = next(r for r in nfo if r["name"] == "NIFTY" and r["instrument_type"] == "CE")
    assert isinstance(row["expiry"], date) and isinstance(row["strike"], float) and row["lot_size"] == 65
    assert row["instrument_token"] & 0xFF == 2 and row["instrument_token"] >> 8 == int(row["exchange_token"])  # the SDK keeps it a str
    assert next(r for r in bfo if r["name"] == "SENSEX")["instrument_token"] & 0xFF == 5
    key = f"NFO:{row['tradingsymbol']}"
    quote = kite.quote(key)[key]
    assert quote["instrument_token"] == row["instrument_token"] and quote["last_price"] > 0 and quote["oi"] > 0
    order_id = kite.place_order(variety="regular", exchange="NFO", tradingsymbol=row["tradingsymbol"],
                                transaction_type="BUY", quantity=row["lot_size"], product="NRML",
                                order_type="LIMIT", price=round(quote["last_price"] * 2, 1), validity="DAY")
    placed = next(o for o in kite.orders() if o["order_id"] == order_id)
    assert (placed["status"], placed["tradingsymbol"], placed["instrument_token"]) == (
        "COMPLETE", row["tradingsymbol"], row["instrument_token"])
