"""Fyers' futures and options (issue #16): its NSE_FO / BSE_FO symbol masters read into generic
contracts and back, orders sent by the master's ticker, HSM topics of derivative tokens and their
open interest, and (against the paper broker) the derivative universe in Fyers' format, an option
order filled and option ticks with open interest.

Golden rows: tests/data/fyers/NSE_FO_rows.csv (copied from public copies of the live file) and
BSE_FO_rows.csv (reconstructed); sources in tests/data/fyers/README.md."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from common import instruments
from common.brokers.fyers import codec, translate
from common.brokers.fyers import feed as fyers_feed
from common.brokers.fyers import instruments as fyers_instruments
from common.brokers.fyers import portfolio as fyers_portfolio
from common.errors import InvalidOrder
from common.models import Instrument, Order
from paper.fyers import encode
from tests.paths import DATA

NSE_FO = (DATA / "fyers" / "NSE_FO_rows.csv").read_text()
BSE_FO = (DATA / "fyers" / "BSE_FO_rows.csv").read_text()
GOLDEN = NSE_FO + BSE_FO
ON = date(2026, 7, 21)  # the quantos rows' download date: every golden contract still trades

# ticker -> (generic key, Fytoken, lot size, tick size): each golden row as it must read.
EXPECTED: dict[str, tuple[str, str, int, str]] = {
    # an index weekly option (NIFTY's Tuesday weekly: YY, month digit, DD)
    "NSE:NIFTY2690123000CE": ("NFO:NIFTY:2026-09-01:23000:CE", "101126090146945", 65, "0.05"),
    "NSE:NIFTY2690123000PE": ("NFO:NIFTY:2026-09-01:23000:PE", "101126090146946", 65, "0.05"),
    "NSE:NIFTY2672129450CE": ("NFO:NIFTY:2026-07-21:29450:CE", "101126072135426", 65, "0.05"),
    # index monthly futures and a monthly option
    "NSE:NIFTY26AUGFUT": ("NFO:NIFTY:2026-08-25:FUT", "101126082558072", 65, "0.1"),
    "NSE:BANKNIFTY26JULFUT": ("NFO:BANKNIFTY:2026-07-28:FUT", "101126072861088", 30, "0.2"),
    "NSE:NIFTY26AUG24000CE": ("NFO:NIFTY:2026-08-25:24000:CE", "101126082561593", 65, "0.05"),
    # a stock option (a 16-digit Fytoken: six-digit scrip code)
    "NSE:SBIN26JUL600CE": ("NFO:SBIN:2026-07-28:600:CE", "1011260728138926", 750, "0.05"),
    # BFO: an index weekly option and the monthly future
    "BSE:SENSEX2691082000CE": ("BFO:SENSEX:2026-09-10:82000:CE", "1211260910862345", 20, "0.05"),
    "BSE:SENSEX26SEPFUT": ("BFO:SENSEX:2026-09-24:FUT", "1211260924825622", 20, "0.05"),
}


def _golden(today: date = ON) -> dict[str, Instrument]:
    return {i.broker_symbol: i for i in fyers_instruments.parse_csv(GOLDEN, today)}


@pytest.mark.parametrize("ticker", sorted(EXPECTED))
def test_a_golden_row_reads_as_its_generic_contract(ticker: str) -> None:
    inst = _golden()[ticker]
    key, token, lot, tick = EXPECTED[ticker]
    assert (inst.key, inst.token, inst.lot_size, inst.tick_size) == (key, token, lot, Decimal(tick))
    parts = key.split(":")
    assert inst.exchange == parts[0] and inst.underlying == parts[1] and inst.expiry == date.fromisoformat(parts[2])
    if parts[-1] == "FUT":
        assert (inst.kind, inst.strike, inst.right, inst.instrument_type) == ("future", None, "", "FUT")
    else:
        assert (inst.kind, inst.strike, inst.right, inst.instrument_type) == ("option", Decimal(parts[3]), parts[4],
                                                                              parts[4])  # fmt: skip
        assert str(inst.strike) == parts[3]  # 23000.0 in the row, one spelling in the key
    assert inst.freeze_quantity == 0  # the CSV master does not carry it
    assert inst.name  # Fyers' "symbol details", e.g. "NIFTY 01 Sep 26 23000 CE"


def test_the_expiry_is_the_contracts_day_in_india() -> None:
    """Column 8 is the contract's last trading moment (15:30 or 15:40 IST): read as an IST date."""
    got = _golden()
    assert got["NSE:NIFTY2690123000CE"].expiry == date(2026, 9, 1)  # 1788257400 = 2026-09-01 15:40 IST
    assert got["NSE:SBIN26JUL600CE"].expiry == date(2026, 7, 28)  # 1785232800 = 2026-07-28 15:30 IST


def test_contracts_that_expired_before_the_trading_date_are_dropped() -> None:
    assert set(_golden(date(2026, 7, 21))) == set(EXPECTED)  # the weekly's own expiry day: it still trades
    left = set(_golden(date(2026, 7, 22)))
    assert "NSE:NIFTY2672129450CE" not in left and "NSE:SBIN26JUL600CE" in left
    assert set(_golden(date(2026, 8, 26))) == {"NSE:NIFTY2690123000CE", "NSE:NIFTY2690123000PE",
                                               "BSE:SENSEX2691082000CE", "BSE:SENSEX26SEPFUT"}  # fmt: skip


def test_equities_and_indices_keep_their_keys_and_gain_their_kind() -> None:
    cash = (
        "10100000003045,STATE BANK OF INDIA,0,1,0.05,INE062A01020,0915-1530|1815-1915:,1764547200,,NSE:SBIN-EQ,"
        "10,10,3045,SBIN,3045,-1.0,XX,10100000003045,None,0,0.0\n"
        "101000000026000,Nifty 50,10,1,0.05,,0915-1530|1815-1915:,1764547200,,NSE:NIFTY50-INDEX,10,10,26000,"
        "NIFTY50,26000,-1.0,XX,101000000026000,None,0,0.0\n"
    )
    got = {i.key: i for i in fyers_instruments.parse_csv(cash + GOLDEN, ON)}
    assert (got["NSE:SBIN"].kind, got["NSE:SBIN"].instrument_type, got["NSE:SBIN"].expiry) == ("equity", "EQ", None)
    assert (got["NSE:NIFTY 50"].kind, got["NSE:NIFTY 50"].instrument_type) == ("index", "INDEX")
    assert len(got) == 2 + len(EXPECTED)


def test_unusable_derivative_rows_are_skipped() -> None:
    row = NSE_FO.splitlines()[2].split(",")  # the weekly 23000 CE
    for col, value in ((8, ""), (8, "soon"), (13, ""), (15, "-1.0"), (15, "x")):
        bad = list(row)
        bad[col] = value
        assert list(fyers_instruments.parse_csv(",".join(bad), ON)) == [], (col, value)


def test_generic_key_resolves_to_the_rows_token_and_ticker_through_the_master(r: Any) -> None:
    """Back: a master built from the golden rows, stored as a refresh stores it, looked up by key."""
    instruments.store("fyers1", fyers_instruments.parse_csv(GOLDEN, ON))
    for ticker, (key, token, _lot, _tick) in EXPECTED.items():
        inst = instruments.lookup("fyers1", key)
        assert inst is not None and (inst.broker_symbol, inst.token) == (ticker, token)
        assert instruments.by_token("fyers1", token) == inst
    chain = instruments.contracts("fyers1", "NIFTY", date(2026, 8, 25))
    assert chain["future"] == "NIFTY:2026-08-25:FUT"


# ----- the data socket: HSM topics of derivative tokens, open interest in the ticks -----

def test_derivative_tokens_subscribe_their_fo_segment_topics() -> None:
    got = _golden()
    assert fyers_feed.key_of(got["NSE:NIFTY2690123000CE"]) == ("sf|nse_fo|46945", "101126090146945")
    assert fyers_feed.key_of(got["NSE:SBIN26JUL600CE"]) == ("sf|nse_fo|138926", "1011260728138926")
    assert fyers_feed.key_of(got["BSE:SENSEX2691082000CE"]) == ("sf|bse_fo|862345", "1211260910862345")
    assert fyers_feed.key_of(got["BSE:SENSEX26SEPFUT"]) == ("sf|bse_fo|825622", "1211260924825622")


def test_an_option_snapshot_and_its_updates_carry_open_interest() -> None:
    """The HSM symbol packet's field 12 is OI (fyers_apiv3 map.json ``data_val``)."""
    inst = _golden()["NSE:NIFTY2690123000CE"]
    topic, fytoken = fyers_feed.key_of(inst)
    table = fyers_feed.symbol_table({(topic, fytoken): (inst.exchange, inst.symbol)})
    values = [12345, 900, 0, 1_788_000_000, 10, 20, 12340, 12350, 75, 1000, 2000, 12300, 4_567_800, 12000, 12500,
              0, 0, 0, 0, 12100, 12200]  # fmt: skip
    frame = encode.data_frame(1, [encode.snapshot(b"\x00\x07", topic, values, 1, 2, "NSE", "46945", "NIFTY")])
    (tick,), bad = codec.decode_message(frame, table)
    assert bad == 0 and (tick.exchange, tick.symbol, tick.token) == ("NFO", "NIFTY:2026-09-01:23000:CE", fytoken)
    assert (tick.instrument_key, tick.oi, tick.ltp) == ("NFO:NIFTY:2026-09-01:23000:CE", 4_567_800, Decimal("123.45"))
    changed = [encode.NO_VALUE] * 21
    changed[0], changed[12] = 12400, 4_600_000
    (tick,), bad = codec.decode_message(encode.data_frame(2, [encode.update(b"\x00\x07", changed)]), table)
    assert bad == 0 and (tick.oi, tick.ltp) == (4_600_000, Decimal("124"))


# ----- orders: the master's ticker, never a formatted one -----

def _order(symbol: str, exchange: str = "NFO", **kw: Any) -> Order:
    return Order(account="fyers1", exchange=exchange, symbol=symbol, side="BUY", quantity=kw.pop("quantity", 65),
                 product=kw.pop("product", "NORMAL"), **kw)


def test_a_derivative_order_is_sent_by_the_masters_ticker() -> None:
    master = {i.key: i for i in fyers_instruments.parse_csv(GOLDEN, ON)}
    weekly = master["NFO:NIFTY:2026-09-01:23000:CE"]
    body = translate.order_body(_order("NIFTY:2026-09-01:23000:CE"), weekly)
    assert (body["symbol"], body["productType"], body["qty"]) == ("NSE:NIFTY2690123000CE", "MARGIN", 65)
    bfo = master["BFO:SENSEX:2026-09-10:82000:CE"]
    body = translate.order_body(_order("SENSEX:2026-09-10:82000:CE", "BFO", quantity=20, product="INTRADAY"), bfo)
    assert (body["symbol"], body["productType"]) == ("BSE:SENSEX2691082000CE", "INTRADAY")
    stock = master["NFO:SBIN:2026-07-28:600:CE"]
    assert translate.order_body(_order("SBIN:2026-07-28:600:CE", quantity=750), stock)["symbol"] == "NSE:SBIN26JUL600CE"
    # The margin calculator names the contract the same way.
    (leg,) = fyers_portfolio.margin_request([(_order("NIFTY:2026-09-01:23000:CE"), weekly)])["data"]
    assert (leg["symbol"], leg["productType"]) == ("NSE:NIFTY2690123000CE", "MARGIN")


def test_a_derivative_order_without_its_contract_is_refused_before_sending() -> None:
    master = {i.key: i for i in fyers_instruments.parse_csv(GOLDEN, ON)}
    with pytest.raises(InvalidOrder) as exc:
        translate.order_body(_order("NIFTY:2026-09-01:23000:CE"), None)
    assert exc.value.field == "symbol" and "NFO:NIFTY:2026-09-01:23000:CE" in str(exc.value)
    with pytest.raises(InvalidOrder):  # another contract's instrument is no instrument for this one
        translate.order_body(_order("NIFTY:2026-09-01:23050:CE"), master["NFO:NIFTY:2026-09-01:23000:CE"])
    with pytest.raises(InvalidOrder):  # a derivative exchange's symbol is never formatted into a ticker
        translate.order_body(_order("NIFTY26SEPFUT"), None)
    # An equity needs no master row: its ticker is EXCHANGE:SYMBOL-EQ.
    assert translate.order_body(_order("SBIN", "NSE", quantity=1, product="DELIVERY"), None)["symbol"] == "NSE:SBIN-EQ"
