"""Fyers' order-book row, its order type and status codes, and the raw field names its order
socket sends the same row in."""

from __future__ import annotations

import json
from typing import Any

from paper.orders import PaperOrder, rupees_number

ORDER_TYPES = {1: "LIMIT", 2: "MARKET", 3: "SL-M", 4: "SL"}
ORDER_TYPE_CODES = {v: k for k, v in ORDER_TYPES.items()}
STATUS_CODES = {"OPEN": 6, "TRIGGER PENDING": 6, "COMPLETE": 2, "CANCELLED": 1, "REJECTED": 5}
# Order-book names → the raw names the order socket sends (map.json ``order_mapper``, inverted).
RAW_ORDER_FIELDS = {
    "clientId": "client_id", "id": "id", "exchOrdId": "id_exchange", "qty": "qty",
    "remainingQuantity": "qty_remaining", "filledQty": "qty_filled", "limitPrice": "price_limit",
    "stopPrice": "price_stop", "tradedPrice": "price_traded", "type": "ord_type", "fyToken": "fy_token",
    "exchange": "exchange", "segment": "segment", "symbol": "symbol", "instrument": "instrument",
    "message": "oms_msg", "offlineOrder": "offline_flag", "orderDateTime": "time_oms",
    "orderValidity": "validity", "productType": "product_type", "side": "tran_side",
    "status": "org_ord_status", "source": "ord_source", "ex_sym": "symbol_exch",
    "description": "symbol_desc", "orderTag": "ordertag",
}  # fmt: skip


def _tag_of(order: PaperOrder) -> str:
    return f"1:{order.tag}" if order.tag else "2:Untagged"


def fyers_order_payload(order: PaperOrder) -> dict[str, Any]:
    """One row of ``GET /api/v3/orders`` (the order book)."""
    inst = order.instrument
    div = inst.price_divisor
    status = STATUS_CODES.get(order.status, 6)
    return {
        "clientId": order.user_id,
        "id": order.order_id,
        "exchOrdId": order.exchange_order_id or "",
        "qty": order.quantity,
        "remainingQuantity": order.pending_quantity,
        "filledQty": order.filled_quantity,
        "discloseQty": order.disclosed_quantity,
        "limitPrice": rupees_number(order.price, div),
        "stopPrice": rupees_number(order.trigger_price, div),
        "tradedPrice": order.average_price(),
        "type": ORDER_TYPE_CODES.get(order.order_type, 2),
        "fyToken": inst.fyers_token,
        "exchange": 10,
        "segment": 10,
        "symbol": inst.fyers_symbol,
        "instrument": 0,
        "message": order.status_message or "",
        "offlineOrder": False,
        "orderDateTime": order.order_timestamp.strftime("%d-%b-%Y %H:%M:%S"),
        "orderValidity": order.validity,
        "pan": "",
        "productType": order.product,
        "side": 1 if order.transaction_type == "BUY" else -1,
        "status": status,
        "source": "API",
        "ex_sym": inst.symbol,
        "description": inst.name,
        "orderNumStatus": f"{order.order_id}:{status}",
        "disclosedQty": order.disclosed_quantity,
        "orderTag": _tag_of(order),
    }


def order_socket_message(order: PaperOrder) -> str:
    """The order socket's push for an order event: the order-book row under its raw names."""
    row = fyers_order_payload(order)
    raw = {RAW_ORDER_FIELDS[k]: v for k, v in row.items() if k in RAW_ORDER_FIELDS}
    return json.dumps({"s": "ok", "orders": raw}, default=str)
