"""Fyers margin calculator (``POST /api/v3/multiorder/margin``): the pure request builder and
answer parser on the documented sample (tests/data/fyers/margin.json), then the adapter against
the paper broker, whose answer must be paper/portfolio.py's ``margin_for`` for a LIMIT order, a
MARKET order and a basket of the two.

The official fyers_apiv3 SDK (3.2.0) has no margin method (its ``Config`` lists no such path), so
the oracle sends the documented request through the SDK's own transport
(``FyersModel.service.post_call``: its session, ``Authorization: <app_id>:<access_token>`` and
``version: 3`` headers) and reads the same answer.

The paper broker runs in this process; its prices move only when something steps them, and
nothing here does, so a market order is priced at one last price throughout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from common.brokers.fyers import portfolio, translate
from common.brokers.fyers.rest import MARGIN_PATH, Adapter
from common.errors import OrderRejected, TokenExpired
from common.models import Instrument, Order
from common.portfolio import Margin
from paper import portfolio as books
from paper.state import PaperState
from tests.account.helpers import InProcessPaper, in_process_paper
from tests.account.test_fyers_portfolio import fyers_logged_in
from tests.paths import DATA

D = Decimal
FIELDS = ["symbol", "qty", "side", "type", "productType", "limitPrice", "stopLoss", "stopPrice", "takeProfit"]


# --- (a) the documented answer and the request ------------------------------------------------------------
def test_the_documented_answer() -> None:
    body = json.loads((DATA / "fyers" / "margin.json").read_text())
    assert portfolio.margin(body, 1) == Margin(total=D("147738.0563"), orders=(D("147738.0563"),))
    # A basket gets one figure from Fyers: the together total, no split, no charges.
    assert portfolio.margin(body, 2) == Margin(total=D("147738.0563"))
    # margin_total is what the orders need; margin_new_order adds what the account already uses.
    assert portfolio.margin({"s": "ok", "data": {"margin_total": 10.5, "margin_new_order": 99}}).total == D("10.5")
    assert portfolio.margin({"s": "ok"}) == Margin(total=D(0))


def test_the_request_is_the_place_translation_cut_to_the_calculator_fields() -> None:
    fut = Instrument(exchange="NFO", symbol="NIFTY25DECFUT", token="101125121635000", lot_size=75,
                     instrument_type="FUT", broker_symbol="NSE:NIFTY25DECFUT")  # fmt: skip
    limit = Order(account="f", exchange="NSE", symbol="SBIN", side="BUY", quantity=10, order_type="LIMIT",
                  price=D("801.35"), product="DELIVERY")  # fmt: skip
    market = Order(account="f", exchange="NFO", symbol="NIFTY25DECFUT", side="SELL", quantity=75, product="NORMAL")
    body = portfolio.margin_request([(limit, None), (market, fut)])
    assert list(body) == ["data"] and [list(leg) for leg in body["data"]] == [FIELDS, FIELDS]
    assert body["data"] == [
        {"symbol": "NSE:SBIN-EQ", "qty": 10, "side": 1, "type": 1, "productType": "CNC", "limitPrice": 801.35,
         "stopLoss": 0, "stopPrice": 0, "takeProfit": 0},
        {"symbol": "NSE:NIFTY25DECFUT", "qty": 75, "side": -1, "type": 2, "productType": "MARGIN", "limitPrice": 0,
         "stopLoss": 0, "stopPrice": 0, "takeProfit": 0},
    ]  # fmt: skip
    for leg, (order, inst) in zip(body["data"], [(limit, None), (market, fut)], strict=True):
        placed = translate.order_body(order, inst)
        assert leg == {k: placed[k] for k in FIELDS}
    assert json.dumps(body)  # JSON numbers, as sent


# --- (b) against the paper broker ------------------------------------------------------------------------
@pytest.fixture
def inproc() -> Iterator[InProcessPaper]:
    with in_process_paper(seed=11) as paper:
        yield paper


def _tick_below(state: PaperState, symbol: str, fraction: float) -> Decimal:
    """A price on the instrument's tick grid at ``fraction`` of its last price (rupees)."""
    inst = state.by_symbol("NSE", symbol)
    assert inst is not None
    units = int(state.prices.last_price(inst) * fraction) // inst.tick_size_paise * inst.tick_size_paise
    return D(units) / 100


def _paper_margin(state: PaperState, symbol: str, product: str, quantity: int, price: Decimal | None) -> Decimal:
    """paper/portfolio.py's own figure, in rupees."""
    inst = state.by_symbol("NSE", symbol)
    assert inst is not None
    return D(books.margin_for(state, inst, product, quantity, int(price * 100) if price else 0)) / 100


def test_margin_required_is_the_paper_brokers_and_the_sdk_reads_it(inproc: InProcessPaper, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from fyers_apiv3 import fyersModel

    # Given a logged-in Fyers account with an order resting (so the account already uses margin)
    state = inproc.state
    user, adapter, token = fyers_logged_in(inproc, "XF22222")
    resting = Order(account="fyers1", exchange="NSE", symbol="TCS", side="BUY", quantity=2, product="DELIVERY",
                    order_type="LIMIT", price=_tick_below(state, "TCS", 0.5))  # fmt: skip
    adapter.place(resting, None)
    orders_before = len(state.orders)
    limit = Order(account="fyers1", exchange="NSE", symbol="SBIN", side="BUY", quantity=10, product="DELIVERY",
                  order_type="LIMIT", price=_tick_below(state, "SBIN", 0.98))  # fmt: skip
    market = Order(account="fyers1", exchange="NSE", symbol="INFY", side="SELL", quantity=5)  # INTRADAY

    # When the adapter asks the calculator for each order, and for the two as one basket
    one_limit = adapter.margin_required([(limit, None)])
    one_market = adapter.margin_required([(market, None)])
    basket = adapter.margin_required([(limit, None), (market, None)])

    # Then each figure is the paper broker's own (the limit order at its price, the market order at
    # the last price; a basket is their plain sum), and nothing was placed
    want_limit = _paper_margin(state, "SBIN", "CNC", 10, limit.price)
    want_market = _paper_margin(state, "INFY", "MIS", 5, None)
    assert want_limit == limit.price * 10 > 0  # delivery: paid in full
    assert 0 < want_market < _paper_margin(state, "INFY", "CNC", 5, None)  # intraday: a fraction
    assert one_limit == Margin(total=want_limit, orders=(want_limit,))
    assert one_market == Margin(total=want_market, orders=(want_market,))
    assert basket == Margin(total=want_limit + want_market)
    assert len(state.orders) == orders_before

    # And the documented request through the official SDK's own transport reads the same answer
    monkeypatch.chdir(tmp_path)  # the SDK writes its log files into the working directory
    monkeypatch.setattr(fyersModel.Config, "API", f"{inproc.url}/api/v3")
    sdk = fyersModel.FyersModel(client_id=user.api_key, token=token, log_path=str(tmp_path))
    request = portfolio.margin_request([(limit, None), (market, None)])
    answer: dict[str, Any] = sdk.service.post_call(MARGIN_PATH.removeprefix("/api/v3"), sdk.header, request)
    assert (answer["s"], answer["code"]) == ("ok", 200) and set(answer["data"]) == {
        "margin_avail", "margin_total", "margin_new_order"}
    assert portfolio.margin(answer, 2) == basket
    funds = books.funds(state, "fyers", user.user_id)
    assert funds.used_margin > 0  # the resting TCS buy
    data = {k: D(str(v)) for k, v in answer["data"].items()}
    assert data["margin_avail"] == D(funds.available_margin) / 100
    assert data["margin_new_order"] == D(funds.used_margin) / 100 + basket.total

    # The calculator counts on the "other" class at the paper broker (Fyers: one budget)
    logged = [e for e in inproc.broker.requests() if e["path"] == MARGIN_PATH]
    assert len(logged) == 4 and {e["endpoint_class"] for e in logged} == {"other"}


def test_refusals_go_through_the_error_map(inproc: InProcessPaper) -> None:
    _, adapter, _ = fyers_logged_in(inproc, "XF33333")
    unknown = Order(account="fyers1", exchange="NSE", symbol="NOSUCHCO", side="BUY", quantity=1)
    with pytest.raises(OrderRejected) as refused:
        adapter.margin_required([(unknown, None)])
    assert refused.value.code == "-300"
    stale = Adapter(adapter.account, lambda: "not-a-token")
    sbin = Order(account="fyers1", exchange="NSE", symbol="SBIN", side="BUY", quantity=1)
    with pytest.raises(TokenExpired):
        stale.margin_required([(sbin, None)])
