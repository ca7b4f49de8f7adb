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
from tests.derivatives import helpers
from tests.paper.test_fyers_sdk import sdk  # noqa: F401 (the SDK pointed at the paper broker)
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
    helpers.assert_reads_as(inst, *EXPECTED[ticker])
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


# ----- the paper broker's masters, orders and ticks -----


def test_the_paper_masters_read_as_the_paper_universe() -> None:
    """The paper Fyers' NSE_FO.csv and BSE_FO.csv, read by brokergate's parser, name exactly the
    contracts of the paper universe, by generic key, with their Fytokens, tickers and lot sizes."""
    from paper.fyers.master import FILES, fo_csv
    from paper.universe import build_universe

    universe = build_universe(helpers.PINNED)
    texts = {name: fo_csv(universe, name, helpers.PINNED) for name in FILES}
    parsed = {i.key: i for text in texts.values() for i in fyers_instruments.parse_csv(text, helpers.PINNED)}
    want = helpers.paper_contracts(universe)
    assert set(parsed) == set(want) and any(k.startswith("BFO:SENSEX") for k in want)
    assert {i.exchange for i in fyers_instruments.parse_csv(texts["BSE_FO"], helpers.PINNED)} == {"BFO"}
    for key, p in want.items():
        got = parsed[key]
        assert (got.token, got.broker_symbol, got.lot_size) == (p.fyers_token, p.fyers_symbol, p.lot_size)
        assert got.tick_size == Decimal(p.tick_size_paise) / 100
        segment = "nse_fo" if p.exchange == "NFO" else "bse_fo"
        assert fyers_feed.key_of(got) == (f"sf|{segment}|{p.fyers_exchange_token}", p.fyers_token)
    # the live file's shapes, column for column (tests/data/fyers/NSE_FO_rows.csv)
    row = next(line.split(",") for line in texts["NSE_FO"].splitlines() if ",NIFTY," in line and ",CE," in line)
    assert len(row) == 21 and row[6] == "0915-1530|1815-1915:" and row[16] == "CE" and row[15].endswith(".0")
    assert row[1].startswith("NIFTY ") and row[1].endswith(" CE") and row[18:] == ["None", "0", "0.0"]


@pytest.fixture
def fyers_with_derivatives(make_accounts: Any, r: Any) -> tuple[Any, Instrument]:
    """fyers1, logged in, with the paper broker's master (its NIFTY contracts and the index) stored,
    downloaded from the paper as from public.fyers.in (the default files: NSE_CM, BSE_CM, NSE_FO, BSE_FO)."""
    from tests.fixtures.accounts import logged_in

    acct = make_accounts(kite=0, angel=0, fyers=1)["fyers1"]
    logged_in([acct])
    rows = fyers_instruments.fetch(acct)
    assert {"NSE:NIFTY 50", "BSE:SENSEX"} <= {i.key for i in rows if i.kind == "index"}
    assert {i.exchange for i in rows if i.kind in ("future", "option")} == {"NFO", "BFO"}
    return acct, helpers.store_nifty(acct.name, rows, r)


@pytest.mark.slow
def test_an_option_ordered_by_generic_key_reaches_the_paper_broker_under_its_fyers_ticker(
        fyers_with_derivatives: tuple[Any, Instrument], celery_workers: Any, paper: Any) -> None:
    import threading

    from feed.order_socket import start_order_sockets

    acct, option = fyers_with_derivatives
    stop = threading.Event()
    (sock,) = start_order_sockets([acct], stop)  # Fyers pushes fills on its order socket
    try:
        assert sock.connected.wait(10)  # type: ignore[attr-defined]
        # a marketable LIMIT: it fills at the last price
        h = helpers.order_option(acct, option, celery_workers, order_type="LIMIT", price="4000")
        got = h.wait(20, final=True)
    finally:
        stop.set()
        sock.join(5)
    assert got["state"] == "COMPLETE" and got["filled_quantity"] == option.lot_size
    (row,) = [o for o in paper.orders() if o.get("tag") == h.id]
    sent = row["broker_payload"]
    assert (sent["symbol"], sent["fyToken"], sent["exchange"], sent["segment"]) == (
        option.broker_symbol, option.token, 10, 11)
    assert (sent["productType"], sent["qty"], sent["status"]) == ("MARGIN", option.lot_size, 2)


@pytest.mark.slow
def test_ticks_of_an_option_subscribed_by_generic_key_carry_open_interest(
        fyers_with_derivatives: tuple[Any, Instrument], paper: Any, r: Any) -> None:
    acct, option = fyers_with_derivatives
    helpers.option_tick(acct, option, r)


@pytest.mark.slow
@pytest.mark.usefixtures("sdk")
def test_the_official_sdk_trades_and_streams_a_contract_read_from_the_paper_master(paper: Any) -> None:
    """fyers-apiv3 has no call for the symbol masters: its users download the CSV (the docs read it
    with pandas; csv here) and pick the row. The official FyersModel then orders the row's ticker,
    and its data socket resolves the ticker (/data/symbol-token) to the row's nse_fo topic and
    parses the paper's packets. (The SDK's messages leave OI out, though the packet carries it:
    data_ws.py pops "OI"; the paper's last packet shows it.)"""
    import csv
    import io

    import requests

    from devtools.waiting import wait_for
    from tests.paper.test_fyers_sdk import APP_ID, ROOMY, DataSocket, model, sdk_login

    text = requests.get(f"{paper.url}/sym_details/NSE_FO.csv", timeout=30).text
    row = next(r for r in csv.reader(io.StringIO(text)) if r[13] == "NIFTY" and r[16] == "CE")
    fytoken, ticker, lot = row[0], row[9], int(row[3])
    user = paper.add_user(broker="fyers", api_key=APP_ID, caps=ROOMY)
    token = sdk_login(paper, user)
    fyers = model(user, token)
    placed = fyers.place_order({"symbol": ticker, "qty": lot, "type": 1, "side": 1, "productType": "MARGIN",
                                "limitPrice": 4000, "stopPrice": 0, "validity": "DAY", "disclosedQty": 0,
                                "offlineOrder": False, "stopLoss": 0, "takeProfit": 0, "orderTag": "fo1"})  # fmt: skip
    assert placed["s"] == "ok", placed
    book = {o["id"]: o for o in fyers.orderbook()["orderBook"]}
    assert (book[placed["id"]]["status"], book[placed["id"]]["fyToken"], book[placed["id"]]["segment"]) == (
        2, fytoken, 11)
    ds = DataSocket(paper, user, token, lite=False)
    try:
        ds.connect([ticker])
        wait_for(lambda: any(m.get("symbol") == ticker for m in ds.ticks("sf")), 10, what="the SDK's option tick")
        assert not ds.errors
        last = paper.http.get(f"{paper.url}/_paper/ticks/last", params={"broker": "fyers", "token": row[12]},
                              timeout=5).json()  # fmt: skip
    finally:
        ds.close()
    assert last and last[0]["topic"] == f"sf|nse_fo|{row[12]}" and last[0]["values"]["oi"] > 0
    tick = next(m for m in ds.ticks("sf") if m.get("symbol") == ticker)
    assert tick["ltp"] > 0 and "OI" not in tick
