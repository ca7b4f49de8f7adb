"""Angel One account state: the pure translation of SmartAPI's getPosition, getHolding /
getAllHolding, getRMS and getTradeBook on the documented examples (tests/data/angel/, sources in
its README), and the adapter against the paper broker after real fills, where it must agree with
the paper's own books (paper/portfolio.py) and with what the official SmartConnect reads.

The paper broker runs in this process (uvicorn in a thread) so that its books can be read
directly; the rest is the real road: brokergate's login, the adapter's HTTP, the SDK's HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from common.brokers.angel import portfolio
from common.brokers.angel.rest import Adapter
from common.brokers.angel.spec import SPEC
from common.errors import RateLimited
from common.portfolio import Funds, Holding, Position, Segment, Trade
from devtools.accounts import logged_in
from paper import portfolio as books
from tests.account.helpers import InProcessPaper, accounts_at, in_process_paper
from tests.brokers import marketable

# The SDK sets deprecated TLS options at construction; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:ssl.OP_NO:DeprecationWarning")

D = Decimal
DATA = Path(__file__).resolve().parents[1] / "data" / "angel"
# Room for every read; orders at the 2026 rule's 10/s (more needs a registered algo: common/algorules.py).
ROOMY = {"orders": ["10/s"], "orderbook": ["1000/s"], "portfolio": ["1000/s"], "login": ["1000/s"],
         "other": ["1000/s"]}


def golden(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((DATA / name).read_text())
    return body


# --- the documented payloads ----------------------------------------------------------------------------
def test_documented_position_row() -> None:
    [pos] = portfolio.positions(golden("position.json"))
    assert pos == Position(exchange="NSE", symbol="RELIANCE", product="DELIVERY", quantity=1,
                           average_price=D("2235.80"), buy_quantity=1, buy_value=D("2235.80"), sell_quantity=0,
                           sell_value=D(0), day_buy_quantity=1, day_sell_quantity=0, overnight_quantity=0,
                           token="2885")
    assert pos.key == "NSE:RELIANCE:DELIVERY"


def test_position_products_carried_quantities_and_pnl_fields() -> None:
    row = golden("position.json")["data"][0]
    carried = {**row, "producttype": "CARRYFORWARD", "tradingsymbol": "BANKNIFTY29MAR2340200CE",
               "instrumenttype": "OPTIDX", "exchange": "NFO", "buyqty": "25", "sellqty": "50", "cfbuyqty": "50",
               "cfsellqty": "0", "netqty": "25", "totalbuyvalue": "530.00", "totalsellvalue": "330.00",
               "avgnetprice": "7.15", "ltp": "6.9", "realised": "-13.75", "unrealised": "-6.25"}
    margin = {**row, "producttype": "MARGIN", "netqty": "0", "avgnetprice": "0.00", "netprice": "0.00"}
    intraday = {**row, "producttype": "INTRADAY", "avgnetprice": None, "netprice": "2235.85"}
    fno, mtf, mis = portfolio.positions({"status": True, "data": [carried, margin, intraday]})
    assert (fno.symbol, fno.product, fno.quantity, fno.overnight_quantity) == ("BANKNIFTY29MAR2340200CE", "NORMAL", 25, 50)
    assert (fno.buy_quantity, fno.sell_quantity, fno.day_buy_quantity, fno.day_sell_quantity) == (75, 50, 25, 50)
    assert (fno.buy_value, fno.sell_value, fno.average_price) == (D("530.00"), D("330.00"), D("7.15"))
    assert (fno.last_price, fno.realised_pnl, fno.unrealised_pnl) == (D("6.9"), D("-13.75"), D("-6.25"))
    assert (mtf.product, mtf.quantity, mtf.average_price) == ("NORMAL", 0, D(0))
    assert (mis.product, mis.average_price) == ("INTRADAY", D("2235.85"))  # netprice when avgnetprice is missing
    assert portfolio.positions({"status": True, "message": "SUCCESS", "errorcode": "", "data": None}) == []


def test_documented_holdings_of_get_holding_and_get_all_holding() -> None:
    [one] = portfolio.holdings(golden("holding.json"))
    assert one == Holding(exchange="NSE", symbol="TATASTEEL", quantity=2, average_price=D("111.87"), t1_quantity=0,
                          last_price=D("130.15"), pnl=D(37), isin="INE081A01020", token="3499")
    every = portfolio.holdings(golden("all_holding.json"))
    assert [(h.symbol, h.quantity, h.average_price, h.pnl) for h in every] == [
        ("TATASTEEL", 2, D("111.87"), D(37)), ("PARAGMILK", 2, D("154.03"), D(94)), ("SBIN", 8, D("573.1"), D(48))]
    assert every[0] == one


def test_documented_and_real_rms_limits_are_one_segment() -> None:
    big = D("9999999999999")
    assert portfolio.funds(golden("rms.json")) == Funds(
        available_cash=big, used_margin=D(0), available_margin=big,
        segments={"all": Segment(available_cash=big, used_margin=D(0), available_margin=big)})
    real = portfolio.funds(golden("rms_forum.json"))
    assert (real.available_cash, real.used_margin, real.available_margin) == (
        D("18116.811999999998079"), D("12554.549999999999272"), D("18116.811999999998079"))
    assert real.segments[portfolio.SEGMENT].collateral == D("31546.331999999998516")


def test_documented_trade_book_row() -> None:
    assert portfolio.trades(golden("tradebook.json")) == [
        Trade(trade_id="50005750", broker_order_id="201020000000095", exchange="NSE", symbol="ITC",
              product="DELIVERY", side="BUY", quantity=1, price=D("175.00"), fill_time="13:27:53")]


def test_the_account_state_reads_share_the_tightest_documented_cap() -> None:
    # getPosition, getTradeBook, getHolding, getAllHolding 1/s; getRMS 2/s (SmartAPI "Rate Limit").
    assert SPEC.caps["portfolio"] == ["1/s"]


# --- against the paper broker --------------------------------------------------------------------------
@pytest.fixture
def live_paper() -> Iterator[InProcessPaper]:
    """A paper broker in this process, so the test can read its books (paper/portfolio.py)."""
    with in_process_paper() as paper:
        yield paper


@dataclass
class Angel:
    account: Any
    adapter: Adapter
    sdk: Any  # SmartApi.SmartConnect on the same session


def _angel(live: InProcessPaper, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           caps: dict[str, list[str]] | None) -> Iterator[Angel]:
    from SmartApi import SmartConnect

    monkeypatch.chdir(tmp_path)  # SmartConnect() writes ./logs/<date>/app.log
    with accounts_at(live, tmp_path, monkeypatch, kite=0, angel=1, caps=caps) as accounts:
        account = accounts["angel1"]
        token = logged_in(accounts)["angel1"]
        jwt = token.access_token.removeprefix("Bearer ")
        sdk = SmartConnect(api_key=account.api_key, access_token=jwt, root=live.url)
        yield Angel(account, Adapter(account, lambda: jwt), sdk)


@pytest.fixture
def angel(live_paper: InProcessPaper, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Angel]:
    """One Angel account at the in-process paper broker, logged in by brokergate; roomy caps."""
    yield from _angel(live_paper, redis_url, tmp_path, monkeypatch, ROOMY)


def _market(sdk: Any, side: str, symbol: str, token: str, qty: int, product: str) -> str:
    """An order that fills at once: a LIMIT through every paper price (Angel refuses MARKET orders
    from API clients under the 2026 rules)."""
    price = marketable("angel", side)["price"]
    order_id = sdk.placeOrder({"variety": "NORMAL", "tradingsymbol": symbol, "symboltoken": token,
                               "transactiontype": side, "exchange": "NSE", "ordertype": "LIMIT",
                               "producttype": product, "duration": "DAY", "price": price, "quantity": str(qty)})
    assert order_id, f"{side} {qty} {symbol} was not placed"
    return str(order_id)


def _rupees(units: float) -> Decimal:
    """A paper amount (paise) as Angel's two-decimal string reads."""
    return D(f"{units / 100:.2f}")


def _trade_fills(live: InProcessPaper, angel: Angel) -> list[str]:
    """BUY 10 SBIN, SELL 4 of them (DELIVERY), BUY 3 INFY (INTRADAY); all filled at once."""
    sdk = angel.sdk
    ids = [_market(sdk, "BUY", "SBIN-EQ", "3045", 10, "DELIVERY"), _market(sdk, "SELL", "SBIN-EQ", "3045", 4, "DELIVERY"),
           _market(sdk, "BUY", "INFY-EQ", "1594", 3, "INTRADAY")]
    orders = {o.order_id: o for o in live.state.orders.values()}
    assert all(orders[i].status == "COMPLETE" for i in ids)
    return ids


def test_positions_agree_with_the_paper_books_and_the_sdk(live_paper: InProcessPaper, angel: Angel) -> None:
    _trade_fills(live_paper, angel)
    uid = angel.account.user_id
    book = {(p.instrument.symbol, p.product): p for p in books.positions(live_paper.state, "angel", uid)}
    ours = {(p.symbol, p.product): p for p in angel.adapter.positions()}
    assert set(ours) == {("SBIN", "DELIVERY"), ("INFY", "INTRADAY")} == set(book)
    for key, pos in ours.items():
        paper = book[key]
        assert (pos.exchange, pos.token) == ("NSE", paper.instrument.angel_token)
        assert (pos.quantity, pos.buy_quantity, pos.sell_quantity) == (
            paper.quantity, paper.buy_quantity, paper.sell_quantity)
        assert (pos.day_buy_quantity, pos.day_sell_quantity, pos.overnight_quantity) == (
            paper.buy_quantity, paper.sell_quantity, 0)
        assert (pos.buy_value, pos.sell_value) == (D(paper.buy_value) / 100, D(paper.sell_value) / 100)
        assert pos.average_price == _rupees(paper.average_price)
        assert pos.last_price == D(paper.last_price) / 100
        assert (pos.realised_pnl, pos.unrealised_pnl) == (_rupees(paper.realised), _rupees(paper.unrealised))
    assert ours["SBIN", "DELIVERY"].quantity == 6 and ours["INFY", "INTRADAY"].quantity == 3
    # The official client reads the same rows, in Angel's own names.
    read = angel.sdk.position()
    assert read["status"] is True and portfolio.positions(read) == angel.adapter.positions()
    sbin = next(r for r in read["data"] if r["tradingsymbol"] == "SBIN-EQ")
    assert (sbin["producttype"], sbin["netqty"], sbin["buyqty"], sbin["sellqty"]) == ("DELIVERY", "6", "10", "4")


def test_trades_agree_with_the_paper_books_and_the_sdk(live_paper: InProcessPaper, angel: Angel) -> None:
    ids = _trade_fills(live_paper, angel)
    uid = angel.account.user_id
    book = [(t.trade_id, o.order_id, o.transaction_type, t.quantity, D(t.price) / 100)
            for o, t in books.trades(live_paper.state, "angel", uid)]
    ours = angel.adapter.trades()
    assert [(t.trade_id, t.broker_order_id, t.side, t.quantity, t.price) for t in ours] == book
    assert sorted({t.broker_order_id for t in ours}) == sorted(ids)
    assert {(t.symbol, t.product) for t in ours} == {("SBIN", "DELIVERY"), ("INFY", "INTRADAY")}
    read = angel.sdk.tradeBook()
    assert portfolio.trades(read) == ours
    assert all(isinstance(v, str) for row in read["data"] for v in row.values())  # every value a string


def test_holdings_and_funds_agree_with_the_paper_books_and_the_sdk(live_paper: InProcessPaper, angel: Angel) -> None:
    _trade_fills(live_paper, angel)
    uid = angel.account.user_id
    held = {h.instrument.symbol: h for h in books.holdings(live_paper.state, "angel", uid)}
    ours = {h.symbol: h for h in angel.adapter.holdings()}
    assert set(ours) == set(held) and ours
    for symbol, h in ours.items():
        paper = held[symbol]
        assert (h.quantity, h.t1_quantity) == (paper.quantity + paper.t1_quantity, paper.t1_quantity)
        assert h.average_price == _rupees(paper.average_price) and h.last_price == _rupees(paper.last_price)
        assert h.pnl == D(round(paper.pnl / 100))  # whole rupees, as Angel's profitandloss
    assert portfolio.holdings(angel.sdk.holding()) == angel.adapter.holdings()
    assert portfolio.holdings(angel.sdk.allholding()) == angel.adapter.holdings()

    paper_funds = books.funds(live_paper.state, "angel", uid)
    funds = angel.adapter.funds()
    assert funds.available_margin == _rupees(paper_funds.available_margin) == funds.available_cash
    assert funds.used_margin == _rupees(paper_funds.used_margin) and funds.used_margin > 0
    segment = funds.segments[portfolio.SEGMENT]
    assert (segment.realised_pnl, segment.unrealised_pnl) == (
        _rupees(paper_funds.realised), _rupees(paper_funds.unrealised))
    read = angel.sdk.rmsLimit()
    assert read["status"] is True and portfolio.funds(read) == funds


@pytest.fixture
def angel_default_caps(live_paper: InProcessPaper, redis_url: str, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> Iterator[Angel]:
    """An Angel account whose paper user has the dialect's default caps (portfolio 1/s)."""
    yield from _angel(live_paper, redis_url, tmp_path, monkeypatch, None)


def test_the_portfolio_reads_share_one_cap_at_the_paper_broker(live_paper: InProcessPaper,
                                                              angel_default_caps: Angel) -> None:
    adapter = angel_default_caps.adapter
    assert adapter.positions() == []  # an empty book is "data": null
    with pytest.raises(RateLimited):
        adapter.funds()  # another account-state read within the same second: Angel's 403
    seen = [(e["path"].rsplit("/", 1)[-1], e["endpoint_class"], e["status"]) for e in live_paper.broker.requests()
            if e["path"].endswith(("/getPosition", "/getRMS"))]
    assert seen == [("getPosition", "portfolio", 200), ("getRMS", "portfolio", 403)]
