"""Angel One margin calculator (``POST margin/v1/batch``): the pure request builder and answer
parser on Angel's own example (tests/data/angel/margin*.json, sources in its README), and the
adapter, the client and the official SmartConnect's ``getMarginApi`` against the paper broker,
where every figure must be what the paper's own calculator (paper/portfolio.py margin_for) says.

The paper broker runs in this process (the fixtures of test_angel_portfolio.py), so the test can
price the same orders with margin_for on the paper's own state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from common.brokers.angel import portfolio
from common.brokers.angel.spec import SPEC
from common.errors import InvalidOrder, OrderRejected
from common.models import Instrument, Order
from common.portfolio import Margin
from paper import portfolio as books
from paper.universe import PaperInstrument
from paper.users import DEFAULT_CAPS
from tests.account import test_angel_portfolio as shared
from tests.account.helpers import InProcessPaper
from tests.account.test_angel_portfolio import ROOMY, Angel

pytestmark = pytest.mark.filterwarnings("ignore:ssl.OP_NO:DeprecationWarning")
live_paper = shared.live_paper  # the in-process paper broker (a fixture, shared with the portfolio tests)

D = Decimal
DATA = Path(__file__).resolve().parents[1] / "data" / "angel"


def golden(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((DATA / name).read_text())
    return body


def _order(symbol: str = "SBIN", qty: int = 10, **kw: Any) -> Order:
    return Order(account="angel1", exchange=kw.pop("exchange", "NSE"), symbol=symbol, side=kw.pop("side", "BUY"),
                 quantity=qty, **kw)


def _json_type(v: Any) -> str:
    """A value's JSON type: quantity and price are numbers, the rest strings."""
    return "number" if isinstance(v, (int, float)) and not isinstance(v, bool) else type(v).__name__


SBIN = Instrument(exchange="NSE", symbol="SBIN", token="3045", broker_symbol="SBIN-EQ")
NIFTY_CE = Instrument(exchange="NFO", symbol="NIFTY23OCT19500CE", token="67300", lot_size=50,
                      instrument_type="OPTIDX")


# --- the documented payloads ----------------------------------------------------------------------------
def test_documented_answer_is_the_basket_total() -> None:
    body = golden("margin.json")
    # Two positions were asked (margin_request.json): the total is the basket's, no figure per order.
    assert portfolio.margin(body, 2) == Margin(total=D("29612.35"))
    assert portfolio.margin(body, 1) == Margin(total=D("29612.35"), orders=(D("29612.35"),))
    assert portfolio.margin({"status": True, "message": "SUCCESS", "errorcode": "", "data": None}, 1) is None


def test_request_fields_are_the_documented_ones_from_the_place_order_translation() -> None:
    documented = golden("margin_request.json")["positions"]
    buy = _order("NIFTY23OCT19500CE", 50, exchange="NFO", order_type="MARKET", product="INTRADAY")
    sell = _order("NIFTY23OCT19500CE", 50, exchange="NFO", order_type="MARKET", product="INTRADAY", side="SELL")
    body = portfolio.margin_request([(buy, NIFTY_CE), (sell, NIFTY_CE)])
    ours = body["positions"]
    assert set(body) == {"positions"} and len(ours) == 2
    for mine, doc in zip(ours, documented, strict=True):
        assert set(doc) <= set(mine)  # plus orderType, which the SDKs' examples leave out
        assert {k: _json_type(v) for k, v in mine.items() if k in doc} == {k: _json_type(v) for k, v in doc.items()}
    assert ours[0] == {"exchange": "NFO", "qty": 50, "price": 0.0, "productType": "INTRADAY", "token": "67300",
                       "tradeType": "BUY", "orderType": "MARKET"}
    assert ours[1]["tradeType"] == "SELL"
    # placeOrder's codes: a NORMAL limit order is CARRYFORWARD at its price, an SL-M STOPLOSS_MARKET.
    limit = _order(order_type="LIMIT", price=D("801.35"), product="NORMAL")
    slm = _order(order_type="SL-M", trigger_price=D("790"), product="DELIVERY", side="SELL")
    lim, stop = portfolio.margin_request([(limit, SBIN), (slm, SBIN)])["positions"]
    assert (lim["productType"], lim["orderType"], lim["price"], lim["token"]) == ("CARRYFORWARD", "LIMIT", 801.35, "3045")
    assert (stop["productType"], stop["orderType"], stop["price"]) == ("DELIVERY", "STOPLOSS_MARKET", 0.0)


def test_request_refuses_what_angel_cannot_price() -> None:
    with pytest.raises(InvalidOrder) as unknown:
        portfolio.margin_request([(_order(), None)])  # no token: not in the instrument master
    assert unknown.value.field == "symbol"
    too_many = [(_order(qty=i + 1), SBIN) for i in range(portfolio.MAX_MARGIN_POSITIONS + 1)]
    with pytest.raises(InvalidOrder) as basket:
        portfolio.margin_request(too_many)
    assert basket.value.field == "orders"
    assert len(portfolio.margin_request(too_many[:-1])["positions"]) == 50


def test_the_margin_calculator_has_its_own_documented_cap() -> None:
    # "Access Rate Limit: 10 request per second" (SmartAPI forum, topic 4010); the paper agrees.
    assert SPEC.caps["margin"] == DEFAULT_CAPS["angel"]["margin"] == ["10/s"]
    assert SPEC.read_classes["margins"] == "margin"


# --- against the paper broker --------------------------------------------------------------------------
@pytest.fixture
def angel(live_paper: InProcessPaper, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Angel]:
    """One Angel account at the in-process paper broker, logged in by brokergate; roomy caps."""
    yield from shared._angel(live_paper, redis_url, tmp_path, monkeypatch, {**ROOMY, "margin": ["1000/s"]})


def _paper(live: InProcessPaper, symbol: str) -> PaperInstrument:
    inst = live.state.by_symbol("NSE", symbol)
    assert inst is not None
    return inst


def _ours(inst: PaperInstrument) -> Instrument:
    """The instrument as Angel's scrip master names it (what the master lookup would give)."""
    return Instrument(exchange=inst.exchange, symbol=inst.symbol, token=inst.angel_token,
                      broker_symbol=inst.angel_symbol)


def _rupees(units: int, inst: PaperInstrument) -> Decimal:
    return D(units) / inst.price_divisor


def test_limit_and_market_orders_cost_what_the_paper_computes(live_paper: InProcessPaper, angel: Angel) -> None:
    sbin, infy = _paper(live_paper, "SBIN"), _paper(live_paper, "INFY")
    state = live_paper.state
    limit = _order(qty=10, order_type="LIMIT", price=D("801.35"), product="INTRADAY")
    market = _order("INFY", qty=3, order_type="MARKET", product="DELIVERY")

    one_limit = angel.adapter.margin_required([(limit, _ours(sbin))])
    expected = _rupees(books.margin_for(state, sbin, "INTRADAY", 10, 80135), sbin)
    assert one_limit == Margin(total=expected, orders=(expected,)) and expected > 0

    one_market = angel.adapter.margin_required([(market, _ours(infy))])
    at_last = _rupees(books.margin_for(state, infy, "DELIVERY", 3), infy)
    assert one_market == Margin(total=at_last, orders=(at_last,))
    assert at_last == D(3 * state.prices.last_price(infy)) / 100  # delivery is paid in full, at the last price

    basket = angel.adapter.margin_required([(limit, _ours(sbin)), (market, _ours(infy))])
    assert basket == Margin(total=expected + at_last)  # the plain sum; no figure per order in a basket

    seen = [(e["endpoint_class"], e["status"]) for e in live_paper.broker.requests()
            if e["path"].endswith("/margin/v1/batch")]
    assert seen == [("margin", 200)] * 3


def test_the_sdk_reads_the_same_answer_in_angels_shape(live_paper: InProcessPaper, angel: Angel) -> None:
    sbin, infy = _paper(live_paper, "SBIN"), _paper(live_paper, "INFY")
    orders = [(_order(qty=10, order_type="LIMIT", price=D("801.35"), product="INTRADAY"), _ours(sbin)),
              (_order("INFY", qty=3, order_type="MARKET", product="DELIVERY"), _ours(infy))]
    read = angel.sdk.getMarginApi(portfolio.margin_request(orders))
    assert read["status"] is True and read["errorcode"] == ""
    assert portfolio.margin(read, 2) == angel.adapter.margin_required(orders)
    data = read["data"]
    assert set(data) == set(golden("margin.json")["data"])
    assert set(data["marginComponents"]) == set(golden("margin.json")["data"]["marginComponents"])
    assert [(b["exchange"], b["productType"]) for b in data["marginBreakup"]] == [("NSE", "INTRADAY"),
                                                                                ("NSE", "DELIVERY")]
    assert D(str(data["marginComponents"]["nonNFOMargin"])) == D(str(data["totalMarginRequired"]))
    # The SDKs' own example sends no orderType: a price of 0 is a market order, at the last price.
    bare = {"exchange": "NSE", "qty": 3, "price": 0, "productType": "DELIVERY", "token": infy.angel_token,
            "tradeType": "BUY"}
    priced = angel.sdk.getMarginApi({"positions": [bare]})
    assert D(str(priced["data"]["totalMarginRequired"])) == _rupees(
        books.margin_for(live_paper.state, infy, "DELIVERY", 3), infy)


def test_the_paper_refuses_what_angel_refuses(live_paper: InProcessPaper, angel: Angel) -> None:
    ghost = Instrument(exchange="NSE", symbol="GHOST", token="999999", broker_symbol="GHOST-EQ")
    with pytest.raises(OrderRejected) as unknown:
        angel.adapter.margin_required([(_order("GHOST"), ghost)])
    assert unknown.value.code == "AB1009"
    bad = angel.sdk.getMarginApi({"positions": [{"exchange": "NSE", "qty": 1, "price": 0, "productType": "CNC",
                                                 "token": "3045", "tradeType": "BUY"}]})
    assert (bad["status"], bad["errorcode"]) == (False, "AB1012")
    assert angel.adapter.margin_required([]) == Margin(total=D(0))  # nothing asked, nothing sent


def test_the_client_prices_through_the_margin_class(live_paper: InProcessPaper, angel: Angel) -> None:
    import brokergate
    from common import instruments

    assert instruments.refresh("angel1") > 0
    sbin = _paper(live_paper, "SBIN")
    margin = brokergate.margin_required(_order(qty=4, order_type="LIMIT", price=D("801.35"), product="NORMAL"))
    expected = _rupees(books.margin_for(live_paper.state, sbin, "CARRYFORWARD", 4, 80135), sbin)
    assert margin == Margin(total=expected, orders=(expected,))
    [seen] = [e for e in live_paper.broker.requests() if e["path"].endswith("/margin/v1/batch")]
    assert (seen["endpoint_class"], seen["status"]) == ("margin", 200)
