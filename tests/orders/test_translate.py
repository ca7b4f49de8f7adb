"""Translation, pure: generic Order -> Kite form / Angel JSON; order-book rows -> OrderUpdate."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from common.brokers.angel import translate as angel
from common.brokers.kite import translate as kite
from common.errors import InvalidOrder
from common.models import Instrument, Order, OrderState
from tests.paths import KITE_FIXTURES

FIXTURES = KITE_FIXTURES
INFY = Instrument(exchange="NSE", symbol="INFY", token="1594", broker_symbol="INFY-EQ")


def _order(**kw: object) -> Order:
    base: dict[str, object] = dict(account="a", exchange="NSE", symbol="INFY", side="BUY", quantity=5,
                                   client_order_id="abc123")
    base.update(kw)
    return Order(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("product", "kite_product", "angel_product"), [
    ("DELIVERY", "CNC", "DELIVERY"), ("INTRADAY", "MIS", "INTRADAY"), ("NORMAL", "NRML", "CARRYFORWARD"),
])
def test_products(product: str, kite_product: str, angel_product: str) -> None:
    o = _order(product=product)
    assert kite.order_form(o)["product"] == kite_product
    assert angel.order_body(o, INFY)["producttype"] == angel_product


def test_kite_limit_form() -> None:
    form = kite.order_form(_order(order_type="LIMIT", price="1501.35", side="SELL", validity="IOC"))
    assert form == {
        "exchange": "NSE", "tradingsymbol": "INFY", "transaction_type": "SELL", "quantity": "5",
        "product": "MIS", "order_type": "LIMIT", "validity": "IOC", "tag": "abc123", "price": "1501.35",
    }


def test_kite_market_and_slm_carry_market_protection() -> None:
    assert kite.order_form(_order())["market_protection"] == kite.MARKET_PROTECTION
    slm = kite.order_form(_order(order_type="SL-M", trigger_price="99.5"))
    assert slm["market_protection"] == kite.MARKET_PROTECTION and slm["trigger_price"] == "99.5"
    assert "market_protection" not in kite.order_form(_order(order_type="SL", price="100", trigger_price="99.5"))


def test_kite_form_matches_what_the_official_client_sends() -> None:
    """Oracle: kiteconnect's place_order builds the same form (minus the fields we add)."""
    from kiteconnect import KiteConnect

    sent: dict[str, object] = {}
    k = KiteConnect(api_key="k")
    k._request = lambda route, method, url_args=None, params=None, **kw: sent.update(params or {}) or {"order_id": "1"}  # type: ignore[method-assign]
    o = _order(order_type="SL", price="100.05", trigger_price="100", product="DELIVERY")
    k.place_order(variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY", quantity=5,
                  product="CNC", order_type="SL", price="100.05", trigger_price="100", validity="DAY", tag="abc123")
    ours = kite.order_form(o)
    assert {k_: str(v) for k_, v in sent.items() if k_ != "variety"} == ours


def test_angel_body_all_strings_with_token() -> None:
    body = angel.order_body(_order(order_type="SL", price="1500", trigger_price="1499.5"), INFY)
    assert body["variety"] == "STOPLOSS" and body["ordertype"] == "STOPLOSS_LIMIT"
    assert body["tradingsymbol"] == "INFY-EQ" and body["symboltoken"] == "1594"
    assert body["ordertag"] == "abc123" and body["duration"] == "DAY"
    assert body["price"] == "1500" and body["triggerprice"] == "1499.5"
    assert all(isinstance(v, str) for v in body.values())
    assert angel.order_body(_order(), INFY)["ordertype"] == "MARKET"
    assert angel.order_body(_order(), INFY)["variety"] == "NORMAL"
    assert angel.order_body(_order(order_type="SL-M", trigger_price="10"), INFY)["ordertype"] == "STOPLOSS_MARKET"


def test_angel_needs_the_symbol_token() -> None:
    with pytest.raises(InvalidOrder) as e:
        angel.order_body(_order(), None)
    assert e.value.field == "symbol"
    assert angel.trading_symbol(Instrument("NSE", "SBIN", "3045")) == "SBIN-EQ"


def test_angel_modify_and_cancel() -> None:
    o = _order(order_type="LIMIT", price="10")
    m = angel.modify_body(o, "201020000000080", INFY)
    assert m["orderid"] == "201020000000080" and "ordertag" not in m
    assert angel.cancel_body(o, "9") == {"variety": "NORMAL", "orderid": "9"}


def test_kite_order_book_rows_from_the_golden_fixture() -> None:
    body = json.loads((FIXTURES / "orders.json").read_text())
    ups = kite.book_to_updates("k1", body)
    assert ups and all(u.account == "k1" and u.source == "reconcile" for u in ups)
    by_id = {u.broker_order_id: u for u in ups}
    rows = {row["order_id"]: row for row in body["data"]}
    for oid, u in by_id.items():
        status = rows[oid]["status"]
        if status == "COMPLETE":
            assert u.state == OrderState.COMPLETE
            assert u.average_price == Decimal(str(rows[oid]["average_price"]))
        elif status in ("CANCELLED", "REJECTED"):
            assert u.state.value == status
    assert kite.order_id_of(json.loads((FIXTURES / "order_response.json").read_text()))


def test_angel_order_book_row() -> None:
    row = {"orderid": "1", "ordertag": "abc123", "orderstatus": "complete", "status": "complete",
           "filledshares": "5", "unfilledshares": "0", "averageprice": 1501.35, "text": ""}
    (u,) = angel.book_to_updates("a1", {"status": True, "data": [row]})
    assert u.state == OrderState.COMPLETE and u.client_order_id == "abc123" and u.filled_quantity == 5
    assert angel.book_to_updates("a1", {"status": True, "data": None}) == []
