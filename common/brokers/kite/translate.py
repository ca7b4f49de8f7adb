"""Kite translation, pure: a generic Order -> the form fields of ``POST /orders/regular``; a
Kite answer or order-book row -> OrderUpdate (the status table lives in ``updates.py``).

An equity's generic symbol is Kite's trading symbol (``INFY``). A future or option is named by the
master's row (its ``tradingsymbol`` and exchange NFO/BFO, from the instrument), never by formatting
the generic key; without its instrument the order is refused before anything is sent."""

from __future__ import annotations

from typing import Any

from common.brokers import orderbook
from common.brokers.kite.updates import order_to_update, tag_of
from common.brokers.payload import price_text
from common.derivatives import is_derivative_symbol
from common.errors import InvalidOrder
from common.models import Instrument, Order, OrderType, OrderUpdate, Product

__all__ = ["MARKET_PROTECTION", "PRODUCT", "VARIETY", "book_to_updates", "contract_of", "modify_form",
           "order_form", "order_id_of"]

VARIETY = "regular"
PRODUCT = {Product.DELIVERY: "CNC", Product.INTRADAY: "MIS", Product.NORMAL: "NRML"}
# Since 1 April 2026 (SEBI's retail-algo rules) MARKET and SL-M orders need market protection; -1
# asks Kite for its automatic protection band (a percentage would be 0 < p <= 100; 0 is refused).
MARKET_PROTECTION = "-1"


def contract_of(order: Order, instrument: Instrument | None) -> tuple[str, str]:
    """(exchange, tradingsymbol) Kite names the order's instrument by: an equity's own symbol; a
    derivative's row in the master (InvalidOrder("symbol") when there is none for its key)."""
    if not is_derivative_symbol(order.symbol):
        return order.exchange, order.symbol
    if instrument is None or not instrument.broker_symbol or instrument.key != order.instrument_key:
        raise InvalidOrder("symbol", f"{order.instrument_key}: no such contract in the account's Kite instrument "
                                     "master (expired, or the master is not loaded)")
    return instrument.exchange, instrument.broker_symbol


def order_form(order: Order, instrument: Instrument | None = None, algo_id: str = "") -> dict[str, str]:
    """The form fields of a new regular order; the client_order_id travels as ``tag``. A future or
    option needs its ``instrument`` from the master (:func:`contract_of`). ``algo_id``: the exchange
    algo id of the order's strategy, Kite's optional ``algo_id`` (kiteconnect 5.2.2 ``place_order``;
    not a modify field)."""
    exchange, tradingsymbol = contract_of(order, instrument)
    form = {
        "exchange": exchange,
        "tradingsymbol": tradingsymbol,
        "transaction_type": order.side.value,
        "quantity": str(order.quantity),
        "product": PRODUCT[order.product],
        "order_type": order.order_type.value,
        "validity": order.validity.value,
        "tag": order.client_order_id,
    }
    _add_prices(form, order)
    if algo_id:
        form["algo_id"] = algo_id
    return form


def modify_form(order: Order) -> dict[str, str]:
    """The fields of ``PUT /orders/regular/{id}`` for the order as it should now be."""
    form = {"quantity": str(order.quantity), "order_type": order.order_type.value,
            "validity": order.validity.value}
    _add_prices(form, order)
    return form


def _add_prices(form: dict[str, str], order: Order) -> None:
    """The order's prices, and for MARKET and SL-M the market protection: a modify to one of them
    needs it as a placement does (Kite forum, comment 52331)."""
    if order.price is not None:
        form["price"] = price_text(order.price)
    if order.trigger_price is not None:
        form["trigger_price"] = price_text(order.trigger_price)
    if order.order_type in (OrderType.MARKET, OrderType.SL_M):
        form["market_protection"] = MARKET_PROTECTION


def order_id_of(body: dict[str, Any]) -> str:
    """``data.order_id`` of a successful place/modify/cancel answer ('' when missing)."""
    data = body.get("data")
    return str(data.get("order_id") or "") if isinstance(data, dict) else ""


def book_to_updates(account: str, body: dict[str, Any]) -> list[OrderUpdate]:
    """``GET /orders`` (``data``) -> OrderUpdates, as :func:`common.brokers.orderbook.book_to_updates`
    reads every book (a tagged row of unknown status is an UNKNOWN update)."""
    return orderbook.book_to_updates(account, body.get("data"), "reconcile", to_update=order_to_update, tag_of=tag_of,
                                     order_id_key="order_id")  # fmt: skip
