"""Finvasia Shoonya futures and options (issue #16): the NFO/BFO symbol files' rows in their
published shape to generic keys and back (tests/data/shoonya/*_symbols_rows.txt, sources in its
README), orders sent under the master's own trading symbol and exchange, the feed's key and open
interest for a contract's token, and the paper broker's masters read by the same parser."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from common.brokers.shoonya import codec, contracts, feed, translate
from common.brokers.shoonya.instruments import parse_text, parse_zip
from common.derivatives import parse_symbol
from common.errors import InvalidOrder
from common.models import Instrument, Order
from tests.derivatives import helpers

DATA = Path(__file__).resolve().parents[1] / "data" / "shoonya"
BEFORE_ALL = date(2024, 1, 1)  # a trading day on which none of the golden contracts has expired

# (generic key, Shoonya token, Shoonya trading symbol, lot size, tick size)
GOLDEN = [
    # NFO index weekly options (Tuesdays): the right before the strike
    ("NFO:NIFTY:2026-08-18:18550:CE", "48407", "NIFTY18AUG26C18550", 65, "0.05"),
    ("NFO:NIFTY:2026-09-22:23250:CE", "56983", "NIFTY22SEP26C23250", 65, "0.05"),
    # an NFO index monthly option
    ("NFO:NIFTY:2026-04-28:17200:PE", "78900", "NIFTY28APR26P17200", 65, "0.05"),
    # NFO index monthly futures (StrikePrice -0.01, OptionType XX; the November one on a Monday)
    ("NFO:NIFTY:2026-09-29:FUT", "68407", "NIFTY29SEP26F", 65, "0.1"),
    ("NFO:NIFTY:2026-11-23:FUT", "61471", "NIFTY23NOV26F", 65, "0.1"),
    ("NFO:BANKNIFTY:2026-09-29:FUT", "68390", "BANKNIFTY29SEP26F", 30, "0.2"),
    # an NFO stock option
    ("NFO:ZYDUSLIFE:2026-09-29:1600:PE", "156871", "ZYDUSLIFE29SEP26P1600", 900, "0.05"),
    # BFO: Symbol is BSE's product code (BSXOPT, BKXFUT), the trading symbol the exchange's own
    ("BFO:SENSEX:2025-09-11:81200:CE", "859358", "SENSEX2591181200CE", 20, "0.05"),
    ("BFO:SENSEX:2026-09-24:91000:PE", "837931", "SENSEX26SEP91000PE", 20, "0.05"),
    ("BFO:BANKEX:2024-02-26:FUT", "833613", "BANKEX24FEBFUT", 15, "0.05"),
]


def _text(exchange: str) -> str:
    return (DATA / f"{exchange}_symbols_rows.txt").read_text()


def _rows(today: date | None = BEFORE_ALL) -> list[Instrument]:
    return [i for ex in ("NSE", "NFO", "BFO") for i in parse_text(_text(ex), today)]


def _master(today: date | None = BEFORE_ALL) -> dict[str, Instrument]:
    return {i.key: i for i in _rows(today)}


@pytest.mark.parametrize(("key", "token", "tsym", "lot", "tick"), GOLDEN)
def test_golden_rows_to_generic_keys_and_back(key: str, token: str, tsym: str, lot: int, tick: str) -> None:
    by_token = {(i.exchange, i.token): i for i in _rows()}
    exchange = key.split(":", 1)[0]
    inst = by_token[(exchange, token)]
    assert inst.key == key and inst.broker_symbol == tsym
    assert (inst.lot_size, inst.tick_size, inst.freeze_quantity) == (lot, Decimal(tick), 0)  # no freeze column
    parsed = parse_symbol(inst.symbol)
    assert (inst.kind, inst.underlying, inst.expiry, inst.strike, inst.right or None) == (
        parsed.kind, parsed.underlying, parsed.expiry, parsed.strike, parsed.right)
    assert inst.instrument_type in contracts.KINDS and inst.name == parsed.underlying
    # back: the generic key, through a master built from the rows, to Shoonya's token and symbol
    back = _master()[key]
    assert (back.token, back.broker_symbol, back.exchange) == (token, tsym, exchange)
    assert feed.key_of(back) == f"{exchange}|{token}"
    # and the stored form keeps every derivative field
    assert Instrument.from_dict(json.loads(json.dumps(back.to_dict()))) == back


def test_indices_and_equities_keep_their_kinds() -> None:
    master = _master()
    # Finvasia's file: Symbol "Nifty 50", TradingSymbol "NIFTY INDEX": the generic name is Kite's
    nifty = master["NSE:NIFTY 50"]
    assert (nifty.kind, nifty.token, nifty.broker_symbol, nifty.instrument_type) == ("index", "26000", "NIFTY INDEX",
                                                                                     "INDEX")
    assert (master["NSE:RELIANCE"].kind, master["NSE:RELIANCE"].broker_symbol) == ("equity", "RELIANCE-EQ")
    # the paper broker's older spelling (Symbol NIFTY, TradingSymbol "Nifty 50") names it the same
    (same,) = parse_text("Exchange,Token,LotSize,Symbol,TradingSymbol,Instrument,TickSize,\n"
                         "NSE,26000,1,NIFTY,Nifty 50,INDEX,0.05,\n")
    assert (same.key, same.kind) == ("NSE:NIFTY 50", "index")


def test_expired_contracts_are_dropped() -> None:
    keys = {k for k in _master(date(2026, 9, 23)) if k.startswith(("NFO", "BFO"))}
    # the trading day after the 22 Sep weekly: it and every earlier expiry are gone
    assert keys == {"NFO:NIFTY:2026-09-29:FUT", "NFO:NIFTY:2026-10-27:FUT", "NFO:NIFTY:2026-11-23:FUT",
                    "NFO:BANKNIFTY:2026-09-29:FUT", "NFO:ZYDUSLIFE:2026-09-29:1600:PE",
                    "BFO:SENSEX:2026-09-24:91000:PE"}  # fmt: skip
    assert {"NSE:NIFTY 50", "NSE:RELIANCE"} <= set(_master(date(2026, 9, 23)))
    # the expiry day itself still trades
    assert "NFO:NIFTY:2026-09-22:23250:CE" in _master(date(2026, 9, 22))
    # no trading day given (a direct parse): nothing is dropped
    assert len(list(parse_text(_text("NFO")))) == len(_text("NFO").splitlines()) - 1


def test_expiries_strikes_and_underlyings_in_norens_spellings() -> None:
    assert contracts.expiry_of("16-DEC-2025") == contracts.expiry_of("16-Dec-2025") == date(2025, 12, 16)
    assert [contracts.expiry_of(v) for v in ("", "2025-12-16", "32-DEC-2025", "16-XYZ-2025", "16DEC2025", None)] == [
        None] * 6
    assert contracts.strike_of("24300") == Decimal("24300") and str(contracts.strike_of("117.50")) == "117.5"
    assert str(contracts.strike_of("24300.00")) == "24300"  # never 2.43E+4 in a stored master
    assert [contracts.strike_of(v) for v in ("-0.01", "0", "", "x")] == [None] * 4
    on = date(2025, 9, 11)
    assert contracts.underlying_of("BSXOPT", "SENSEX2591181200CE", on) == "SENSEX"
    # BSE's SENSEX50 (SX50OPT) is not SENSEX: the symbol's text up to its own expiry
    assert contracts.underlying_of("SX50OPT", "SENSEX5026SEP26900PE", date(2026, 9, 24)) == "SENSEX50"
    assert contracts.underlying_of("BSXOPT", "SENSEX25O0981000CE", date(2025, 10, 9)) == "SENSEX"
    assert contracts.underlying_of("", "NIFTY18AUG26C18550", date(2026, 8, 18)) == "NIFTY"
    assert contracts.underlying_of("XYZ", "SENSEX2591181200CE", date(2025, 9, 12)) == ""


def test_rows_that_cannot_be_read_whole_are_skipped() -> None:
    base = next(csv.DictReader(io.StringIO(_text("NFO"))))
    assert contracts.derivative(base) is not None
    bad = [
        {**base, "OptionType": "XX", "TradingSymbol": "NIFTY18AUG26X18550"},  # an option with no right
        {**base, "StrikePrice": "-0.01"},
        {**base, "Expiry": ""},
        {**base, "Token": ""},
        {**base, "Symbol": "", "TradingSymbol": "18550"},  # no underlying to be read
    ]
    assert [contracts.derivative(r) for r in bad] == [None] * 5
    # a file that names the strike column "Strike" and leaves OptionType out (BSE's symbol ends CE/PE)
    row = {"Exchange": "BFO", "Token": "1", "LotSize": "20", "Symbol": "BSXOPT", "TradingSymbol": "SENSEX26SEP91000PE",
           "Expiry": "24-SEP-2026", "Instrument": "OPTIDX", "Strike": "91000", "TickSize": "0.05"}
    inst = contracts.derivative(row)
    assert inst is not None and inst.key == "BFO:SENSEX:2026-09-24:91000:PE"
    # MCX and CDS contracts are not NFO/BFO derivatives: they keep Noren's own symbol as before
    (gold,) = parse_text("Exchange,Token,LotSize,GNGD,Symbol,TradingSymbol,Expiry,Instrument,OptionType,StrikePrice,"
                         "TickSize,\nMCX,574822,100,0.1,SILVER100,SILVER10031JUL26,31-JUL-2026,FUTCOM,XX,0,1,\n")
    assert gold.key == "MCX:SILVER10031JUL26"


# ----- orders -----
def _order(key: str, **kw: Any) -> Order:
    return helpers.limit_order("shoonya1", key, **kw)


def test_a_derivative_order_goes_out_under_the_masters_symbol_and_exchange() -> None:
    master = _master()
    option = master["NFO:NIFTY:2026-08-18:18550:CE"]
    values = translate.order_values(_order(option.key), option, "FA1")
    assert (values["tsym"], values["exch"], values["prd"], values["qty"]) == ("NIFTY18AUG26C18550", "NFO", "M", "65")
    sensex = master["BFO:SENSEX:2025-09-11:81200:CE"]
    values = translate.order_values(_order(sensex.key, quantity=20, product="INTRADAY"), sensex, "FA1")
    assert (values["tsym"], values["exch"], values["prd"]) == ("SENSEX2591181200CE", "BFO", "I")
    future = master["NFO:NIFTY:2026-09-29:FUT"]
    modify = translate.modify_values(_order(future.key), "1", future, "FA1")
    assert (modify["tsym"], modify["exch"]) == ("NIFTY29SEP26F", "NFO")


def test_a_derivative_order_without_the_masters_row_is_refused() -> None:
    key = "NFO:NIFTY:2026-08-18:18550:CE"
    other = _master()["NFO:NIFTY:2026-09-22:23250:CE"]
    bare = Instrument("NFO", key.split(":", 1)[1], "48407", kind="option", underlying="NIFTY")
    for instrument in (None, other, bare):  # no row, another contract's row, a row without Shoonya's symbol
        with pytest.raises(InvalidOrder) as e:
            translate.order_values(_order(key), instrument, "FA1")
        assert e.value.field == "symbol" and key in str(e.value)
    # an equity still needs no master row
    assert translate.order_values(_order("NSE:SBIN", quantity=1), None, "FA1")["tsym"] == "SBIN-EQ"


# ----- feed -----
def test_the_feed_key_and_open_interest_of_a_contract() -> None:
    master = _master()
    option, sensex = master["NFO:NIFTY:2026-08-18:18550:CE"], master["BFO:SENSEX:2025-09-11:81200:CE"]
    assert (feed.key_of(option), feed.key_of(sensex)) == ("NFO|48407", "BFO|859358")
    symbols = {feed.key_of(i): (i.exchange, i.symbol) for i in (option, sensex)}
    table = feed.symbol_table(symbols, {"NFO|48407": "quote", "BFO|859358": "full"})
    snapshot = {"t": "tk", "e": "NFO", "tk": "48407", "lp": "101.05", "v": "1300", "oi": "123435", "ltq": "65",
                "bp1": "101.00", "bq1": "65", "sp1": "101.10", "sq1": "130", "ft": "1760000000"}
    (tick,), bad = feed.decode(json.dumps(snapshot), table, 7)
    assert bad == 0
    assert (tick.instrument_key, tick.token, tick.oi, tick.ltp) == (option.key, "48407", 123435, Decimal("101.05"))
    # a delta without oi keeps the last one; a depth message carries it too
    (tick,), _ = feed.decode(json.dumps({"t": "tf", "e": "NFO", "tk": "48407", "lp": "101.10"}), table, 8)
    assert (tick.oi, tick.ltp) == (123435, Decimal("101.10"))
    depth = {"t": "dk", "e": "BFO", "tk": "859358", "lp": "250.00", "oi": "40000", "bp1": "249.95", "bq1": "20"}
    (tick,), _ = feed.decode(json.dumps(depth), table, 9)
    assert (tick.instrument_key, tick.mode, tick.oi) == (sensex.key, "full", 40000)
    assert codec.key(sensex.exchange, sensex.token) == "BFO|859358"


# ----- the paper broker's masters, orders and ticks -----


def test_the_paper_masters_read_as_the_paper_universe() -> None:
    """The paper Shoonya's NFO_symbols.txt.zip and BFO_symbols.txt.zip, read by brokergate's
    parser, name exactly the contracts of the paper universe, by generic key, with their tokens,
    trading symbols and lot sizes."""
    from paper.shoonya.master import symbols_txt, symbols_zip, trading_symbol
    from paper.universe import build_universe

    universe = build_universe(helpers.PINNED)
    parsed = {i.key: i for ex in ("NFO", "BFO") for i in parse_zip(symbols_zip(universe, ex), helpers.PINNED)}
    want = helpers.paper_contracts(universe)
    assert set(parsed) == set(want) and any(k.startswith("BFO:SENSEX") for k in want)
    for key, p in want.items():
        got = parsed[key]
        assert (got.token, got.broker_symbol, got.lot_size) == (p.shoonya_token, trading_symbol(p), p.lot_size)
        assert got.tick_size == Decimal(p.tick_size_paise) / 100 and feed.key_of(got) == f"{p.exchange}|{p.shoonya_token}"
    # the real files' shapes: NFO C/P before the strike, BFO the exchange's own with BSE's product code
    nfo = symbols_txt(universe, "NFO").splitlines()
    bfo = symbols_txt(universe, "BFO").splitlines()
    assert nfo[0] == bfo[0] == "Exchange,Token,LotSize,Symbol,TradingSymbol,Expiry,Instrument,OptionType,StrikePrice," \
                               "TickSize,"
    fut = next(line.split(",") for line in nfo if ",FUTIDX," in line and ",NIFTY," in line)
    assert fut[4].endswith("F") and fut[7:10] == ["XX", "-0.01", "0.05"] and fut[10] == ""
    opt = next(line.split(",") for line in bfo if ",OPTIDX," in line)
    assert opt[3] == "BSXOPT" and opt[4].startswith("SENSEX") and opt[4].endswith(opt[7])
    assert {fut[4], opt[4]} <= {i.broker_symbol for i in parsed.values()}


@pytest.fixture
def shoonya_with_derivatives(make_accounts: Any, r: Any) -> tuple[Any, Instrument]:
    """shoonya1, logged in, with the paper broker's master (its NIFTY contracts and the index)
    stored, downloaded from the paper as from api.shoonya.com (the default files: NSE, BSE, NFO, BFO)."""
    from common.brokers.shoonya.instruments import fetch
    from tests.fixtures.accounts import logged_in

    acct = make_accounts(kite=0, angel=0, shoonya=1)["shoonya1"]
    logged_in([acct])
    rows = fetch(acct)
    assert {"NSE:NIFTY 50", "BSE:SENSEX"} <= {i.key for i in rows if i.kind == "index"}
    assert {i.exchange for i in rows if i.kind in ("future", "option")} == {"NFO", "BFO"}
    return acct, helpers.store_nifty(acct.name, rows, r)


@pytest.mark.slow
def test_an_option_ordered_by_generic_key_reaches_the_paper_broker_under_shoonyas_symbol(
        shoonya_with_derivatives: tuple[Any, Instrument], celery_workers: Any, paper: Any) -> None:
    acct, option = shoonya_with_derivatives
    # a marketable LIMIT (Shoonya refuses MKT orders from the API): it fills at the last price
    h = helpers.order_option(acct, option, celery_workers, order_type="LIMIT", price="4000")
    got = h.wait(20)  # sent and accepted (Shoonya pushes fills on its market-data socket, not started here)
    assert got["broker_order_id"]
    sent = helpers.filled_payload(paper, h)
    assert (sent["tsym"], sent["token"], sent["exch"]) == (option.broker_symbol, option.token, "NFO")
    assert (sent["prd"], sent["qty"], sent["fillshares"]) == ("M", str(option.lot_size), str(option.lot_size))


@pytest.mark.slow
def test_ticks_of_an_option_subscribed_by_generic_key_carry_open_interest(
        shoonya_with_derivatives: tuple[Any, Instrument], paper: Any, r: Any) -> None:
    acct, option = shoonya_with_derivatives
    helpers.option_tick(acct, option, r)


@pytest.mark.slow
def test_the_official_sdk_trades_contracts_read_from_the_paper_masters(paper: Any) -> None:
    """NorenRestApiPy has no call for the symbol files: its users download the zips and read the
    CSV inside (Finvasia's api-documentation "Symbol Master"). The official NorenApi then quotes
    and orders an NFO and a BFO row by their trading symbols and tokens."""
    import requests

    from tests.paper.test_shoonya_sdk import noren, shoonya_user

    rows: dict[str, list[dict[str, str]]] = {}
    for exchange in ("NFO", "BFO"):
        data = requests.get(f"{paper.url}/{exchange}_symbols.txt.zip", timeout=30).content
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            rows[exchange] = list(csv.DictReader(io.StringIO(z.read(f"{exchange}_symbols.txt").decode())))
    nifty = next(r for r in rows["NFO"] if r["Symbol"] == "NIFTY" and r["Instrument"] == "OPTIDX")
    sensex = next(r for r in rows["BFO"] if r["Symbol"] == "BSXOPT" and r["OptionType"] == "CE")
    assert set(nifty) >= {"Exchange", "Token", "LotSize", "Symbol", "TradingSymbol", "Expiry", "Instrument",
                          "OptionType", "StrikePrice", "TickSize"}
    api = noren(paper, shoonya_user(paper, caps={"orders": ["1000/s"], "orderbook": ["1000/s"], "other": ["1000/s"],
                                                 "login": ["1000/s"], "quote": ["1000/s"]}))
    for row in (nifty, sensex):
        quote = api.get_quotes(exchange=row["Exchange"], token=row["Token"])
        assert quote["stat"] == "Ok" and quote["tsym"] == row["TradingSymbol"] and float(quote["lp"]) > 0
        placed = api.place_order(buy_or_sell="B", product_type="M", exchange=row["Exchange"],
                                 tradingsymbol=row["TradingSymbol"], quantity=int(row["LotSize"]), discloseqty=0,
                                 price_type="LMT", price=float(quote["lp"]) * 2, retention="DAY", remarks="fo")  # fmt: skip
        assert placed is not None and placed["stat"] == "Ok", placed
        book = {o["norenordno"]: o for o in api.get_order_book()}
        mine = book[placed["norenordno"]]
        assert (mine["status"], mine["tsym"], mine["token"], mine["exch"]) == (
            "COMPLETE", row["TradingSymbol"], row["Token"], row["Exchange"])
