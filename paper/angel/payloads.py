"""Angel's order-book row (also the ``orderData`` of an order-update message) and its order
type and ``order-status`` codes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from paper.orders import PaperOrder

_ANGEL_STATUS = {
    "OPEN": "open",
    "TRIGGER PENDING": "trigger pending",
    "COMPLETE": "complete",
    "CANCELLED": "cancelled",
    "REJECTED": "rejected",
}
# Kite (generic) order types -> Angel's, and back.
ANGEL_ORDERTYPE = {"MARKET": "MARKET", "LIMIT": "LIMIT", "SL": "STOPLOSS_LIMIT", "SL-M": "STOPLOSS_MARKET"}
ORDERTYPE_TO_KITE = {v: k for k, v in ANGEL_ORDERTYPE.items()}


def _angel_time(moment: dt.datetime | None) -> str:
    return moment.strftime("%d-%b-%Y %H:%M:%S") if moment else ""


def angel_order_payload(order: PaperOrder) -> dict[str, Any]:
    """One row of Angel's getOrderBook / details/{uniqueorderid}."""
    div = order.instrument.price_divisor
    status = _ANGEL_STATUS.get(order.status, order.status.lower())
    last_fill = order.trades[-1] if order.trades else None
    return {
        "variety": order.variety,
        "ordertype": ANGEL_ORDERTYPE.get(order.order_type, order.order_type),
        "producttype": order.product,
        "duration": order.validity,
        "price": order.price / div,
        "triggerprice": order.trigger_price / div,
        "quantity": str(order.quantity),
        "disclosedquantity": str(order.disclosed_quantity),
        "squareoff": 0.0,
        "stoploss": 0.0,
        "trailingstoploss": 0.0,
        "tradingsymbol": order.instrument.angel_symbol,
        "transactiontype": order.transaction_type,
        "exchange": order.instrument.exchange,
        "symboltoken": order.instrument.angel_token,
        "ordertag": order.tag or "",
        "instrumenttype": "",
        "strikeprice": -1.0,
        "optiontype": "",
        "expirydate": "",
        "lotsize": str(order.instrument.lot_size),
        "cancelsize": str(order.cancelled_quantity),
        "averageprice": order.average_price(),
        "filledshares": str(order.filled_quantity),
        "unfilledshares": str(order.quantity - order.filled_quantity),
        "orderid": order.order_id,
        "text": order.status_message or "",
        "status": status,
        "orderstatus": status,
        "updatetime": _angel_time(order.exchange_update_timestamp or order.order_timestamp),
        "exchtime": _angel_time(order.exchange_timestamp),
        "exchorderupdatetime": _angel_time(order.exchange_update_timestamp),
        "fillid": last_fill.trade_id if last_fill else "",
        "filltime": last_fill.fill_time.strftime("%H:%M:%S") if last_fill else "",
        "parentorderid": "",
        "uniqueorderid": order.unique_order_id,
        "exchangeorderid": order.exchange_order_id or "",
    }


ORDER_STATUS_CODES = {
    "OPEN": "AB01",
    "CANCELLED": "AB02",
    "REJECTED": "AB03",
    "COMPLETE": "AB05",
    "OPEN PENDING": "AB09",
    "TRIGGER PENDING": "AB10",
    "MODIFY PENDING": "AB11",
}


def order_status_code(order: PaperOrder, was_modified: bool) -> str:
    """Angel's ``order-status`` for an event: AB04 for a modification, else by status."""
    if was_modified and order.status in ("OPEN", "TRIGGER PENDING"):
        return "AB04"
    return ORDER_STATUS_CODES.get(order.status, "AB01")
