"""Shoonya (Noren) account state: the pure translation on Finvasia's documented payloads
(tests/data/shoonya/, sources in its README.md), then the adapter against the paper broker after real
fills, checked against the paper broker's own books (paper/portfolio.py) and against what the
official NorenRestApiPy client reads from it.

The paper broker runs in this process (one uvicorn thread) so that its books can be read directly;
nothing moves its prices here but the quotes a test asks for (no resting orders, no tick socket)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from common.brokers.shoonya import portfolio
from common.brokers.shoonya.login import login
from common.brokers.shoonya.rest import Adapter
from common.errors import OrderRejected, TokenExpired
from common.models import Instrument, Order
from common.portfolio import Funds, Holding, Position, Segment, Trade
from devtools.accounts import paper_user_of
from devtools.waiting import wait_for
from paper import portfolio as books
from tests.account.helpers import InProcessPaper, accounts_at, in_process_paper
from tests.brokers import marketable
from tests.fixtures.paper import PaperUser, fresh_totp
from tests.paths import DATA

D = Decimal
SHOONYA_DATA = DATA / "shoonya"
# Room for every read; orders at the 2026 rule's 10/s (more needs a registered algo: common/algorules.py).
ROOMY = {"orders": ["10/s"], "orderbook": ["1000/s"], "other": ["1000/s"], "login": ["1000/s"]}
SBIN = Instrument("NSE", "SBIN", "3045", broker_symbol="SBIN-EQ")
INFY = Instrument("NSE", "INFY", "1594", broker_symbol="INFY-EQ")


def golden(name: str) -> Any:
    return json.loads((SHOONYA_DATA / name).read_text())


# ----- (a) the documented payloads ------------------------------------------------------------------
def test_position_book_sample() -> None:
    # The README's sample spells the product field "prarr"; a day's round trip, flat now.
    assert portfolio.positions_from_rows(golden("position_book.json")) == [Position(
        exchange="NSE", symbol="ACC", product="DELIVERY", quantity=0, average_price=D("0.00"),
        buy_quantity=2, buy_value=D("2610.00"), sell_quantity=2, sell_value=D("2610.00"), day_buy_quantity=2,
        day_sell_quantity=2, overnight_quantity=0, realised_pnl=D("0.00"), unrealised_pnl=D("0.00"),
        last_price=D("0.00"), multiplier=1, token="")]  # fmt: skip


def test_an_empty_book_is_empty_and_other_refusals_are_mapped() -> None:
    no_data = golden("position_book_no_data.json")
    assert portfolio.positions_from_rows(no_data) == []
    assert portfolio.trades_from_rows({"stat": "Not_Ok", "emsg": "no data"}) == []
    assert portfolio.holdings_from_rows(no_data) == []
    with pytest.raises(TokenExpired):
        portfolio.positions_from_rows({"stat": "Not_Ok", "emsg": "Session Expired : Invalid Session Key"})
    with pytest.raises(OrderRejected):
        portfolio.funds_from_limits({"stat": "Not_Ok", "emsg": "Invalid Input : Missing uid or actid or prd."})


def test_a_carried_position_and_the_product_codes() -> None:
    row = {"stat": "Ok", "exch": "NFO", "tsym": "NIFTY16DEC25C24000", "token": "43210", "prd": "M",
           "netqty": "-65", "netavgprc": "101.50", "daybuyqty": "0", "daysellqty": "130", "daybuyamt": "0.00",
           "daysellamt": "13195.00", "cfbuyqty": "65", "cfsellqty": "0", "cfbuyamt": "6500.00", "cfsellamt": "0.00",
           "rpnl": "97.50", "urmtom": "-325.00", "lp": "106.50", "mult": "1"}  # fmt: skip
    (pos,) = portfolio.positions_from_rows([row])
    assert (pos.symbol, pos.product, pos.quantity, pos.overnight_quantity) == ("NIFTY16DEC25C24000", "NORMAL", -65, 65)
    assert (pos.buy_quantity, pos.buy_value, pos.sell_quantity, pos.sell_value) == (65, D("6500.00"), 130, D("13195.00"))
    assert (pos.day_quantity, pos.realised_pnl, pos.unrealised_pnl) == (-130, D("97.50"), D("-325.00"))
    products = [p.product for p in portfolio.positions_from_rows([{**row, "prd": c} for c in "CIMBHZ"])]
    assert products == ["DELIVERY", "INTRADAY", "NORMAL", "INTRADAY", "INTRADAY", "Z"]  # unknown: kept


def test_holdings_sample() -> None:
    assert portfolio.holdings_from_rows(golden("holdings.json")) == [
        Holding(exchange="NSE", symbol="ABB", quantity=2_000_000, average_price=D("1800.00"), token="13"),
        Holding(exchange="NSE", symbol="ACC", quantity=2_000_000, average_price=D("1400.00"), token="22"),
    ]


def test_holdings_quantity_is_the_documented_valuation_on_the_nse_scrip() -> None:
    row = {"stat": "Ok", "exch_tsym": [{"exch": "BSE", "token": "500209", "tsym": "INFY"},
                                       {"exch": "NSE", "token": "1594", "tsym": "INFY-EQ"}],
           "holdqty": "1", "btstqty": "2", "brkcolqty": "3", "unplgdqty": "4", "benqty": "5", "npoadqty": "6",
           "dpqty": "7", "usedqty": "8", "upldprc": "1500.25"}  # fmt: skip
    (held,) = portfolio.holdings_from_rows([row, {**row, "holdqty": "0", "dpqty": "0", "npoadqty": "0",
                                                  "btstqty": "0", "brkcolqty": "0", "unplgdqty": "0", "benqty": "0",
                                                  "usedqty": "0"}])  # fmt: skip
    # btstqty + holdqty + brkcolqty + unplgdqty + benqty + max(npoadqty, dpqty) - usedqty
    assert (held.exchange, held.symbol, held.token) == ("NSE", "INFY", "1594")
    assert (held.quantity, held.t1_quantity, held.average_price) == (14, 2, D("1500.25"))


def test_limits_sample() -> None:
    # marginused 3945540 = grexpo 3915000 + urmtom 30540: urmtom is a debit there (a loss positive).
    funds = portfolio.funds_from_limits(golden("limits.json"))
    segment = Segment(available_cash=D("1500000000000000.00"), used_margin=D("3945540.00"),
                      available_margin=D("1499999996054460.00"), opening_balance=D("1500000000000000.00"),
                      collateral=D("0.00"), realised_pnl=D("0"), unrealised_pnl=D("-30540.00"))  # fmt: skip
    assert funds == Funds.of_segments({"all": segment})
    # The README's table names it unmtom: read when urmtom is absent; rpnl is a debit the same way.
    other = portfolio.funds_from_limits({"stat": "Ok", "cash": "100", "payin": "50", "brkcollamt": "20",
                                         "daycash": "5", "marginused": "40", "unmtom": "-12.5", "rpnl": "-7"})  # fmt: skip
    assert (other.available_cash, other.available_margin, other.used_margin) == (D("150"), D("135"), D("40"))
    assert (other.segments["all"].unrealised_pnl, other.segments["all"].realised_pnl) == (D("12.5"), D("7"))


def test_trade_book_sample() -> None:
    common = {"exchange": "NSE", "symbol": "ACCELYA", "product": "NORMAL", "quantity": 180, "price": D("800.00"),
              "client_order_id": "WC TEST Order", "fill_time": "01-01-1980 00:00:00", "token": "7053"}  # fmt: skip
    assert portfolio.trades_from_rows(golden("trade_book.json")) == [
        Trade(trade_id="102", broker_order_id="20121300065715", side="SELL", **common),
        Trade(trade_id="101", broker_order_id="20121300065716", side="BUY", **common),
    ]


def test_request_values_are_the_sdks() -> None:
    assert portfolio.account_values("FA1") == {"uid": "FA1", "actid": "FA1"}
    assert portfolio.account_values("FA1", portfolio.HOLDINGS_PRODUCT) == {"uid": "FA1", "actid": "FA1", "prd": "C"}


# ----- (b) the paper broker, after real fills ---------------------------------------------------------
@contextmanager
def shoonya_at_paper(tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[InProcessPaper, Adapter, PaperUser]]:
    """shoonya1 at a paper broker in this process (its state at hand), logged in by brokergate's own
    login: the paper broker, the adapter on that session and the paper user."""
    with in_process_paper() as paper, accounts_at(paper, tmp_path, monkeypatch, kite=0, angel=0, shoonya=1,
                                                  caps=ROOMY) as accounts:  # fmt: skip
        account = accounts["shoonya1"]
        token = login(account, totp_code=fresh_totp)["access_token"]
        yield paper, Adapter(account, lambda: token), paper_user_of(account)


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[InProcessPaper, Adapter, PaperUser]]:
    with shoonya_at_paper(tmp_path, monkeypatch) as got:
        yield got


def noren(paper: InProcessPaper, user: PaperUser, adapter: Adapter) -> Any:
    """The official client on the adapter's session (a second login would end that one)."""
    from NorenRestApiPy.NorenApi import NorenApi

    api = NorenApi(host=f"{paper.url}/NorenWClientTP/", websocket=paper.url.replace("http", "ws", 1) + "/NorenWSTP/")
    api.set_session(user.user_id, user.password, adapter._access_token())
    return api


def rupees(units: float) -> Decimal:
    """Paper figures (paise, possibly fractional) as the two-decimal rupees Noren prints."""
    return (D(repr(float(units))) / 100).quantize(D("0.01"), ROUND_HALF_UP)


def test_books_agree_with_the_paper_broker_and_the_sdk(live: tuple[InProcessPaper, Adapter, PaperUser]) -> None:
    paper, adapter, user = live
    uid, state = user.user_id, paper.state
    # Given a fresh account: no positions or trades, the seeded holdings, the opening cash
    assert adapter.positions() == [] and adapter.trades() == []
    assert {(h.symbol, h.quantity) for h in adapter.holdings()} == {("INFY", 10), ("RELIANCE", 5)}
    assert adapter.funds().available_margin == D(books.OPENING_CASH_RUPEES)
    # When it buys 10 SBIN for delivery, the price moves, it sells 4 of them, and buys 3 INFY intraday
    # (marketable LIMIT orders: Shoonya refuses MKT from API clients under the 2026 rules)
    buy = Order(account="shoonya1", exchange="NSE", symbol="SBIN", side="BUY", quantity=10, product="DELIVERY",
                **marketable("shoonya"))
    sell = Order(account="shoonya1", exchange="NSE", symbol="SBIN", side="SELL", quantity=4, product="DELIVERY",
                 **marketable("shoonya", "SELL"))
    intraday = Order(account="shoonya1", exchange="NSE", symbol="INFY", side="BUY", quantity=3, product="INTRADAY",
                     **marketable("shoonya"))
    adapter.place(buy, SBIN)
    api = noren(paper, user, adapter)
    (bought,) = adapter.trades()
    # each quote moves the price one step (or none): the sell fills at another price than the buy
    wait_for(lambda: D(api.get_quotes("NSE", "3045")["lp"]) != bought.price, timeout_s=5, what="a price move")
    adapter.place(sell, SBIN)
    adapter.place(intraday, INFY)

    # Then the positions are the paper broker's, as the adapter and the SDK read them
    paper_positions = {(p.instrument.symbol, p.product): p for p in books.positions(state, "shoonya", uid)}
    got = {(p.symbol, p.product): p for p in adapter.positions()}
    assert set(got) == {("SBIN", "DELIVERY"), ("INFY", "INTRADAY")}
    for (symbol, product), pos in got.items():
        mine = paper_positions[(symbol, {"DELIVERY": "CNC", "INTRADAY": "MIS"}[product])]
        assert (pos.quantity, pos.buy_quantity, pos.sell_quantity) == (mine.quantity, mine.buy_quantity,
                                                                       mine.sell_quantity)  # fmt: skip
        assert (pos.average_price, pos.buy_value, pos.sell_value, pos.last_price) == (
            rupees(mine.average_price), rupees(mine.buy_value), rupees(mine.sell_value), rupees(mine.last_price))
        assert (pos.realised_pnl, pos.unrealised_pnl) == (rupees(mine.realised), rupees(mine.unrealised))
        assert pos.pnl_at(pos.last_price) == rupees(mine.pnl)
    sbin = got[("SBIN", "DELIVERY")]
    assert (sbin.quantity, sbin.token, sbin.day_quantity, sbin.overnight_quantity) == (6, "3045", 6, 0)
    assert sbin.realised_pnl != 0  # the sell was at another price than the buy
    sdk_positions = api.get_positions()
    assert portfolio.positions_from_rows(sdk_positions) == adapter.positions()
    assert {(r["tsym"], r["prd"], r["netqty"]) for r in sdk_positions} == {("SBIN-EQ", "C", "6"), ("INFY-EQ", "I", "3")}

    # And the holdings: the seed, plus today's delivery buy net of the sell as T1
    paper_holdings = {h.instrument.symbol: h for h in books.holdings(state, "shoonya", uid)}
    held = {h.symbol: h for h in adapter.holdings()}
    assert set(held) == set(paper_holdings) == {"INFY", "RELIANCE", "SBIN"}
    for symbol, h in held.items():
        mine = paper_holdings[symbol]
        assert (h.quantity, h.t1_quantity, h.average_price) == (mine.quantity + mine.t1_quantity, mine.t1_quantity,
                                                                rupees(mine.average_price))  # fmt: skip
    assert (held["SBIN"].quantity, held["SBIN"].t1_quantity, held["INFY"].quantity) == (6, 6, 10)
    assert portfolio.holdings_from_rows(api.get_holdings()) == adapter.holdings()

    # And the funds: Noren's marginused nets the realised P&L, so the available margin is the paper's
    mine_funds = books.funds(state, "shoonya", uid)
    funds = adapter.funds()
    seg = funds.segments["all"]
    assert funds.available_margin == rupees(mine_funds.available_margin)
    assert funds.used_margin == rupees(mine_funds.used_margin - mine_funds.realised)
    assert (seg.opening_balance, seg.realised_pnl, seg.unrealised_pnl) == (
        D(books.OPENING_CASH_RUPEES), rupees(mine_funds.realised), rupees(mine_funds.unrealised))
    limits = api.get_limits()
    assert limits["stat"] == "Ok" and portfolio.funds_from_limits(limits) == funds

    # And the trades: every fill, with our tag
    paper_trades = {t.trade_id: (o, t) for o, t in books.trades(state, "shoonya", uid)}
    trades = adapter.trades()
    assert {t.trade_id for t in trades} == set(paper_trades) and len(trades) == 3
    for t in trades:
        order, fill = paper_trades[t.trade_id]
        assert (t.broker_order_id, t.side, t.quantity, t.price, t.client_order_id) == (
            order.order_id, order.transaction_type, fill.quantity, rupees(fill.price), order.tag)
    assert {t.client_order_id for t in trades} == {buy.client_order_id, sell.client_order_id, intraday.client_order_id}
    assert portfolio.trades_from_rows(api.get_trade_book()) == trades

    # And the new calls count as "other" at the paper broker, as the adapter's limiter counts them
    classes = {e["path"].rsplit("/", 1)[-1]: e["endpoint_class"] for e in paper.broker.requests()}
    assert {classes[n] for n in ("PositionBook", "Holdings", "Limits")} == {"other"}


def test_the_paper_broker_asks_for_what_noren_requires(live: tuple[InProcessPaper, Adapter, PaperUser]) -> None:
    paper, adapter, user = live
    api = noren(paper, user, adapter)
    key = api._NorenApi__susertoken

    def post(name: str, values: dict[str, str]) -> Any:
        body = f"jData={json.dumps(values)}&jKey={key}"
        return requests.post(f"{paper.url}/NorenWClientTP/{name}", data=body, timeout=5).json()

    assert post("Holdings", {"uid": user.user_id, "actid": user.user_id})["emsg"] == (
        "Invalid Input : Missing uid or actid or prd.")
    assert post("PositionBook", {"uid": user.user_id, "actid": "SOMEONE"})["emsg"] == "Invalid Input : Invalid actid"
    # Only delivery holdings exist: another product holds nothing
    assert post("Holdings", {"uid": user.user_id, "actid": user.user_id, "prd": "I"})["stat"] == "Not_Ok"
    assert api.get_positions() is None  # the SDK's reading of the "no data" answer
