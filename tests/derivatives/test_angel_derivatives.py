"""Angel One futures and options (issue #16): the scrip master's NFO/BFO rows in their published
shape to generic keys and back (tests/data/angel/scrip_master_fo.json, sources in its README),
orders sent under the master's own trading symbol and token, and the feed's key and open interest
for a contract's token."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from common.brokers.angel import contracts, feed, translate
from common.brokers.angel.instruments import parse_json, parse_rows
from common.derivatives import parse_symbol
from common.errors import InvalidOrder
from common.models import Instrument, Order
from paper.angel import encode
from tests.derivatives import helpers

DATA = Path(__file__).resolve().parents[1] / "data" / "angel" / "scrip_master_fo.json"
BEFORE_ALL = date(2024, 1, 1)  # a trading day on which none of the golden contracts has expired

# (generic key, Angel token, Angel trading symbol, lot size, tick size, freeze quantity)
GOLDEN = [
    # an NFO index weekly option (Thursday, 2024; the copy spells the expiry 04Apr2024)
    ("NFO:NIFTY:2024-04-04:23000:CE", "45829", "NIFTY04APR2423000CE", 50, "0.05", 0),
    # an NFO index weekly option in the current row shape: freeze_qty 1801 is NSE's 1800 an order
    ("NFO:NIFTY:2026-10-06:22100:PE", "40672", "NIFTY06OCT2622100PE", 65, "0.05", 1800),
    # NFO index monthly futures (tick 10 paise on the 2026 row)
    ("NFO:NIFTY:2026-07-28:FUT", "61093", "NIFTY28JUL26FUT", 65, "0.1", 0),
    ("NFO:BANKNIFTY:2024-01-25:FUT", "55317", "BANKNIFTY25JAN24FUT", 15, "0.05", 0),
    # NFO stock options, one with a fractional strike
    ("NFO:RELIANCE:2026-09-29:1210:PE", "106361", "RELIANCE29SEP261210PE", 500, "0.05", 0),
    ("NFO:IEX:2026-10-27:117.5:CE", "102595", "IEX27OCT26117.5CE", 4350, "0.05", 0),
    # BFO index options (monthly; the symbol is not NFO's pattern and carries no day)
    ("BFO:SENSEX:2024-03-28:75000:PE", "866186", "SENSEX24MAR75000PE", 10, "0.05", 0),
    ("BFO:BANKEX:2024-12-30:60900:CE", "1147008", "BANKEX24DEC60900CE", 15, "0.05", 0),
]


def _rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(DATA.read_text())
    return rows


def _master(today: date = BEFORE_ALL) -> dict[str, Instrument]:
    return {i.key: i for i in parse_rows(_rows(), today)}


@pytest.mark.parametrize(("key", "token", "symbol", "lot", "tick", "freeze"), GOLDEN)
def test_golden_rows_to_generic_keys_and_back(key: str, token: str, symbol: str, lot: int, tick: str,
                                              freeze: int) -> None:
    by_token = {i.token: i for i in _master().values()}
    inst = by_token[token]
    assert inst.key == key and inst.broker_symbol == symbol
    assert (inst.lot_size, inst.tick_size, inst.freeze_quantity) == (lot, Decimal(tick), freeze)
    parsed = parse_symbol(inst.symbol)
    assert (inst.kind, inst.underlying, inst.expiry, inst.strike, inst.right or None) == (
        parsed.kind, parsed.underlying, parsed.expiry, parsed.strike, parsed.right)
    assert inst.instrument_type in contracts.KINDS and inst.name == parsed.underlying
    # back: the generic key, through a master built from the rows, to Angel's token and symbol
    back = _master()[key]
    assert (back.token, back.broker_symbol, back.exchange) == (token, symbol, key.split(":", 1)[0])
    # and the stored form keeps every derivative field
    assert Instrument.from_dict(json.loads(json.dumps(back.to_dict()))) == back


def test_indices_and_equities_keep_their_kinds() -> None:
    master = _master()
    assert master["NSE:NIFTY 50"].kind == "index" and master["NSE:NIFTY 50"].broker_symbol == "Nifty 50"
    tcs = master["NSE:TCS"]
    assert (tcs.kind, tcs.broker_symbol, tcs.tick_size, tcs.freeze_quantity) == ("equity", "TCS-EQ", Decimal("0.1"), 0)


def test_expired_contracts_are_dropped() -> None:
    keys = set(_master(date(2026, 10, 7)))
    # the trading day after the 06 Oct weekly: it and every earlier expiry are gone
    assert {k for k in keys if k.startswith(("NFO", "BFO"))} == {"NFO:IEX:2026-10-27:117.5:CE"}
    assert {"NSE:NIFTY 50", "NSE:TCS"} <= keys
    # the expiry day itself still trades
    assert "NFO:NIFTY:2026-10-06:22100:PE" in _master(date(2026, 10, 6))
    # no trading day given (a direct parse): nothing is dropped
    assert len(list(parse_json(DATA.read_bytes()))) == len(_rows())


def test_expiries_and_strikes_in_angels_spellings() -> None:
    assert contracts.expiry_of("06OCT2026") == contracts.expiry_of("06Oct2026") == date(2026, 10, 6)
    assert [contracts.expiry_of(v) for v in ("", "2026-10-06", "32OCT2026", "06XYZ2026", None)] == [None] * 5
    assert contracts.strike_of("2210000.000000") == Decimal("22100") and str(contracts.strike_of("11750.000000")) == "117.5"
    assert str(contracts.strike_of("2300000.000000")) == "23000"  # never 2.3E+4 in a stored master
    assert [contracts.strike_of(v) for v in ("-1.000000", "0.000000", "", "x")] == [None] * 4


def test_rows_that_cannot_be_read_whole_are_skipped() -> None:
    base = _rows()[1]
    bad = [
        {**base, "symbol": "NIFTY06OCT2622100XX"},  # no CE/PE
        {**base, "strike": "-1.000000"},
        {**base, "expiry": ""},
        {**base, "token": ""},
    ]
    assert [contracts.derivative(r) for r in bad] == [None] * 4
    # a BFO stock row shipped with an empty name: the underlying is read off its own symbol
    row = {"token": "1", "symbol": "360ONE26NOV1260CE", "name": "", "expiry": "26NOV2026",
           "strike": "126000.000000", "lotsize": "500", "instrumenttype": "OPTSTK", "exch_seg": "BFO"}
    inst = contracts.derivative(row)
    assert inst is not None and inst.key == "BFO:360ONE:2026-11-26:1260:CE"
    # MCX and CDS contracts are not NFO/BFO derivatives: they keep Angel's own symbol as before
    (gold,) = parse_rows([{"token": "556445", "symbol": "GOLD25SEP26153000CE", "name": "GOLD", "expiry": "25SEP2026",
                           "strike": "15300000.000000", "lotsize": "1", "instrumenttype": "OPTFUT",
                           "exch_seg": "MCX"}])
    assert gold.key == "MCX:GOLD25SEP26153000CE"


# ----- orders -----
def _order(key: str, **kw: Any) -> Order:
    return helpers.limit_order("angel1", key, **{"product": "NRML", **kw})


def test_a_derivative_order_goes_out_under_the_masters_symbol_and_token() -> None:
    master = _master()
    option = master["NFO:NIFTY:2026-10-06:22100:PE"]
    body = translate.order_body(_order(option.key), option)
    assert (body["tradingsymbol"], body["symboltoken"], body["exchange"]) == ("NIFTY06OCT2622100PE", "40672", "NFO")
    assert (body["producttype"], body["quantity"], body["price"]) == ("CARRYFORWARD", "65", "101.05")
    sensex = master["BFO:SENSEX:2024-03-28:75000:PE"]
    body = translate.order_body(_order(sensex.key, quantity=10), sensex)
    assert (body["tradingsymbol"], body["symboltoken"], body["exchange"]) == ("SENSEX24MAR75000PE", "866186", "BFO")
    future = master["NFO:NIFTY:2026-07-28:FUT"]
    modify = translate.modify_body(_order(future.key), "1", future)
    assert (modify["tradingsymbol"], modify["symboltoken"]) == ("NIFTY28JUL26FUT", "61093")


def test_a_derivative_order_without_the_masters_row_is_refused() -> None:
    key = "NFO:NIFTY:2026-10-06:22100:PE"
    with pytest.raises(InvalidOrder) as e:
        translate.order_body(_order(key), None)
    assert e.value.field == "symbol"
    # a row without Angel's trading symbol is never completed by formatting one
    bare = Instrument("NFO", key.split(":", 1)[1], "40672", kind="option", underlying="NIFTY")
    with pytest.raises(InvalidOrder) as e:
        translate.order_body(_order(key), bare)
    assert e.value.field == "symbol"


# ----- feed -----
def test_the_feed_key_and_open_interest_of_a_contract() -> None:
    master = _master()
    option, sensex = master["NFO:NIFTY:2026-10-06:22100:PE"], master["BFO:SENSEX:2024-03-28:75000:PE"]
    assert feed.key_of(option) == (2, "40672") and feed.key_of(sensex) == (4, "866186")
    table = feed.symbol_table({feed.key_of(i): (i.exchange, i.symbol) for i in (option, sensex)})
    five = [(65, 10_105, 3)] * 5
    packet = encode.angel_snap_quote(2, "40672", 1, 1_760_000_000_000, 10_105, 65, 10_100, 1300, 650.0, 975.0,
                                     10_000, 10_200, 9_900, 9_950, 1_760_000_000_000, 123_456, 4.5, five, five,
                                     20_000, 5, 30_000, 1_000)
    ticks, bad = feed.decode(packet, table, 7)
    assert bad == 0
    (tick,) = ticks
    assert (tick.instrument_key, tick.token, tick.oi, tick.ltp) == (option.key, "40672", 123_456, Decimal("101.05"))
    # LTP and Quote packets carry no open interest: 0, never a stale value
    ticks, _ = feed.decode(encode.angel_ltp(4, "866186", 2, 1, 5_000), table, 8)
    assert (ticks[0].instrument_key, ticks[0].oi) == (sensex.key, 0)


# ----- the paper broker's master, orders and ticks -----


def test_the_paper_master_reads_as_the_paper_universe() -> None:
    """The paper Angel's OpenAPIScripMaster.json rows, read by brokergate's parser, name exactly
    the contracts of the paper universe, by generic key, with their tokens and lot sizes."""
    from paper.angel.master import scrip_master
    from paper.universe import build_universe

    universe = build_universe(helpers.PINNED)
    rows = json.loads(json.dumps(scrip_master(universe)))  # through the wire form
    parsed = {i.key: i for i in parse_rows(rows, helpers.PINNED) if i.kind in ("future", "option")}
    want = helpers.paper_contracts(universe)
    assert set(parsed) == set(want) and any(k.startswith("BFO:SENSEX") for k in want)
    for key, p in want.items():
        got = parsed[key]
        assert (got.token, got.lot_size, got.freeze_quantity) == (p.angel_token, p.lot_size, p.freeze_quantity)
        assert got.tick_size == Decimal(p.tick_size_paise) / 100 and feed.key_of(got) == (p.angel_exchange_type,
                                                                                          p.angel_token)
    # the real file's shapes: BFO in the exchange's own pattern, NFO DD MON YY
    row = next(r for r in rows if r["exch_seg"] == "BFO" and r["instrumenttype"] == "OPTIDX")
    assert contracts.expiry_of(row["expiry"]) is not None and not row["symbol"].startswith(
        "SENSEX" + row["expiry"][:5] + row["expiry"][-2:])


@pytest.fixture
def angel_with_derivatives(make_accounts: Any, r: Any) -> tuple[Any, Instrument]:
    """angel1, logged in, with the paper broker's master (its NIFTY contracts and the index) stored."""
    from common.brokers.angel.instruments import fetch
    from tests.fixtures.accounts import logged_in

    acct = make_accounts(kite=0, angel=1)["angel1"]
    logged_in([acct])
    return acct, helpers.store_nifty(acct.name, fetch(acct), r)


@pytest.mark.slow
def test_an_option_ordered_by_generic_key_reaches_the_paper_broker_under_angels_symbol(
        angel_with_derivatives: tuple[Any, Instrument], celery_workers: Any, paper: Any) -> None:
    acct, option = angel_with_derivatives
    # a marketable LIMIT (Angel refuses MARKET orders from the API): it fills at the last price
    h = helpers.order_option(acct, option, celery_workers, order_type="LIMIT", price="4000")
    got = h.wait(20)  # sent and accepted (Angel pushes fills on its order socket, not started here)
    assert got["broker_order_id"]
    sent = helpers.filled_payload(paper, h)
    assert (sent["tradingsymbol"], sent["symboltoken"], sent["exchange"]) == (option.broker_symbol, option.token, "NFO")
    assert (sent["producttype"], sent["quantity"]) == ("CARRYFORWARD", str(option.lot_size))
    # the order book row describes the contract as Angel's do
    assert (sent["instrumenttype"], sent["optiontype"], sent["strikeprice"]) == ("OPTIDX", "CE", float(option.strike or 0))
    assert contracts.expiry_of(sent["expirydate"]) == option.expiry


@pytest.mark.slow
def test_ticks_of_an_option_subscribed_by_generic_key_carry_open_interest(
        angel_with_derivatives: tuple[Any, Instrument], paper: Any, r: Any) -> None:
    acct, option = angel_with_derivatives
    helpers.option_tick(acct, option, r)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:ssl.OP_NO:DeprecationWarning")  # the SDK's own TLS options
def test_the_official_sdk_trades_a_contract_read_from_the_paper_master(paper: Any, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """SmartAPI has no call for the scrip master: its users download the JSON and pick the row
    (the docs' "Instruments" page). The official SmartConnect then quotes and orders the row's
    symbol and token."""
    import requests

    from tests.fixtures.paper import angel_session

    monkeypatch.chdir(tmp_path)  # SmartConnect() writes ./logs
    rows = requests.get(f"{paper.url}/OpenAPI_File/files/OpenAPIScripMaster.json", timeout=30).json()
    picked = [next(r for r in rows if r["exch_seg"] == seg and r["instrumenttype"] == "OPTIDX" and r["name"] == name)
              for seg, name in (("NFO", "NIFTY"), ("BFO", "SENSEX"))]
    assert set(picked[0]) >= {"token", "symbol", "name", "expiry", "strike", "lotsize", "instrumenttype", "exch_seg",
                              "tick_size", "freeze_qty"}
    user = paper.add_user(broker="angel", caps={"orders": ["1000/s"], "quote": ["1000/s"], "other": ["1000/s"],
                                                "login": ["1000/s"], "orderbook": ["1000/s"], "portfolio": ["1000/s"]})
    client = angel_session(paper, user)
    placed = {}
    for row in picked:
        ltp = client.ltpData(row["exch_seg"], row["symbol"], row["token"])
        assert ltp["status"] is True and ltp["data"]["symboltoken"] == row["token"] and ltp["data"]["ltp"] > 0
        placed[client.placeOrder({
            "variety": "NORMAL", "tradingsymbol": row["symbol"], "symboltoken": row["token"], "transactiontype": "BUY",
            "exchange": row["exch_seg"], "ordertype": "LIMIT", "producttype": "CARRYFORWARD", "duration": "DAY",
            "price": "9000", "quantity": row["lotsize"]})] = row
    book = {o["orderid"]: o for o in client.orderBook()["data"]}
    positions = {p["symboltoken"]: p for p in client.position()["data"]}
    for order_id, row in placed.items():
        # the books name the contract as the master does (BFO's own symbol pattern included)
        got = book[order_id]
        assert (got["orderstatus"], got["symboltoken"], got["tradingsymbol"], got["expirydate"]) == (
            "complete", row["token"], row["symbol"], row["expiry"])
        position = positions[row["token"]]
        assert (position["tradingsymbol"], position["instrumenttype"], position["netqty"]) == (
            row["symbol"], "OPTIDX", row["lotsize"])
        assert float(position["strikeprice"]) * 100 == float(row["strike"])
