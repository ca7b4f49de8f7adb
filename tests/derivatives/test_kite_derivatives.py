"""Kite's futures and options (issue #16): its instrument dump read into generic contracts and back,
orders sent by the master's trading symbol, and (against the paper broker) the derivative universe
in Kite's format, an option order filled and option ticks with open interest.

Golden rows: tests/data/kite/instruments_fo.csv (sources in instruments_fo.md)."""

from __future__ import annotations

from datetime import date
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
    key, token, lot, tick = EXPECTED[tradingsymbol]
    assert (inst.key, inst.token, inst.lot_size, inst.tick_size) == (key, token, lot, Decimal(tick))
    parts = key.split(":")
    assert inst.exchange == parts[0] and inst.underlying == parts[1] and inst.expiry == date.fromisoformat(parts[2])
    if parts[-1] == "FUT":
        assert (inst.kind, inst.strike, inst.right, inst.instrument_type) == ("future", None, "", "FUT")
    else:
        assert (inst.kind, inst.strike, inst.right) == ("option", Decimal(parts[3]), parts[4])
        assert str(inst.strike) == parts[3]  # 23500.0 in the row, one spelling in the key
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
