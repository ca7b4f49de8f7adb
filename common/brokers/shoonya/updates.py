"""Shoonya order updates, pure: an ``om`` message of the WebSocket or an ``OrderBook`` row in, an
:class:`OrderUpdate` out.

Both carry Noren's order fields (NorenRestApiPy README, "subscribe_orders" and "Order Book"):
``norenordno``, ``status``, ``reporttype`` (the event: New, Replaced, Fill, Canceled,
Rejected, ...), ``qty``, ``fillshares``, ``avgprc``, ``cancelqty``, ``rejreason``, ``remarks``
(our tag), ``exch_tm``, ``norentm``; every value a string. Order states: PENDING, OPEN,
TRIGGER_PENDING, COMPLETE, CANCELED, REJECTED (and INVALID_STATUS_TYPE, which means nothing).

The status text is the authority; the report type is the fallback when a message carries a
status we do not know. Unknown ones are ignored (``None``), never guessed; transient ones map to
OPEN, which ranks below every terminal state, so a late one cannot undo a fill.

Order updates ride on the market-data socket (the feed's): no socket of their own, and Finvasia
signs no postback, so the receiver refuses postbacks for Shoonya accounts.
"""

from __future__ import annotations

from typing import Any

from common.brokers.contracts import no_order_socket, no_order_socket_messages, no_socket_error
from common.brokers.payload import fill_price, text, whole
from common.models import OrderState, OrderUpdate

__all__ = [
    "HAS_POSTBACK", "ORDER_MESSAGE", "ORDER_SOCKET", "order_socket_headers", "order_socket_messages", "order_to_update",
    "parse_message", "socket_error", "status_to_state",
]  # fmt: skip

HAS_POSTBACK = False
ORDER_SOCKET = False  # order updates ride on the market-data socket (``om`` messages)
order_socket_headers = no_order_socket
order_socket_messages = no_order_socket_messages
socket_error = no_socket_error
ORDER_MESSAGE = "om"

_OPEN = OrderState.OPEN
_STATES: dict[str, OrderState] = {
    **dict.fromkeys(("PENDING", "OPEN", "TRIGGER_PENDING", "NEW", "REPLACED", "AMO_RECEIVED"), _OPEN),
    "COMPLETE": OrderState.COMPLETE,
    "CANCELED": OrderState.CANCELLED,
    "CANCELLED": OrderState.CANCELLED,
    "REJECTED": OrderState.REJECTED,
    "REJECT": OrderState.REJECTED,
}
# Report types (the event of one message); "Fill" says nothing about whether the order is done.
_REPORTS: dict[str, OrderState] = {
    **dict.fromkeys(
        ("NEWACK", "MODACK", "CANACK", "PENDINGNEW", "PENDINGREPLACE", "PENDINGCANCEL", "NEW", "REPLACED",
         "REPLACEREJECTED", "CANCELREJECTED"),
        _OPEN,
    ),
    "CANCELED": OrderState.CANCELLED,
    "REJECTED": OrderState.REJECTED,
}  # fmt: skip


def _norm(text: Any) -> str:
    return "_".join(str(text or "").upper().split())


def status_to_state(status: str, report: str = "") -> OrderState | None:
    """Noren's ``status`` (or, when that is unknown or missing, its ``reporttype``) -> OrderState."""
    state = _STATES.get(_norm(status))
    if state is None:
        state = _REPORTS.get(_norm(report).replace("_", ""))
    return state


def order_to_update(account: str, row: dict[str, Any], source: str) -> OrderUpdate | None:
    """One Noren order dict (an ``om`` message or an order-book row) -> OrderUpdate, or None."""
    order_id = text(row.get("norenordno"))
    state = status_to_state(text(row.get("status")), text(row.get("reporttype")))
    if state is None or not order_id:
        return None
    qty = whole(row.get("qty"))
    filled = whole(row.get("fillshares"))
    if state is OrderState.OPEN and qty and filled >= qty:
        state = OrderState.COMPLETE  # a Fill report of the last share before the status caught up
    avg = fill_price(row.get("avgprc"), filled)
    pending = max(0, qty - filled - whole(row.get("cancelqty"))) if state is OrderState.OPEN else 0
    return OrderUpdate(
        account=account,
        client_order_id=text(row.get("remarks")),
        broker_order_id=order_id,
        state=state,
        filled_quantity=filled,
        pending_quantity=pending,
        average_price=avg,
        broker_status=text(row.get("status") or row.get("reporttype")),
        message=text(row.get("rejreason") or row.get("emsg")),
        exchange_ts=text(row.get("exch_tm") or row.get("norentm")),
        source=source,
    )


def parse_message(account: str, payload: dict[str, Any], source: str) -> OrderUpdate | None:
    """An ``om`` socket message (or a bare order-book row) -> OrderUpdate; ``None`` for every other
    socket message (``ck``, ``tk``, ``ok``, ...)."""
    if not isinstance(payload, dict):
        return None
    if "t" in payload and payload.get("t") != ORDER_MESSAGE:
        return None
    return order_to_update(account, payload, source)
