"""Angel One order updates, pure: a ``smart-order-update`` socket message or an order-book row
in, an :class:`OrderUpdate` out; and what the order-update socket needs (URL headers, the
messages that are not updates).

A socket message (SmartAPI forum, "New Real-Time Order Updates via WebSocket")::

    {"user-id": "A496209", "status-code": "200", "order-status": "AB05", "error-message": "",
     "orderData": {"variety": "NORMAL", "ordertype": "LIMIT", "ordertag": "", "price": 266.94,
                   "quantity": "1", "averageprice": 265.62, "filledshares": "1", "unfilledshares": "0",
                   "orderid": "241226000790638", "text": "", "status": "complete",
                   "orderstatus": "complete", "updatetime": "26-Dec-2024 14:07:19",
                   "exchtime": "26-Dec-2024 14:07:19", "exchorderupdatetime": "26-Dec-2024 14:07:19", ...}}

``order-status`` codes: AB00 connected (the first message, empty orderData), AB01 open,
AB02 cancelled, AB03 rejected, AB04 modified, AB05 complete, and further codes for
transient states (AMO, open pending, trigger pending, ...). The text ``orderstatus`` is
the authority; the code is the fallback for the five documented states. Unknown statuses
are ignored, never guessed; transient ones map to OPEN, which ranks below every terminal
state, so a late one cannot undo a fill.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from common.brokers.contracts import no_order_socket_messages
from common.brokers.payload import fill_price, text, whole
from common.models import OrderState, OrderUpdate

__all__ = [
    "HAS_POSTBACK",
    "ORDER_SOCKET",
    "order_socket_headers",
    "order_socket_messages",
    "order_to_update",
    "parse_message",
    "socket_error",
    "status_to_state",
]

# Angel postbacks carry no signature we could verify, so the receiver refuses them (401);
# Angel's push path is its order-update socket.
HAS_POSTBACK = False
ORDER_SOCKET = True
order_socket_messages = no_order_socket_messages  # it pushes from the connect on

_OPEN = OrderState.OPEN
_STATES: dict[str, OrderState] = {
    **dict.fromkeys(
        (
            "open", "trigger pending", "open pending", "modify pending", "cancel pending",
            "validation pending", "put order req received", "modify validation pending",
            "after market order req received", "modify after market order req received",
            "modified", "not modified", "not cancelled", "modify order req received",
            "cancel order req received", "trigger pending modify",
        ),
        _OPEN,
    ),
    "complete": OrderState.COMPLETE,
    "cancelled": OrderState.CANCELLED,
    "cancelled after market order": OrderState.CANCELLED,
    "rejected": OrderState.REJECTED,
}  # fmt: skip
_CODES: dict[str, OrderState] = {
    "AB01": OrderState.OPEN,
    "AB02": OrderState.CANCELLED,
    "AB03": OrderState.REJECTED,
    "AB04": OrderState.OPEN,  # modified: still open
    "AB05": OrderState.COMPLETE,
}
CONNECTED_CODE = "AB00"


def status_to_state(status: str, code: str = "") -> OrderState | None:
    """Angel's ``orderstatus`` text (or, failing that, its ``order-status`` code) -> OrderState."""
    state = _STATES.get(" ".join(str(status).lower().split()))
    if state is None and not str(status).strip():
        state = _CODES.get(str(code).upper())
    return state


def order_socket_headers(jwt: str, api_key: str = "") -> list[str]:
    """Handshake headers of the order-update socket. Tolerates a jwt already prefixed with
    ``Bearer `` (the SDK's generateSession returns it that way). Angel's socket does not
    want the API key (the contract passes it for brokers whose header does)."""
    return [f"Authorization: Bearer {jwt.removeprefix('Bearer ')}"]


def socket_error(payload: dict[str, Any]) -> str | None:
    """The error text of a message that reports a failure (``status-code`` not 200), else None."""
    code = str(payload.get("status-code", "200"))
    if code not in ("200", ""):
        return str(payload.get("error-message") or f"status-code {code}")
    return None


def order_to_update(account: str, order: dict[str, Any], source: str, code: str = "") -> OrderUpdate | None:
    """One Angel order dict (socket ``orderData`` or a ``getOrderBook`` row) -> OrderUpdate, or None."""
    order_id = text(order.get("orderid"))
    status = text(order.get("orderstatus") or order.get("status"))
    state = status_to_state(status, code)
    if state is None or not order_id:
        return None
    filled = whole(order.get("filledshares"))
    avg = fill_price(order.get("averageprice"), filled)
    return OrderUpdate(
        account=account,
        client_order_id=text(order.get("ordertag")),
        broker_order_id=order_id,
        state=state,
        filled_quantity=filled,
        pending_quantity=whole(order.get("unfilledshares")),
        average_price=avg,
        broker_status=status,
        message=text(order.get("text")),
        exchange_ts=text(
            order.get("exchorderupdatetime") or order.get("exchtime") or order.get("updatetime")
        ),
        source=source,
    )


def parse_message(account: str, payload: dict[str, Any], source: str) -> OrderUpdate | None:
    """A socket message -> OrderUpdate; ``None`` for the AB00 greeting, errors and non-order messages.

    A bare order dict (an order-book row) is accepted too.
    """
    if not isinstance(payload, dict):
        return None
    if "orderData" not in payload:
        return order_to_update(account, payload, source) if "orderid" in payload else None
    code = text(payload.get("order-status")).upper()
    if code == CONNECTED_CODE or socket_error(payload) is not None:
        return None
    data = payload.get("orderData")
    if not isinstance(data, dict):
        return None
    update = order_to_update(account, data, source, code)
    if update is not None and not update.message and payload.get("error-message"):
        update = replace(update, message=text(payload.get("error-message")))
    return update
