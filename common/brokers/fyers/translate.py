"""Fyers translation, pure: a generic Order + Instrument -> the JSON of ``/api/v3/orders/sync``
(POST place, PATCH modify, DELETE cancel); an answer or ``GET /api/v3/orders`` row ->
OrderUpdate (the status table lives in ``updates.py``).

Order fields (fyers_apiv3 ``FyersModel.place_order``): ``symbol`` ("NSE:SBIN-EQ"), ``qty``,
``type`` (1 limit, 2 market, 3 stop = SL-M, 4 stop-limit = SL), ``side`` (1 buy, -1 sell),
``productType`` (CNC, INTRADAY, MARGIN, CO, BO), ``limitPrice``, ``stopPrice``, ``validity``
(DAY, IOC), ``disclosedQty``, ``offlineOrder``, ``stopLoss``, ``takeProfit``, ``orderTag``.
Prices are JSON numbers: a Decimal rupee price with at most 15 significant digits turns into
the float whose shortest repr is the same decimal, so the bytes on the wire are exact.
Our client_order_id (1-20 ASCII letters and digits, ``common.models``) is sent unchanged as
``orderTag``, which Fyers accepts as alphanumeric text; the order book echoes it back with
a source prefix that ``updates.order_tag`` removes, so the mapping is the identity.

A future or option goes out under the ticker of its instrument-master row (``NSE:NIFTY2690123000CE``
for NFO, ``BSE:SENSEX2691082000CE`` for BFO: the ticker's prefix is the exchange, its row the
segment, so the body has no exchange field), never one built from the generic key; with no
master row it is refused before anything is sent. ``Product.NORMAL`` (carry forward) is
``MARGIN``, Fyers' product for derivatives; ``CNC`` is for equity delivery only.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from common.brokers import orderbook
from common.brokers.fyers.updates import order_tag, order_to_update
from common.derivatives import DERIVATIVE_EXCHANGES, is_derivative_symbol
from common.errors import InvalidOrder
from common.models import Instrument, Order, OrderType, OrderUpdate, Product, Side, Validity

__all__ = ["ORDER_TYPES", "PRODUCTS", "book_to_updates", "cancel_body", "fyers_symbol", "modify_body",
           "order_body", "order_id_of"]

ORDER_TYPES = {OrderType.LIMIT: 1, OrderType.MARKET: 2, OrderType.SL_M: 3, OrderType.SL: 4}
PRODUCTS = {Product.DELIVERY: "CNC", Product.INTRADAY: "INTRADAY", Product.NORMAL: "MARGIN"}
SIDES = {Side.BUY: 1, Side.SELL: -1}
VALIDITIES = {Validity.DAY: "DAY", Validity.IOC: "IOC"}


def _price(v: Decimal | None) -> float | int:
    return 0 if v is None else float(v)


def fyers_symbol(order: Order, instrument: Instrument | None) -> str:
    """Fyers' symbol ticker ("NSE:SBIN-EQ"): the instrument master's, else EXCHANGE:SYMBOL-EQ
    for an equity. A derivative has no ticker but its master row's: without one it is refused."""
    derivative = order.exchange in DERIVATIVE_EXCHANGES or is_derivative_symbol(order.symbol)
    ticker = instrument.broker_symbol if instrument is not None else ""
    # Another contract's row is no row for this one (a strike or an expiry apart).
    same = instrument is not None and instrument.key == order.instrument_key
    if ":" in ticker and (same or not derivative):
        return ticker
    if derivative or (instrument is not None and instrument.instrument_type not in ("EQ", "")):
        raise InvalidOrder("symbol", f"{order.instrument_key} has no Fyers symbol in the instrument master "
                                     "(not listed, expired, or the master needs a refresh)")  # fmt: skip
    return f"{order.exchange}:{order.symbol}-EQ"


def order_body(order: Order, instrument: Instrument | None) -> dict[str, Any]:
    """The JSON body of a place request; the client_order_id travels as ``orderTag``."""
    return {
        "symbol": fyers_symbol(order, instrument),
        "qty": order.quantity,
        "type": ORDER_TYPES[order.order_type],
        "side": SIDES[order.side],
        "productType": PRODUCTS[order.product],
        "limitPrice": _price(order.price),
        "stopPrice": _price(order.trigger_price),
        "validity": VALIDITIES[order.validity],
        "disclosedQty": 0,
        "offlineOrder": False,
        "stopLoss": 0,
        "takeProfit": 0,
        "orderTag": order.client_order_id,
    }


def modify_body(order: Order, broker_order_id: str) -> dict[str, Any]:
    """A modify request: the order id and the fields as they should now be."""
    return {
        "id": broker_order_id,
        "type": ORDER_TYPES[order.order_type],
        "qty": order.quantity,
        "limitPrice": _price(order.price),
        "stopPrice": _price(order.trigger_price),
    }


def cancel_body(broker_order_id: str) -> dict[str, str]:
    return {"id": broker_order_id}


def order_id_of(body: dict[str, Any]) -> str:
    return str(body.get("id") or "")


def book_to_updates(account: str, body: dict[str, Any]) -> list[OrderUpdate]:
    """``GET /api/v3/orders`` (``orderBook``) -> OrderUpdates, as
    :func:`common.brokers.orderbook.book_to_updates` reads every book (a tagged row of unknown
    status is an UNKNOWN update; the tag without its source prefix)."""
    return orderbook.book_to_updates(account, body.get("orderBook"), "reconcile", to_update=order_to_update,
                                     tag_of=lambda row: order_tag(row.get("orderTag")), order_id_key="id")  # fmt: skip
