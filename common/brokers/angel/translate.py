"""Angel SmartAPI translation, pure: a generic Order + Instrument -> the JSON of ``placeOrder``
(every value a string); an answer or ``getOrderBook`` row -> OrderUpdate (the status table
lives in ``updates.py``).

A future or option (``NFO:NIFTY:2026-10-06:22100:PE``) goes out under the scrip master's own
trading symbol and token (``NIFTY06OCT2622100PE``, ``40672``) and its exchange (NFO or BFO),
never a formatted one; without the master's row it is refused before anything is sent.
``Product.NORMAL`` is Angel's ``CARRYFORWARD``."""

from __future__ import annotations

from typing import Any

from common.brokers import orderbook
from common.brokers.angel.updates import order_to_update
from common.brokers.payload import price_text
from common.derivatives import is_derivative_symbol
from common.errors import InvalidOrder
from common.models import Instrument, Order, OrderType, OrderUpdate, Product

__all__ = ["ORDERTYPE", "PRODUCT", "book_to_updates", "cancel_body", "modify_body", "order_body",
           "order_id_of", "trading_symbol", "variety"]

ORDERTYPE = {OrderType.MARKET: "MARKET", OrderType.LIMIT: "LIMIT", OrderType.SL: "STOPLOSS_LIMIT",
             OrderType.SL_M: "STOPLOSS_MARKET"}
PRODUCT = {Product.DELIVERY: "DELIVERY", Product.INTRADAY: "INTRADAY", Product.NORMAL: "CARRYFORWARD"}
_NOT_MODIFIED = ("ordertag", "squareoff", "stoploss")  # placeOrder fields that modifyOrder does not take


def variety(order: Order) -> str:
    """Stop-loss orders are their own variety at Angel."""
    return "STOPLOSS" if order.order_type in (OrderType.SL, OrderType.SL_M) else "NORMAL"


def trading_symbol(instrument: Instrument) -> str:
    """Angel's own symbol ("INFY-EQ", "NIFTY06OCT2622100PE"); the instrument master stores it as
    broker_symbol. Only an equity's may be made up when a stored row lacks it."""
    if instrument.broker_symbol or instrument.kind in ("future", "option"):
        return instrument.broker_symbol
    return f"{instrument.symbol}-EQ" if instrument.instrument_type == "EQ" else instrument.symbol


def _require(instrument: Instrument | None, order: Order) -> Instrument:
    if instrument is None or not instrument.token:
        # Angel needs the symbol token: an order for an instrument the master does not know
        # cannot be sent (refresh the instrument master).
        raise InvalidOrder("symbol", f"{order.instrument_key} is not in the instrument master of {order.account}")
    if is_derivative_symbol(order.symbol) and (instrument.kind not in ("future", "option")
                                               or not instrument.broker_symbol):
        # A contract's Angel symbol is only ever read from the master, never built from the key.
        raise InvalidOrder("symbol", f"{order.instrument_key}: the instrument master of {order.account} "
                                     "has no Angel trading symbol for this contract")
    return instrument


def order_body(order: Order, instrument: Instrument | None) -> dict[str, str]:
    """The JSON body of ``placeOrder``; the client_order_id travels as ``ordertag``."""
    inst = _require(instrument, order)
    return {
        "variety": variety(order),
        "tradingsymbol": trading_symbol(inst),
        "symboltoken": str(inst.token),
        "transactiontype": order.side.value,
        "exchange": order.exchange,
        "ordertype": ORDERTYPE[order.order_type],
        "producttype": PRODUCT[order.product],
        "duration": order.validity.value,
        "price": price_text(order.price),
        "triggerprice": price_text(order.trigger_price),
        "squareoff": "0",
        "stoploss": "0",
        "quantity": str(order.quantity),
        "ordertag": order.client_order_id,
    }


def modify_body(order: Order, broker_order_id: str, instrument: Instrument | None) -> dict[str, str]:
    """``modifyOrder`` wants the whole order as it should now be, plus its id."""
    body = {k: v for k, v in order_body(order, instrument).items() if k not in _NOT_MODIFIED}
    return body | {"orderid": broker_order_id}


def cancel_body(order: Order, broker_order_id: str) -> dict[str, str]:
    return {"variety": variety(order), "orderid": broker_order_id}


def order_id_of(body: dict[str, Any]) -> str:
    data = body.get("data")
    return str(data.get("orderid") or "") if isinstance(data, dict) else ""


def book_to_updates(account: str, body: dict[str, Any]) -> list[OrderUpdate]:
    """``getOrderBook`` (``data``, null for an empty book) -> OrderUpdates, as
    :func:`common.brokers.orderbook.book_to_updates` reads every book (a tagged row of unknown
    status is an UNKNOWN update)."""
    return orderbook.book_to_updates(account, body.get("data"), "reconcile", to_update=order_to_update,
                                     tag_of=lambda row: str(row.get("ordertag") or ""), order_id_key="orderid",
                                     status_keys=("orderstatus", "status"))  # fmt: skip
