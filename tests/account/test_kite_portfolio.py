"""Kite account state (issue 17): positions, holdings, margins and the trade book.

(a) The pure translation (common/brokers/kite/portfolio.py) on Kite's documented example payloads:
    ``tests/data/kite/{positions,holdings,margins}.json`` are the examples of
    https://kite.trade/docs/connect/v3/portfolio/ (positions, holdings) and
    https://kite.trade/docs/connect/v3/user/#funds-and-margins (margins), as Zerodha publishes them
    in zerodha/kiteconnect-mocks (commit c7a8123: positions.json, holdings.json, margins.json);
    ``trades.json`` is that repository's trade book (https://kite.trade/docs/connect/v3/orders/#trades).
(b) Against the paper broker, with real orders filled: the adapter's positions/holdings/funds/trades
    agree with the paper broker's own books (paper/portfolio.py, read at /_paper/portfolio) and with
    what the official ``kiteconnect`` SDK reads from it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from common.brokers.kite import portfolio
from common.brokers.kite.rest import Adapter
from common.errors import BrokerUnavailable, RateLimited, TokenExpired
from common.models import Order
from common.portfolio import Funds, Holding, Position, Segment, Trade
from devtools.waiting import wait_for
from tests.fixtures.accounts import paper_user_of
from tests.fixtures.paper import PaperBroker, kite_session
from tests.paths import KITE_FIXTURES

D = Decimal
# Room for every read; orders at the 2026 rule's 10/s (more needs a registered algo: common/algorules.py).
ROOMY = {"orders": ["10/s"], "orderbook": ["1000/s"], "other": ["1000/s"], "login": ["1000/s"],
         "quote": ["1000/s"]}


def fixture(name: str) -> Any:
    return json.loads((KITE_FIXTURES / name).read_text())


# --- (a) golden: the documented payloads -------------------------------------------------------------------
def test_positions_read_the_net_rows_with_values_per_unit_of_the_multiplier() -> None:
    data = fixture("positions.json")["data"]
    got = {p.key: p for p in portfolio.positions_of(data)}
    assert list(got) == ["MCX:LEADMINI17DECFUT:NORMAL", "MCX:GOLDGUINEA17DECFUT:NORMAL", "NSE:SBIN:CO"]
    # Kite's buy_value 161050 is 1 lot x 161.05 x multiplier 1000: the generic value is per unit.
    assert got["MCX:LEADMINI17DECFUT:NORMAL"] == Position(
        exchange="MCX", symbol="LEADMINI17DECFUT", product="NORMAL", quantity=1, average_price=D("161.05"),
        buy_quantity=1, buy_value=D("161.05"), sell_quantity=0, sell_value=D(0), day_buy_quantity=1,
        day_sell_quantity=0, overnight_quantity=0, realised_pnl=D(0), unrealised_pnl=D(0),
        last_price=D("161.05"), multiplier=1000, token="53496327")
    guinea = got["MCX:GOLDGUINEA17DECFUT:NORMAL"]  # net is the overnight 3 plus the day's 1 bought, 4 sold
    assert (guinea.quantity, guinea.overnight_quantity, guinea.day_buy_quantity, guinea.day_sell_quantity) == (0, 3, 1, 4)
    assert (guinea.buy_value, guinea.sell_value, guinea.unrealised_pnl) == (D(92559), D(93360), D(801))
    assert got["NSE:SBIN:CO"].product == "CO"  # no generic name: kept as Kite wrote it, not dropped
    # Kite's own pnl is what the generic position computes at Kite's last price, row by row.
    for row in data["net"]:
        assert portfolio.position_of(row).pnl_at(D(str(row["last_price"]))) == D(str(row["pnl"])), row


def test_holdings() -> None:
    got = portfolio.holdings_of(fixture("holdings.json")["data"])
    assert got == [
        Holding(exchange="NSE", symbol="AARON", quantity=1, average_price=D(161), t1_quantity=0,
                last_price=D("352.95"), pnl=D("191.95"), isin="INE721Z01010", token="263681"),
        Holding(exchange="BSE", symbol="SBIN", quantity=16, average_price=D("801.78125"), t1_quantity=0,
                last_price=D("762.45"), pnl=D("-629.2999999999993"), isin="INE062A01020", token="128028676"),
    ]


def test_margins_per_segment_and_their_sums() -> None:
    funds = portfolio.funds_of(fixture("margins.json")["data"])
    equity = Segment(available_cash=D("245431.6"), used_margin=D("145706.55"),
                     available_margin=D("99725.05000000002"), opening_balance=D("245431.6"), collateral=D(0),
                     realised_pnl=D("761.7"), unrealised_pnl=D(0))
    commodity = Segment(available_cash=D("100661.7"), used_margin=D(0), available_margin=D("100661.7"),
                        opening_balance=D("100661.7"))
    assert funds == Funds(available_cash=D("346093.3"), used_margin=D("145706.55"),
                          available_margin=D("200386.75000000002"),
                          segments={"equity": equity, "commodity": commodity})
    assert Funds.from_dict(funds.to_dict()) == funds


def test_trades_carry_no_tag() -> None:
    got = portfolio.trades_of(fixture("trades.json")["data"])
    assert got[0] == Trade(trade_id="10000000", broker_order_id="200000000000000", exchange="NSE", symbol="SBIN",
                           product="DELIVERY", side="BUY", quantity=1, price=D("420.65"), client_order_id="",
                           fill_time="2021-05-31 09:16:39", token="779521")
    assert [(t.product, t.price) for t in got[1:]] == [("INTRADAY", D("72.755")), ("NORMAL", D(4852)),
                                                      ("NORMAL", D(4852))]


def test_odd_answers_read_as_empty_books() -> None:
    assert portfolio.positions_of(None) == [] and portfolio.positions_of({"net": None}) == []
    assert portfolio.holdings_of({"x": 1}) == [] and portfolio.trades_of([None, 3]) == []
    assert portfolio.funds_of(None) == Funds(D(0), D(0), D(0))


# --- (b) the paper broker, its books and the official SDK -----------------------------------------------------
@pytest.fixture
def kite(paper: PaperBroker, make_accounts: Any) -> tuple[Adapter, Any, str]:
    """A Kite account at the paper broker: its adapter and the official SDK on one login."""
    account = make_accounts(kite=1, angel=0, caps=ROOMY)["kite1"]
    user = paper_user_of(account)
    sdk = kite_session(paper, user)
    return Adapter(account, lambda: sdk.access_token), sdk, user.user_id


def dec(v: Any) -> Decimal:
    """A money value to compare, to the paper books' 4 places."""
    return D(str(v)).quantize(D("0.0001"))


def _fill(adapter: Adapter, symbol: str, side: str, qty: int, product: str, **kw: Any) -> str:
    return adapter.place(Order(account=adapter.account.name, exchange="NSE", symbol=symbol, side=side,
                               quantity=qty, product=product, **kw), None)


def test_adapter_books_and_sdk_agree_after_a_buy_and_a_partial_sell(paper: PaperBroker, kite: Any) -> None:
    adapter, sdk, uid = kite
    # Given a delivery BUY of 5 INFY, then (once the price moved) a SELL of 2 of them, an intraday
    # BUY of SBIN, all filled at once (market orders), and a limit order resting far below the
    # market (it blocks margin)
    ids = [_fill(adapter, "INFY", "BUY", 5, "DELIVERY")]
    bought = sdk.trades()[0]["average_price"]
    # Each quote moves the paper price one step of its seeded walk: ask until it moved.
    wait_for(lambda: sdk.ltp("NSE:INFY")["NSE:INFY"]["last_price"] != bought, timeout_s=5)
    ids += [_fill(adapter, "INFY", "SELL", 2, "DELIVERY"), _fill(adapter, "SBIN", "BUY", 3, "INTRADAY")]
    _fill(adapter, "TCS", "BUY", 1, "DELIVERY", order_type="LIMIT", price=D(10))
    assert {o["order_id"]: o["status"] for o in sdk.orders() if o["order_id"] in ids} == dict.fromkeys(ids, "COMPLETE")

    # When the adapter, the paper broker's books and the SDK are read, Then they agree.
    book = paper.portfolio("kite", uid)
    _positions_agree(adapter, sdk, book["positions"])
    _holdings_agree(adapter, sdk, book["holdings"])
    _funds_agree(adapter, sdk, book["funds"])
    _trades_agree(adapter, sdk, book["trades"])


def _positions_agree(adapter: Adapter, sdk: Any, book: list[dict[str, Any]]) -> None:
    got = {p.key: p for p in adapter.positions()}
    generic = {"CNC": "DELIVERY", "MIS": "INTRADAY"}
    assert set(got) == {f"NSE:{p['symbol']}:{generic[p['product']]}" for p in book} == {
        "NSE:INFY:DELIVERY", "NSE:SBIN:INTRADAY"}
    for row in book:
        p = got[f"NSE:{row['symbol']}:{generic[row['product']]}"]
        assert (p.quantity, p.buy_quantity, p.sell_quantity) == (row["quantity"], row["buy_quantity"],
                                                                 row["sell_quantity"])
        assert [dec(v) for v in (p.average_price, p.buy_value, p.sell_value, p.last_price, p.pnl_at(p.last_price))] == [
            dec(row[k]) for k in ("average_price", "buy_value", "sell_value", "last_price", "pnl")]
        assert (p.day_buy_quantity, p.overnight_quantity) == (p.buy_quantity, 0)
    infy = got["NSE:INFY:DELIVERY"]
    assert (infy.quantity, infy.buy_quantity, infy.sell_quantity) == (3, 5, 2)
    assert infy.realised_pnl != 0 and infy.realised_pnl + infy.unrealised_pnl == infy.pnl_at(infy.last_price)
    # The SDK reads the same book, in Kite's shape (every key of the documented rows, net and day).
    body = sdk.positions()
    documented = set(fixture("positions.json")["data"]["net"][0])
    assert all(set(row) == documented for row in body["net"] + body["day"])
    assert {(r["tradingsymbol"], generic[r["product"]], r["quantity"], dec(r["buy_value"]), dec(r["sell_value"]),
             dec(r["average_price"]), dec(r["pnl"]), str(r["instrument_token"])) for r in body["net"]} == {
        (p.symbol, p.product, p.quantity, dec(p.buy_value), dec(p.sell_value), dec(p.average_price),
         dec(p.pnl_at(p.last_price)), p.token) for p in got.values()}


def _holdings_agree(adapter: Adapter, sdk: Any, book: list[dict[str, Any]]) -> None:
    got = {h.symbol: h for h in adapter.holdings()}
    assert {h["symbol"]: (h["quantity"] + h["t1_quantity"], h["t1_quantity"], dec(h["average_price"]))
            for h in book} == {s: (h.quantity, h.t1_quantity, dec(h.average_price)) for s, h in got.items()}
    assert (got["INFY"].quantity, got["INFY"].t1_quantity) == (13, 3)  # 10 settled and today's 3
    rows = sdk.holdings()
    assert all(set(row) == set(fixture("holdings.json")["data"][0]) for row in rows)
    assert {r["tradingsymbol"]: (r["quantity"], r["t1_quantity"], dec(r["pnl"])) for r in rows} == {
        s: (h.quantity, h.t1_quantity, dec(h.pnl)) for s, h in got.items()}


def _funds_agree(adapter: Adapter, sdk: Any, book: dict[str, Any]) -> None:
    funds = adapter.funds()
    assert funds.used_margin > 0 and funds.segments["equity"].realised_pnl != 0
    assert [dec(v) for v in (funds.available_cash, funds.used_margin, funds.available_margin,
                             funds.segments["equity"].realised_pnl)] == [
        dec(book[k]) for k in ("opening_balance", "used_margin", "available_margin", "realised")]
    assert funds.segments["commodity"] == Segment(D(0), D(0), D(0))
    body = sdk.margins()
    documented = fixture("margins.json")["data"]["equity"]
    for seg in ("equity", "commodity"):
        assert set(body[seg]) == set(documented)
        assert set(body[seg]["available"]) == set(documented["available"])
        assert set(body[seg]["utilised"]) == set(documented["utilised"])
    assert (dec(body["equity"]["net"]), dec(body["equity"]["utilised"]["debits"])) == (
        dec(funds.available_margin), dec(funds.used_margin))
    assert sdk.margins("equity") == body["equity"]


def _trades_agree(adapter: Adapter, sdk: Any, book: list[dict[str, Any]]) -> None:
    got = adapter.trades()
    assert [(t.trade_id, t.broker_order_id, t.symbol, t.side, t.quantity, dec(t.price), t.client_order_id)
            for t in got] == [(b["trade_id"], b["order_id"], b["symbol"], b["side"], b["quantity"], dec(b["price"]), "")
                              for b in book]
    assert [t.product for t in got] == ["DELIVERY", "DELIVERY", "INTRADAY"]
    rows = sdk.trades()
    assert [(r["trade_id"], r["quantity"], D(str(r["average_price"]))) for r in rows] == [
        (t.trade_id, t.quantity, t.price) for t in got]
    # The SDK parses fill_timestamp into a datetime; ours keeps Kite's text.
    assert [r["fill_timestamp"].strftime("%Y-%m-%d %H:%M:%S") for r in rows] == [t.fill_time for t in got]


def test_each_read_is_one_request_of_its_class_and_errors_map_as_elsewhere(paper: PaperBroker, kite: Any) -> None:
    adapter, sdk, uid = kite
    adapter.positions(), adapter.holdings(), adapter.funds(), adapter.trades()
    log = [(e["method"], e["path"], e["endpoint_class"], e["status"]) for e in paper.requests()
           if e["user_id"] == uid and e["path"] in ("/portfolio/positions", "/portfolio/holdings", "/user/margins",
                                                    "/trades")]
    assert log == [("GET", "/portfolio/positions", "other", 200), ("GET", "/portfolio/holdings", "other", 200),
                   ("GET", "/user/margins", "other", 200), ("GET", "/trades", "orderbook", 200)]
    # A 429 is RateLimited, a 503 BrokerUnavailable, a dead session TokenExpired: errors.map_error, as elsewhere.
    paper.fault(kind="rate_limit", broker="kite", user_id=uid, count=1)
    with pytest.raises(RateLimited):
        adapter.holdings()
    paper.fault(kind="error_5xx", broker="kite", user_id=uid, count=1, status=503)
    with pytest.raises(BrokerUnavailable):
        adapter.funds()
    sdk.invalidate_access_token()
    with pytest.raises(TokenExpired):
        adapter.positions()
