"""Kite order updates, pure: a postback body, a ticker ``{"type": "order"}`` message or an
order-book row in, an :class:`OrderUpdate` out; the postback's field table, its JSON
Schema and its checksum.

No I/O here. The receiver (``feed/postback.py``) and the one update path
(``feed/orderupdates.py``) call these through the broker's record (``BROKER.updates``).

Status mapping never guesses: an unknown status is ignored (``None``), never mapped to a
state that could move an order somewhere wrong. Transient statuses ("OPEN PENDING",
"MODIFY PENDING", ...) mean the broker holds the order, so they map to OPEN; OPEN ranks
below every terminal state, so a late transient update can never undo a fill
(``common/orderstate.RANK``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Any

from common.brokers.contracts import no_order_socket, no_order_socket_messages, no_socket_error
from common.brokers.payload import fill_price, text, whole
from common.models import OrderState, OrderUpdate

__all__ = [
    "HAS_POSTBACK",
    "ORDER_SOCKET",
    "POSTBACK_EXAMPLE",
    "POSTBACK_SCHEMA",
    "InvalidPostback",
    "order_socket_headers",
    "order_socket_messages",
    "order_to_update",
    "parse_message",
    "postback_checksum",
    "socket_error",
    "status_to_state",
    "tag_of",
    "validate_postback",
    "verify_postback",
]

HAS_POSTBACK = True  # Kite signs postbacks: the receiver can accept them for Kite accounts
ORDER_SOCKET = False  # Kite's order updates ride on the ticker socket (the feed's), not a socket of their own
order_socket_headers = no_order_socket
order_socket_messages = no_order_socket_messages
socket_error = no_socket_error

_OPEN_STATUSES = frozenset(
    {
        "OPEN", "TRIGGER PENDING", "UPDATE", "MODIFIED", "AMO REQ RECEIVED",
        "OPEN PENDING", "MODIFY PENDING", "CANCEL PENDING", "PUT ORDER REQ RECEIVED",
        "VALIDATION PENDING", "MODIFY VALIDATION PENDING", "MODIFY ORDER REQ RECEIVED",
        "CANCEL ORDER REQ RECEIVED", "TRIGGER PENDING MODIFY", "NOT MODIFIED", "NOT CANCELLED",
    }
)  # fmt: skip
_STATES: dict[str, OrderState] = {
    **dict.fromkeys(_OPEN_STATUSES, OrderState.OPEN),
    "COMPLETE": OrderState.COMPLETE,
    "CANCELLED": OrderState.CANCELLED,
    "CANCEL": OrderState.CANCELLED,  # docs/brokers.md: postbacks are sent on CANCEL(LED)
    "CANCELLED AMO": OrderState.CANCELLED,
    "REJECTED": OrderState.REJECTED,
}


def status_to_state(status: str) -> OrderState | None:
    """Kite's status text -> OrderState; ``None`` for a status we do not know (ignored, never guessed)."""
    return _STATES.get(" ".join(str(status).upper().split()))


# --- the postback body: one field table, from which both the validator and the schema come ----------
# name -> (JSON types allowed, required). Types: "string", "integer", "number", "null", "object", "array".
# Unknown fields are allowed: Kite adds fields over time, and refusing a real fill because of a new
# field would be worse than ignoring the field.
_MAX_ID = 64
_FIELDS: dict[str, tuple[tuple[str, ...], bool]] = {
    "order_id": (("string",), True),
    "order_timestamp": (("string",), True),
    "status": (("string",), True),
    "checksum": (("string",), True),
    "user_id": (("string",), False),
    "placed_by": (("string",), False),
    "app_id": (("integer",), False),
    "exchange_order_id": (("string", "null"), False),
    "parent_order_id": (("string", "null"), False),
    "status_message": (("string", "null"), False),
    "status_message_raw": (("string", "null"), False),
    "exchange_update_timestamp": (("string", "null"), False),
    "exchange_timestamp": (("string", "null"), False),
    "variety": (("string",), False),
    "exchange": (("string",), False),
    "tradingsymbol": (("string",), False),
    "instrument_token": (("integer",), False),
    "order_type": (("string",), False),
    "transaction_type": (("string",), False),
    "validity": (("string",), False),
    "product": (("string",), False),
    "quantity": (("integer",), False),
    "disclosed_quantity": (("integer",), False),
    "price": (("number",), False),
    "trigger_price": (("number",), False),
    "average_price": (("number",), False),
    "filled_quantity": (("integer",), False),
    "pending_quantity": (("integer",), False),
    "unfilled_quantity": (("integer",), False),
    "cancelled_quantity": (("integer",), False),
    "market_protection": (("number",), False),
    "meta": (("object", "null"), False),
    "tag": (("string", "null"), False),
    "tags": (("array", "null"), False),
    "guid": (("string", "null"), False),
}
_NON_NEGATIVE = frozenset(
    {"quantity", "disclosed_quantity", "filled_quantity", "pending_quantity", "unfilled_quantity",
     "cancelled_quantity", "price", "trigger_price", "average_price", "instrument_token", "app_id"}
)  # fmt: skip
_MAX_STRING = 1024
_MAX_INT = 10**15  # bigger than any real quantity or token; keeps arithmetic and Redis sane


def _field_schema(name: str, types: tuple[str, ...]) -> dict[str, Any]:
    s: dict[str, Any] = {"type": list(types) if len(types) > 1 else types[0]}
    if "string" in types:
        s["maxLength"] = _MAX_ID if name in ("order_id", "order_timestamp", "status", "tag") else _MAX_STRING
        if name in ("order_id", "order_timestamp", "status"):
            s["minLength"] = 1
    if "integer" in types or "number" in types:
        s["maximum"] = _MAX_INT
        if name in _NON_NEGATIVE:
            s["minimum"] = 0
    if name == "checksum":
        s["pattern"] = "^[0-9a-fA-F]{64}$"
        s["minLength"] = s["maxLength"] = 64
    if name == "tags":
        s["items"] = {"type": "string", "maxLength": _MAX_ID}
        s["maxItems"] = 20
    return s


POSTBACK_SCHEMA: dict[str, Any] = {
    "title": "KitePostback",
    "description": "A Kite Connect postback: the order's fields plus "
    "checksum = hex(sha256(order_id + order_timestamp + api_secret)). Unknown fields are allowed.",
    "type": "object",
    "required": [name for name, (_, req) in _FIELDS.items() if req],
    "properties": {name: _field_schema(name, types) for name, (types, _) in _FIELDS.items()},
    "additionalProperties": True,
}

POSTBACK_EXAMPLE: dict[str, Any] = {
    "user_id": "AB1234",
    "order_id": "220303000308932",
    "status": "COMPLETE",
    "order_timestamp": "2022-03-03 09:24:25",
    "exchange_timestamp": "2022-03-03 09:24:25",
    "exchange": "NSE",
    "tradingsymbol": "SBIN",
    "quantity": 1,
    "average_price": 470,
    "filled_quantity": 1,
    "pending_quantity": 0,
    "tag": "a1b2c3d4e5f6a7b8c9d0",
    "checksum": "2011845d9348bd6795151bf4258102a03431e3bb12a79c0df73fcb4b7fde4b5d",
}


class InvalidPostback(ValueError):
    """The body is not a Kite postback; the message names the field. Maps to HTTP 400."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


def _check_string(name: str, v: str, schema: dict[str, Any]) -> None:
    if len(v) > schema.get("maxLength", _MAX_STRING):
        raise InvalidPostback(name, f"longer than {schema.get('maxLength', _MAX_STRING)} characters")
    if len(v) < schema.get("minLength", 0):
        raise InvalidPostback(name, "must not be empty")
    try:
        # A lone surrogate ("\ud800") parses from JSON but cannot be encoded, so it would
        # fail later in hashing or in Redis: refuse it here, where it is the sender's fault.
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPostback(name, "not valid Unicode text") from None


def _type_ok(v: Any, t: str) -> bool:
    if t == "null":
        return v is None
    if t == "string":
        return isinstance(v, str)
    if t == "integer":
        if isinstance(v, bool):
            return False
        return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v) and v.is_integer())
    if t == "number":
        return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    return False


_HEX = frozenset("0123456789abcdefABCDEF")
# The field table compiled once: (name, JSON types, required, schema) in table order.
_PY_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "object": (dict,), "array": (list,)}
_COMPILED = tuple(
    (
        name,
        types,
        tuple(t for jt in types for t in _PY_TYPES.get(jt, ())),
        POSTBACK_SCHEMA["properties"][name],
    )
    for name, (types, _) in _FIELDS.items()
)
_REQUIRED = tuple(name for name, (_, req) in _FIELDS.items() if req)


def _check_field(name: str, v: Any, types: tuple[str, ...], py_types: tuple[type, ...], schema: dict[str, Any]) -> None:
    """One present field against its type and limits; raises :class:`InvalidPostback`."""
    if v is None:
        if "null" not in types:
            raise InvalidPostback(name, f"must be {' or '.join(types)}, got NoneType")
        return
    # Fast path on the Python type; the JSON edge cases (bool is not a number, 1.0 is an
    # integer, inf is not a number) go through the exact check.
    fast = isinstance(v, py_types) and not isinstance(v, (bool, float))
    if not fast and not any(_type_ok(v, t) for t in types):
        raise InvalidPostback(name, f"must be {' or '.join(types)}, got {type(v).__name__}")
    if isinstance(v, str):
        _check_string(name, v, schema)
        if name == "checksum" and not _HEX.issuperset(v):
            raise InvalidPostback(name, "must be 64 hexadecimal digits")
    elif isinstance(v, (int, float)):
        if v > _MAX_INT:
            raise InvalidPostback(name, f"larger than {_MAX_INT}")
        if v < 0 and name in _NON_NEGATIVE:
            raise InvalidPostback(name, "must be >= 0")
    elif isinstance(v, list):
        if len(v) > schema.get("maxItems", 20):
            raise InvalidPostback(name, "too many items")
        for item in v:
            if not isinstance(item, str):
                raise InvalidPostback(name, "items must be strings")
            _check_string(name, item, schema["items"])


def validate_postback(body: Any) -> dict[str, Any]:
    """Check a parsed postback body against the field table; return it, or raise :class:`InvalidPostback`."""
    if not isinstance(body, dict):
        raise InvalidPostback("", "the body must be a JSON object")
    for name in _REQUIRED:
        if name not in body:
            raise InvalidPostback(name, "required")
    for name, types, py_types, schema in _COMPILED:
        if name in body:
            _check_field(name, body[name], types, py_types, schema)
    return body


def postback_checksum(order_id: str, order_timestamp: str, api_secret: str) -> str:
    """hex(sha256(order_id + order_timestamp + api_secret)), as Kite signs postbacks."""
    return hashlib.sha256(f"{order_id}{order_timestamp}{api_secret}".encode()).hexdigest()


def verify_postback(body: dict[str, Any], api_secret: str) -> bool:
    """True when ``body["checksum"]`` is Kite's signature of this order with ``api_secret``.

    Constant-time comparison, so response timing does not leak how much of a forged checksum
    was right. Any malformed input is simply ``False``.
    """
    if not api_secret:
        return False
    order_id, ts, given = body.get("order_id"), body.get("order_timestamp"), body.get("checksum")
    if not (isinstance(order_id, str) and isinstance(ts, str) and isinstance(given, str)):
        return False
    try:
        expected = postback_checksum(order_id, ts, api_secret)
        return hmac.compare_digest(expected.encode("ascii"), given.lower().encode("ascii"))
    except (UnicodeEncodeError, ValueError):
        return False


# --- normalization ---------------------------------------------------------------------------------
def tag_of(order: dict[str, Any]) -> str:
    """The order's tag: ``tag``, else the first of ``tags``."""
    tag = order.get("tag")
    if not tag:
        tags = order.get("tags")
        tag = tags[0] if isinstance(tags, list) and tags and isinstance(tags[0], str) else ""
    return str(tag or "")


def order_to_update(account: str, order: dict[str, Any], source: str) -> OrderUpdate | None:
    """One Kite order dict (postback body, ticker order data, or a ``GET /orders`` row) -> OrderUpdate.

    ``None`` when the status is unknown or there is no order id.
    """
    state = status_to_state(text(order.get("status")))
    order_id = text(order.get("order_id"))
    if state is None or not order_id:
        return None
    filled = whole(order.get("filled_quantity"))
    avg = fill_price(order.get("average_price"), filled)
    pending = order.get("pending_quantity")
    if pending is None:
        pending = order.get("unfilled_quantity")
    return OrderUpdate(
        account=account,
        client_order_id=tag_of(order),
        broker_order_id=order_id,
        state=state,
        filled_quantity=filled,
        pending_quantity=whole(pending),
        average_price=avg,
        broker_status=text(order.get("status")),
        message=text(order.get("status_message") or order.get("status_message_raw")),
        exchange_ts=text(order.get("exchange_update_timestamp") or order.get("exchange_timestamp")),
        source=source,
    )


def parse_message(account: str, payload: dict[str, Any], source: str) -> OrderUpdate | None:
    """A postback body, or a ticker text message ``{"type": "order", "data": {...}}`` -> OrderUpdate.

    Other ticker messages (``error``, ``message``) are not order updates: ``None``.
    """
    if not isinstance(payload, dict):
        return None
    if "type" in payload and "order_id" not in payload:
        if payload.get("type") != "order" or not isinstance(payload.get("data"), dict):
            return None
        payload = payload["data"]
    return order_to_update(account, payload, source)
