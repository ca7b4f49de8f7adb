"""Kite's order and trade bodies, and its SHA-256 checksums (session token, postbacks)."""

from __future__ import annotations

import hashlib
from typing import Any

from paper.orders import IST, PaperOrder, fmt_ts, rupees_number


def checksum_hex(*parts: str) -> str:
    """sha256 of the concatenation, hex: Kite's session checksum and postback checksum."""
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def kite_order_payload(order: PaperOrder) -> dict[str, Any]:
    """The Kite order body: one item of GET /orders, a postback body (without checksum/app_id)."""
    div = order.instrument.price_divisor
    return {
        "account_id": order.user_id,
        "placed_by": order.user_id,
        "order_id": order.order_id,
        "exchange_order_id": order.exchange_order_id,
        "parent_order_id": None,
        "status": order.status,
        "status_message": order.status_message,
        "status_message_raw": order.status_message,
        "order_timestamp": fmt_ts(order.order_timestamp),
        "exchange_update_timestamp": fmt_ts(order.exchange_update_timestamp),
        "exchange_timestamp": fmt_ts(order.exchange_timestamp),
        "variety": order.variety,
        "modified": order.modified,
        "exchange": order.instrument.exchange,
        "tradingsymbol": order.instrument.symbol,
        "instrument_token": order.instrument.kite_token,
        "order_type": order.order_type,
        "transaction_type": order.transaction_type,
        "validity": order.validity,
        "validity_ttl": 0,
        "product": order.product,
        "quantity": order.quantity,
        "disclosed_quantity": order.disclosed_quantity,
        "price": rupees_number(order.price, div),
        "trigger_price": rupees_number(order.trigger_price, div),
        "average_price": order.average_price(),
        "filled_quantity": order.filled_quantity,
        "pending_quantity": order.pending_quantity,
        "cancelled_quantity": order.cancelled_quantity,
        "market_protection": 0,
        "meta": {},
        "tag": order.tag,
        "tags": [order.tag] if order.tag else [],
        "guid": order.unique_order_id,
    }


def trade_payload(order: PaperOrder) -> list[dict[str, Any]]:
    """The rows of GET /trades for one order."""
    div = order.instrument.price_divisor
    rows = []
    for trade in order.trades:
        rows.append(
            {
                "trade_id": trade.trade_id,
                "order_id": order.order_id,
                "exchange": order.instrument.exchange,
                "tradingsymbol": order.instrument.symbol,
                "instrument_token": order.instrument.kite_token,
                "product": order.product,
                "average_price": rupees_number(trade.price, div),
                "quantity": trade.quantity,
                "exchange_order_id": order.exchange_order_id,
                "transaction_type": order.transaction_type,
                "fill_timestamp": fmt_ts(trade.fill_time),
                "order_timestamp": trade.fill_time.astimezone(IST).strftime("%H:%M:%S"),
                "exchange_timestamp": fmt_ts(trade.fill_time),
            }
        )
    return rows
