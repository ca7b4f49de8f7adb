"""Kite's margin calculator (issue 17): ``margin_required`` asks ``POST /margins/basket?consider_positions=true``.

(a) The pure request builder and answer parser (common/brokers/kite/portfolio.py) on Zerodha's documented
    examples: the request of https://kite.trade/docs/connect/v3/margins/ (its curl body), and the answers
    ``tests/data/kite/{order_margins,basket_margins}.json``, copied from zerodha/kiteconnect-mocks (commit
    c7a8123), the examples of that page.
(b) Against the paper broker, run in this process so that its own calculator (paper/portfolio.py's
    margin_for) can be asked on the same state: a LIMIT order, a MARKET order and a basket of the two priced
    by the adapter equal what the paper computes, and what the official ``kiteconnect`` SDK's
    ``order_margins`` / ``basket_order_margins`` read from it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from common.brokers.kite import portfolio, translate
from common.brokers.kite.rest import Adapter
from common.errors import OrderRejected, RateLimited, TokenExpired
from common.models import Instrument, Order
from common.portfolio import Margin
from devtools.accounts import paper_user_of
from devtools.paperbroker import PaperBroker
from paper import portfolio as books
from paper.state import PaperState
from tests.account.helpers import accounts_at, in_process_paper
from tests.fixtures.paper import kite_session
from tests.paths import KITE_FIXTURES

D = Decimal
# Room for every read; orders at the 2026 rule's 10/s (more needs a registered algo: common/algorules.py).
ROOMY = {"orders": ["10/s"], "orderbook": ["1000/s"], "other": ["1000/s"], "login": ["1000/s"],
         "quote": ["1000/s"]}
# The curl body of https://kite.trade/docs/connect/v3/margins/ (Order margins): one order, every field.
DOCUMENTED_REQUEST = {"exchange": "NSE", "tradingsymbol": "INFY", "transaction_type": "BUY", "variety": "regular",
                      "product": "CNC", "order_type": "MARKET", "quantity": 1, "price": 0, "trigger_price": 0}


def fixture(name: str) -> Any:
    return json.loads((KITE_FIXTURES / name).read_text())


def _order(symbol: str, side: str, qty: int, product: str, **kw: Any) -> Order:
    return Order(account="kite1", exchange="NSE", symbol=symbol, side=side, quantity=qty, product=product, **kw)


# --- (a) golden: the documented request and answers ----------------------------------------------------------
def test_the_request_is_the_place_forms_fields_as_the_docs_send_them() -> None:
    infy = Instrument(exchange="NSE", symbol="INFY", token="408065")
    assert portfolio.margin_orders([(_order("INFY", "BUY", 1, "DELIVERY"), infy)]) == [DOCUMENTED_REQUEST]
    limit = _order("SBIN", "SELL", 3, "INTRADAY", order_type="SL", price=D("801.35"), trigger_price=D("801.5"),
                   client_order_id="abc123", validity="IOC")
    [row] = portfolio.margin_orders([(limit, None)])
    # validity, tag and market_protection are the place form's, not the calculator's.
    assert row == {**DOCUMENTED_REQUEST, "tradingsymbol": "SBIN", "transaction_type": "SELL", "product": "MIS",
                   "order_type": "SL", "quantity": 3, "price": 801.35, "trigger_price": 801.5}
    assert portfolio.MARGIN_PATH == "/margins/basket?consider_positions=true"


def test_the_documented_basket_answer() -> None:
    data = fixture("basket_margins.json")["data"]
    # final.total (with the spread benefit), each order's total, the orders' charges summed: the basket's
    # own charges block says brokerage 40 and a total of 0, so it is not their sum.
    assert portfolio.margin_of(data) == Margin(
        total=D("34786.725000000006"), orders=(D("95983.725"), D("521.25")),
        charges=D("26.851761274999998") + D("23.908152575"))
    assert data["charges"]["total"] == 0 and data["initial"]["total"] == 96504.975


def test_answers_without_final_or_order_charges() -> None:
    [row] = fixture("order_margins.json")["data"]
    bare = {k: v for k, v in row.items() if k != "charges"}  # the docs' older example has no charges
    assert portfolio.margin_of({"initial": row, "orders": [row]}) == Margin(D(1498), (D(1498),), D("1.79255122"))
    assert portfolio.margin_of({"final": bare, "orders": [bare], "charges": {"total": 2.5}}) == Margin(
        D(1498), (D(1498),), D("2.5"))
    assert portfolio.margin_of(None) == Margin(D(0))


# --- (b) the paper broker, its calculator and the official SDK -------------------------------------------------
@dataclass
class Kite:
    state: PaperState
    control: PaperBroker
    adapter: Adapter
    sdk: Any  # kiteconnect.KiteConnect on the same session
    user_id: str


@pytest.fixture
def kite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kite]:
    """A paper broker in this process (its state at hand) and one Kite account logged in there."""
    with in_process_paper() as paper, accounts_at(paper, tmp_path, monkeypatch, kite=1, angel=0,
                                                  caps=ROOMY) as accounts:
        account = accounts["kite1"]
        user = paper_user_of(account)
        sdk = kite_session(paper.broker, user)
        yield Kite(paper.state, paper.broker, Adapter(account, lambda: sdk.access_token), sdk, user.user_id)


def _paper_margin(kite: Kite, order: Order) -> Decimal:
    """What the paper broker's calculator gives the order (rupees): margin_for at its price, or at the
    last price (price 0) for a market order."""
    inst = kite.state.by_symbol(order.exchange, order.symbol)
    assert inst is not None
    price = round(order.price * inst.price_divisor) if order.price is not None else 0
    units = books.margin_for(kite.state, inst, translate.PRODUCT[order.product], order.quantity, price)
    return D(units) / inst.price_divisor


def _sdk_reads(kite: Kite, orders: list[Order]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    params = portfolio.margin_orders([(o, None) for o in orders])
    return kite.sdk.order_margins(params), kite.sdk.basket_order_margins(params)


def test_limit_market_and_a_basket_agree_with_the_paper_and_the_sdk(kite: Kite) -> None:
    # Given a delivery LIMIT buy of 5 INFY at 1500.05 and an intraday MARKET sell of 10 SBIN
    limit = _order("INFY", "BUY", 5, "DELIVERY", order_type="LIMIT", price=D("1500.05"))
    market = _order("SBIN", "SELL", 10, "INTRADAY")
    want = [_paper_margin(kite, limit), _paper_margin(kite, market)]
    assert want[0] == D("7500.25")  # delivery is paid in full at the limit price

    # When the adapter prices each alone and both together, Then it says what the paper computes
    # (the paper has no hedge benefit and charges nothing: the basket is the plain sum).
    assert kite.adapter.margin_required([(limit, None)]) == Margin(want[0], (want[0],))
    assert kite.adapter.margin_required([(market, None)]) == Margin(want[1], (want[1],))
    both = kite.adapter.margin_required([(limit, None), (market, None)])
    assert both == Margin(want[0] + want[1], tuple(want))

    # And the official SDK reads the same from the paper broker, in Kite's documented shapes.
    rows, basket = _sdk_reads(kite, [limit, market])
    documented = fixture("order_margins.json")["data"][0]
    assert all(set(r) == set(documented) and set(r["charges"]) == set(documented["charges"]) for r in rows)
    assert [(r["tradingsymbol"], r["type"], D(str(r["total"]))) for r in rows] == [
        ("INFY", "equity", want[0]), ("SBIN", "equity", want[1])]
    golden = fixture("basket_margins.json")["data"]
    assert set(basket) == set(golden) and set(basket["final"]) == set(golden["final"])
    assert (D(str(basket["final"]["total"])), D(str(basket["initial"]["total"]))) == (both.total, both.total)
    assert tuple(D(str(o["total"])) for o in basket["orders"]) == both.orders
    assert sum(D(str(o["charges"]["total"])) for o in basket["orders"]) == both.charges == 0


def test_one_request_of_class_other_and_errors_map_as_elsewhere(kite: Kite) -> None:
    orders = [(_order("INFY", "BUY", 1, "DELIVERY"), None), (_order("SBIN", "BUY", 1, "NORMAL"), None)]
    assert kite.adapter.margin_required([]) == Margin(D(0))  # nothing to price: no request
    kite.adapter.margin_required(orders)
    log = [(e["method"], e["path"], e["endpoint_class"], e["status"]) for e in kite.control.requests()
           if e["user_id"] == kite.user_id and e["path"].startswith("/margins")]
    assert log == [("POST", "/margins/basket", "other", 200)]
    # An unknown symbol is Kite's InputException (a bad field: OrderRejected), a 429 RateLimited, a
    # dead session TokenExpired: errors.map_error, as for every other call.
    with pytest.raises(OrderRejected, match="tradingsymbol"):
        kite.adapter.margin_required([(_order("NOSUCH", "BUY", 1, "DELIVERY"), None)])
    kite.control.fault(kind="rate_limit", broker="kite", user_id=kite.user_id, count=1)
    with pytest.raises(RateLimited):
        kite.adapter.margin_required(orders)
    kite.sdk.invalidate_access_token()
    with pytest.raises(TokenExpired):
        kite.adapter.margin_required(orders)
