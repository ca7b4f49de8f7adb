"""Fyers account state: the pure translation on the docs' own payloads (tests/data/fyers/), then the
adapter against the paper broker after real fills, checked against the paper broker's books
(paper/portfolio.py) and against what the official ``fyers_apiv3`` SDK reads from the same broker.

The paper broker runs in this process (its app on a uvicorn thread), so the test reads its books
straight off its state. Its prices move only when something steps them: the test steps the two
instruments it trades between a buy and a sell (a realised P&L that is not zero), and keeps one
order resting on a third, far from the market, so funds carry blocked margin while nothing the
reads compare can move.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from common.brokers.fyers import login as fyers_login
from common.brokers.fyers import portfolio
from common.brokers.fyers.rest import FUNDS_PATH, HOLDINGS_PATH, POSITIONS_PATH, TRADEBOOK_PATH, Adapter
from common.errors import TokenExpired
from common.models import Order
from common.portfolio import Funds, Holding, Position, Segment, Trade
from common.settings import Account, Secret
from devtools.paperbroker import PaperUser
from paper import portfolio as books
from paper.state import PaperState
from tests.account.helpers import InProcessPaper, in_process_paper
from tests.paths import DATA

D = Decimal
GOLDEN = DATA / "fyers"
ROOMY = {c: ["1000/s"] for c in ("orders", "orderbook", "other", "login", "quote")}


def golden(name: str) -> dict[str, Any]:
    return dict(json.loads((GOLDEN / name).read_text()))


# --- (a) the docs' payloads ------------------------------------------------------------------------------
def test_positions_of_the_docs_sample() -> None:
    [p] = portfolio.positions(golden("positions.json"))
    # MCX from the ticker (the sample's own "exchange": 10 is NSE's code), MARGIN is NORMAL
    assert p == Position(
        exchange="MCX", symbol="SILVERMIC20AUGFUT", product="NORMAL", quantity=1, average_price=D("72256.0"),
        buy_quantity=2, buy_value=D("144512.0"), sell_quantity=1, sell_value=D("72656.0"), day_buy_quantity=0,
        day_sell_quantity=1, overnight_quantity=0, realised_pnl=D("400.0"), unrealised_pnl=D("461.0"),
        last_price=D("72717.0"), multiplier=1, token="1120200831217406",
    )  # fmt: skip
    assert p.key == "MCX:SILVERMIC20AUGFUT:NORMAL"


def test_holdings_of_the_docs_sample() -> None:
    got = portfolio.holdings(golden("holdings.json"))
    assert got == [
        Holding(exchange="NSE", symbol="JPASSOCIAT", quantity=1, average_price=D("1.55"), t1_quantity=1,
                last_price=D("3.75"), pnl=D("2.2"), isin="INE669E01016", token="101000000011460"),
        Holding(exchange="NSE", symbol="ZEEL", quantity=1, average_price=D("192.6"), t1_quantity=1,
                last_price=D("149.7"), pnl=D("-42.9"), isin="INE669E01016", token="10100000003812"),
    ]  # fmt: skip


def test_funds_of_the_docs_sample() -> None:
    f = portfolio.funds(golden("funds.json"))
    equity = Segment(available_cash=D("58.150000000000006"), used_margin=D("0.3"),
                     available_margin=D("58.150000000000006"), opening_balance=D("58.45"), collateral=D(0),
                     realised_pnl=D("-0.3"))  # fmt: skip
    zero = Segment(available_cash=D(0), used_margin=D(0), available_margin=D(0))
    assert f == Funds.of_segments({"equity": equity, "commodity": zero})
    assert (f.available_margin, f.used_margin) == (D("58.150000000000006"), D("0.3"))


def test_trades_of_the_docs_sample() -> None:
    got = portfolio.trades(golden("tradebook.json"))
    assert got[0] == Trade(trade_id="52605023", broker_order_id="120080789075", exchange="NSE", symbol="PNB",
                           product="DELIVERY", side="BUY", quantity=10, price=D("32.7"), client_order_id="Ordertag",
                           fill_time="07-Aug-2020 13:51:12", token="101000000010666")  # fmt: skip
    assert [(t.symbol, t.quantity, t.price, t.broker_order_id) for t in got[1:]] == [
        ("CENTRUM", 19, D("14.1"), "120080789139"), ("IDFNIFTYET", 4, D("115.5"), "120080797993")]


@pytest.mark.parametrize(("ticker", "segment", "expected"), [
    ("NSE:SBIN-EQ", 10, ("NSE", "SBIN")),
    ("NSE:MODIRUBBER-BE", 10, ("NSE", "MODIRUBBER-BE")),  # other series kept, as the instrument master
    ("BSE:SBIN-A", 10, ("BSE", "SBIN-A")),
    ("NSE:NIFTY25D1624000CE", 11, ("NFO", "NIFTY25D1624000CE")),
    ("BSE:SENSEX23AUGFUT", 11, ("BFO", "SENSEX23AUGFUT")),
    ("NSE:USDINR20OCTFUT", 12, ("CDS", "USDINR20OCTFUT")),
    ("MCX:CRUDEOIL20OCTFUT", 20, ("MCX", "CRUDEOIL20OCTFUT")),
    ("NSE:SBIN-EQ", None, ("NSE", "SBIN")),  # no segment: the series suffix says cash
    ("NSE:NIFTY20OCTFUT", None, ("NFO", "NIFTY20OCTFUT")),
])  # fmt: skip
def test_exchange_and_symbol_from_the_ticker(ticker: str, segment: int | None, expected: tuple[str, str]) -> None:
    assert portfolio.exchange_symbol(ticker, segment) == expected


def test_products_sides_and_tags() -> None:
    assert {c: portfolio.product_of(c) for c in ("CNC", "MTF", "INTRADAY", "CO", "BO", "MARGIN", "odd")} == {
        "CNC": "DELIVERY", "MTF": "DELIVERY", "INTRADAY": "INTRADAY", "CO": "INTRADAY", "BO": "INTRADAY",
        "MARGIN": "NORMAL", "odd": "ODD"}  # fmt: skip
    row = golden("tradebook.json")["tradeBook"][0]
    sold = portfolio.trades({"tradeBook": [{**row, "side": -1, "orderTag": "2:Untagged", "productType": "INTRADAY"}]})
    assert (sold[0].side, sold[0].client_order_id, sold[0].product) == ("SELL", "", "INTRADAY")


def test_a_short_position_and_a_flat_one() -> None:
    short = {"symbol": "NSE:SBIN-EQ", "segment": 10, "netQty": -5, "sellAvg": 801.5, "sellQty": 5, "sellVal": 4007.5,
             "productType": "INTRADAY", "pl": 12.5, "realized_profit": 0}  # no avgPrice nor unrealized_profit
    flat = {**short, "netQty": 0, "avgPrice": 800, "buyQty": 5, "buyVal": 3995, "realized_profit": 12.5}
    s, f = portfolio.positions({"netPositions": [short, flat]})
    assert (s.quantity, s.average_price, s.unrealised_pnl, s.product) == (-5, D("801.5"), D("12.5"), "INTRADAY")
    assert (f.quantity, f.average_price, f.realised_pnl) == (0, D(0), D("12.5"))


def test_hld_and_t1_rows_of_one_symbol_merge() -> None:
    rows = [
        {"symbol": "NSE:SBIN-EQ", "segment": 10, "holdingType": "HLD", "quantity": 8, "remainingQuantity": 6,
         "costPrice": 500, "ltp": 520, "pl": 120, "qty_t1": 0, "isin": "INE062A01020", "fyToken": "10100000003045"},
        {"symbol": "NSE:SBIN-EQ", "segment": 10, "holdingType": "T1", "quantity": 2, "remainingQuantity": 2,
         "costPrice": 510, "ltp": 520, "pl": 20, "qty_t1": 2},
        {"symbol": "NSE:IDEA-EQ", "holdingType": "HLD", "quantity": 3, "remainingQuantity": 0, "costPrice": 7},
    ]  # fmt: skip
    [h] = portfolio.holdings({"holdings": rows})  # IDEA was sold in full today
    assert h == Holding(exchange="NSE", symbol="SBIN", quantity=8, average_price=D(4020) / 8, t1_quantity=2,
                        last_price=D(520), pnl=D(140), isin="INE062A01020", token="10100000003045")  # fmt: skip


def test_empty_and_malformed_answers() -> None:
    assert portfolio.positions({"s": "ok", "netPositions": []}) == []
    assert portfolio.holdings({"s": "ok"}) == [] and portfolio.trades({"tradeBook": None}) == []
    assert portfolio.positions({"netPositions": ["junk", {"netQty": 1}]}) == []
    assert portfolio.funds({"fund_limit": []}) == Funds(D(0), D(0), D(0), {
        "equity": Segment(D(0), D(0), D(0)), "commodity": Segment(D(0), D(0), D(0))})


# --- (b) against the paper broker ------------------------------------------------------------------------
@pytest.fixture
def inproc() -> Iterator[InProcessPaper]:
    with in_process_paper(seed=7) as paper:
        yield paper


def fyers_account(paper: InProcessPaper, user: PaperUser) -> Account:
    """The account of ``user`` at the in-process paper broker (its REST, login and sockets)."""
    ws = paper.url.replace("http://", "ws://")
    return Account(name="fyers1", broker="fyers", user_id=user.user_id, api_key=user.api_key,
                   password=Secret(user.password), totp_secret=Secret(user.totp_secret),
                   api_secret=Secret(user.api_secret), rest_url=paper.url, login_url=paper.url,
                   ws_url=f"{ws}/hsm/v1-5/prod", order_ws_url=f"{ws}/trade/v3", caps={})  # fmt: skip


def fyers_logged_in(paper: InProcessPaper, user_id: str) -> tuple[PaperUser, Adapter, str]:
    """A new paper user (roomy caps) logged in by brokergate's own login: the user, the adapter on
    that session and its access token."""
    user = paper.broker.add_user(broker="fyers", user_id=user_id, password="1234", api_key="ABCD1234-100",
                                 caps=ROOMY)  # fmt: skip
    account = fyers_account(paper, user)
    token = fyers_login.login(account)["access_token"]
    return user, Adapter(account, lambda: token), token


def _step_price(state: PaperState, symbol: str) -> None:
    """Walk the instrument's price until it changes (the paper's own walk, stepped by hand)."""
    inst = state.by_symbol("NSE", symbol)
    assert inst is not None
    before = state.prices.last_price(inst)
    while state.prices.last_price(inst) == before:
        state.prices.advance(inst)


def _rupees(units: float) -> Decimal:
    return D(str(round(units / 100, 4)))


def _near(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) < D("0.0001")


@pytest.fixture
def sdk_api(inproc: InProcessPaper, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fyers_apiv3 import fyersModel

    monkeypatch.chdir(tmp_path)  # the SDK writes its log files into the working directory
    monkeypatch.setattr(fyersModel.Config, "API", f"{inproc.url}/api/v3")


def _trade_a_little(paper: InProcessPaper, adapter: Adapter) -> dict[str, Order]:
    """BUY 10 SBIN delivery, a price step, SELL 4 (partial); an intraday INFY round trip across a
    step; a TCS delivery buy resting far below the market."""
    state = paper.state
    tcs = state.by_symbol("NSE", "TCS")
    assert tcs is not None
    far = state.prices.last_price(tcs) // 2 // tcs.tick_size_paise * tcs.tick_size_paise
    orders = {
        "buy": Order(account="fyers1", exchange="NSE", symbol="SBIN", side="BUY", quantity=10, product="DELIVERY"),
        "sell": Order(account="fyers1", exchange="NSE", symbol="SBIN", side="SELL", quantity=4, product="DELIVERY"),
        "in": Order(account="fyers1", exchange="NSE", symbol="INFY", side="BUY", quantity=3),
        "out": Order(account="fyers1", exchange="NSE", symbol="INFY", side="SELL", quantity=3),
        "rest": Order(account="fyers1", exchange="NSE", symbol="TCS", side="BUY", quantity=2, product="DELIVERY",
                      order_type="LIMIT", price=D(far) / 100),
    }  # fmt: skip
    for name, order in orders.items():
        if name in ("sell", "out"):
            _step_price(state, order.symbol)
        adapter.place(order, None)
    return orders


def test_account_state_agrees_with_the_books_and_the_sdk(inproc: InProcessPaper, sdk_api: None) -> None:
    from fyers_apiv3 import fyersModel

    # Given a Fyers account logged in at the paper broker with our own login, and some fills
    user, adapter, token = fyers_logged_in(inproc, "XF12345")
    orders = _trade_a_little(inproc, adapter)
    state, uid = inproc.state, user.user_id

    # When the adapter reads the account state
    positions, holdings, funds, trades = adapter.positions(), adapter.holdings(), adapter.funds(), adapter.trades()

    # Then positions agree with the paper broker's books
    want = {(p.instrument.symbol, p.product): p for p in books.positions(state, "fyers", uid)}
    assert set(want) == {("SBIN", "CNC"), ("INFY", "MIS")}
    got = {p.key: p for p in positions}
    assert set(got) == {"NSE:SBIN:DELIVERY", "NSE:INFY:INTRADAY"}
    for key, book in (("NSE:SBIN:DELIVERY", want["SBIN", "CNC"]), ("NSE:INFY:INTRADAY", want["INFY", "MIS"])):
        p = got[key]
        assert (p.quantity, p.buy_quantity, p.sell_quantity) == (book.quantity, book.buy_quantity, book.sell_quantity)
        assert (p.day_buy_quantity, p.day_sell_quantity, p.overnight_quantity) == (book.buy_quantity,
                                                                                   book.sell_quantity, 0)
        assert (p.buy_value, p.sell_value, p.last_price) == (_rupees(book.buy_value), _rupees(book.sell_value),
                                                             _rupees(book.last_price))  # fmt: skip
        assert _near(p.average_price, _rupees(book.average_price))
        assert _near(p.realised_pnl, _rupees(book.realised)) and _near(p.unrealised_pnl, _rupees(book.unrealised))
        assert p.token == book.instrument.fyers_token
    assert got["NSE:SBIN:DELIVERY"].quantity == 6 and got["NSE:SBIN:DELIVERY"].realised_pnl != 0
    assert got["NSE:INFY:INTRADAY"].quantity == 0 and got["NSE:INFY:INTRADAY"].average_price == 0

    # ... and so do the trades (our tags come back as client order ids), holdings and funds
    book_trades = books.trades(state, "fyers", uid)
    assert [(t.trade_id, t.broker_order_id, t.side, t.quantity, t.price, t.client_order_id) for t in trades] == [
        (bt.trade_id, o.order_id, o.transaction_type, bt.quantity, _rupees(bt.price), o.tag) for o, bt in book_trades]
    assert [t.client_order_id for t in trades] == [orders[n].client_order_id for n in ("buy", "sell", "in", "out")]
    assert [t.product for t in trades] == ["DELIVERY", "DELIVERY", "INTRADAY", "INTRADAY"]
    assert all((t.exchange, t.fill_time[2]) == ("NSE", "-") for t in trades)

    want_h = {h.instrument.symbol: h for h in books.holdings(state, "fyers", uid)}
    got_h = {h.symbol: h for h in holdings}
    assert set(got_h) == set(want_h) == {"INFY", "RELIANCE", "SBIN"}
    for sym, book_h in want_h.items():
        h = got_h[sym]
        assert (h.quantity, h.t1_quantity) == (book_h.quantity + book_h.t1_quantity, book_h.t1_quantity)
        assert (h.average_price, h.last_price, h.pnl) == (_rupees(book_h.average_price), _rupees(book_h.last_price),
                                                          _rupees(book_h.pnl))  # fmt: skip
    assert (got_h["SBIN"].quantity, got_h["SBIN"].t1_quantity) == (6, 6)

    book_f = books.funds(state, "fyers", uid)
    equity = funds.segments["equity"]
    assert (equity.available_margin, equity.used_margin, equity.opening_balance, equity.realised_pnl) == (
        _rupees(book_f.available_margin), _rupees(book_f.used_margin), _rupees(book_f.opening_balance),
        _rupees(book_f.realised))  # fmt: skip
    assert equity.available_cash == _rupees(book_f.opening_balance + book_f.realised)
    assert funds.segments["commodity"] == Segment(D(0), D(0), D(0))
    assert (funds.available_margin, funds.used_margin) == (equity.available_margin, equity.used_margin)
    resting = orders["rest"].price
    assert resting is not None and funds.used_margin >= 2 * resting > 0  # the TCS buy: delivery, paid in full

    # And the official SDK reads the very same answers from the paper broker
    sdk = fyersModel.FyersModel(client_id=user.api_key, token=token, log_path=str(Path.cwd()))
    answers = {"positions": sdk.positions(), "holdings": sdk.holdings(), "funds": sdk.funds(),
               "tradebook": sdk.tradebook()}  # fmt: skip
    assert all(a["s"] == "ok" and a["code"] == 200 for a in answers.values()), answers
    assert portfolio.positions(answers["positions"]) == positions
    assert portfolio.holdings(answers["holdings"]) == holdings
    assert portfolio.funds(answers["funds"]) == funds
    assert portfolio.trades(answers["tradebook"]) == trades
    rows = {r["symbol"]: r for r in answers["positions"]["netPositions"]}
    assert rows["NSE:SBIN-EQ"]["productType"] == "CNC" and rows["NSE:INFY-EQ"]["productType"] == "INTRADAY"
    assert answers["positions"]["overall"]["count_total"] == 2 and answers["positions"]["overall"]["count_open"] == 1
    assert answers["tradebook"]["tradeBook"][0]["orderTag"] == f"1:{orders['buy'].client_order_id}"
    assert answers["funds"]["fund_limit"][-1]["title"] == "Available Balance"

    # The account-state reads count on the "other" class at the paper broker (Fyers: one budget)
    paths = {POSITIONS_PATH, HOLDINGS_PATH, FUNDS_PATH, TRADEBOOK_PATH}
    logged = [e for e in inproc.broker.requests() if e["path"] in paths]
    assert len(logged) == 8 and {e["endpoint_class"] for e in logged} == {"other"}


def test_a_refused_token_is_mapped_by_the_error_map(inproc: InProcessPaper) -> None:
    user = inproc.broker.add_user(broker="fyers", user_id="XF54321", password="1234", api_key="ABCD1234-100",
                                  caps=ROOMY)  # fmt: skip
    adapter = Adapter(fyers_account(inproc, user), lambda: "not-a-token")
    for read in (adapter.positions, adapter.holdings, adapter.funds, adapter.trades):
        with pytest.raises(TokenExpired):
            read()
