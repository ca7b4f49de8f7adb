"""Fyers order updates, pure: an order-socket message or an order-book row in, an
:class:`OrderUpdate` out; and what the order socket needs (handshake header, subscription).

The order socket (``wss://socket.fyers.in/trade/v3``, fyers_apiv3 ``order_ws.py``) takes the
header ``authorization: <app_id>:<access_token>``, wants ``{"T": "SUB_ORD", "SLIST":
["orders"], "SUB_T": 1}`` before it pushes anything, answers the text ``ping`` with ``pong``,
and pushes ``{"s": "ok", "orders": {...}}`` with the raw field names that the SDK renames
through ``map.json``'s ``order_mapper`` (``org_ord_status`` -> ``status``, ``qty_filled`` ->
``filledQty``, ``ordertag`` -> ``orderTag``, ...). Order-book rows (``GET /api/v3/orders``)
carry the renamed names. Both are read here.

Status codes (v3 docs): 1 cancelled, 2 traded (filled), 4 transit, 5 rejected, 6 pending,
7 expired (a day order that lapsed unfilled: cancelled by the exchange). Transit and pending
are OPEN, which ranks below every terminal state; an unknown code is ignored, never guessed.

Order tags come back prefixed with their source (``"1:<tag>"``; untagged orders read
``"2:Untagged"``): the prefix is dropped, so the tag we sent is the client_order_id we read.
"""

from __future__ import annotations

import json
import re
from typing import Any

from common.brokers.payload import fill_price, text, whole
from common.models import OrderState, OrderUpdate

__all__ = [
    "HAS_POSTBACK",
    "ORDER_SOCKET",
    "STATUS_CODES",
    "order_socket_headers",
    "order_socket_messages",
    "order_tag",
    "order_to_update",
    "parse_message",
    "socket_error",
    "status_to_state",
]

# Fyers postbacks (webhooks) carry no signature we could verify; its push path is the order socket.
HAS_POSTBACK = False
ORDER_SOCKET = True

STATUS_CODES: dict[int, OrderState] = {
    1: OrderState.CANCELLED,
    2: OrderState.COMPLETE,
    4: OrderState.OPEN,  # transit
    5: OrderState.REJECTED,
    6: OrderState.OPEN,  # pending (resting, trigger pending or partly filled)
    7: OrderState.CANCELLED,  # expired unfilled
}
_STATUS_TEXT = {1: "cancelled", 2: "traded", 4: "transit", 5: "rejected", 6: "pending", 7: "expired"}
_TAG_PREFIX = re.compile(r"^\d+:")
_UNTAGGED = "Untagged"


def status_to_state(status: Any) -> OrderState | None:
    """A Fyers status code (int or numeric string) -> OrderState, or None when unknown."""
    try:
        code = int(str(status).strip())
    except ValueError:
        return None
    return STATUS_CODES.get(code)


def order_tag(raw: Any) -> str:
    """The tag we sent, from Fyers' echo of it ("1:abc" -> "abc", "2:Untagged" -> "")."""
    tag = _TAG_PREFIX.sub("", "" if raw is None else str(raw), count=1)
    return "" if tag == _UNTAGGED else tag


def order_socket_headers(jwt: str, api_key: str = "") -> list[str]:
    """The order socket's handshake header: ``<app_id>:<access_token>`` (a token already in
    that form is sent as it is)."""
    value = jwt if ":" in jwt or not api_key else f"{api_key}:{jwt}"
    return [f"authorization: {value}"]


def order_socket_messages() -> list[str]:
    """Sent after every connect: without this subscription the socket pushes no orders."""
    return [json.dumps({"T": "SUB_ORD", "SLIST": ["orders"], "SUB_T": 1})]


def socket_error(payload: dict[str, Any]) -> str | None:
    """The error text of a message that reports a failure (``"s": "error"``), else None."""
    if str(payload.get("s", "ok")).lower() == "error":
        return str(payload.get("message") or f"code {payload.get('code')}")
    return None


def _pick(order: dict[str, Any], *names: str) -> Any:
    """The first of ``names`` the order carries a value for (the book's name, then the socket's)."""
    return next((order[name] for name in names if order.get(name) is not None), None)


def order_to_update(account: str, order: dict[str, Any], source: str) -> OrderUpdate | None:
    """One Fyers order (socket ``orders`` object with raw names, or an order-book row) -> OrderUpdate."""
    order_id = text(order.get("id"))
    raw_status = _pick(order, "status", "org_ord_status")
    state = status_to_state(raw_status)
    if state is None or not order_id:
        return None
    filled = whole(_pick(order, "filledQty", "qty_filled"))
    avg = fill_price(_pick(order, "tradedPrice", "price_traded"), filled)
    code = int(str(raw_status).strip())
    pending = _pick(order, "remainingQuantity", "qty_remaining")
    return OrderUpdate(
        account=account,
        client_order_id=order_tag(_pick(order, "orderTag", "ordertag")),
        broker_order_id=order_id,
        state=state,
        filled_quantity=filled,
        pending_quantity=whole(pending) if pending is not None else max(0, whole(order.get("qty")) - filled),
        average_price=avg,
        broker_status=_STATUS_TEXT.get(code, str(code)),
        message=text(_pick(order, "message", "oms_msg")),
        exchange_ts=text(_pick(order, "orderDateTime", "time_oms")),
        source=source,
    )


def parse_message(account: str, payload: dict[str, Any], source: str) -> OrderUpdate | None:
    """An order-socket message -> OrderUpdate; ``None`` for errors, trades, positions and
    other messages. A bare order dict (an order-book row) is accepted too."""
    if not isinstance(payload, dict) or socket_error(payload) is not None:
        return None
    if "orders" in payload:
        order = payload["orders"]
        return order_to_update(account, order, source) if isinstance(order, dict) else None
    if "id" in payload and ("status" in payload or "org_ord_status" in payload):
        return order_to_update(account, payload, source)
    return None
