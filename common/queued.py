"""Place messages as they wait in Celery's queues on Redis (kombu's lists and unacked hash):
which order each carries. For the sweeper (a message lost between pop and unacked record) and the
kill switch (entries still queued when an account is halted)."""

from __future__ import annotations

import base64
import json
from typing import Any, NamedTuple

from common import keys
from common.models import message_client_order_id

__all__ = ["QueuedPlace", "place_client_order_id", "place_of"]


class QueuedPlace(NamedTuple):
    client_order_id: str
    order: dict[str, Any]  # the order's wire dict ({} when enqueued by name with kwargs only)


def place_of(envelope: Any) -> QueuedPlace | None:
    """The order a kombu message of ``brokergate.place_order`` carries (None: another task, or not
    decodable). Celery protocol 2: the task name and id are headers, the body is
    ``[args, kwargs, embed]`` (JSON, base64 on the Redis transport); protocol 1: all in the body."""
    try:
        headers = envelope.get("headers") or {}
        body = envelope["body"]
        if (envelope.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        payload = json.loads(body)
        if isinstance(payload, dict):  # protocol 1
            task, task_id = payload.get("task"), payload.get("id")
            args, kwargs = payload.get("args") or [], payload.get("kwargs") or {}
        else:
            task, task_id = headers.get("task"), headers.get("id")
            args, kwargs = payload[0] or [], payload[1] or {}
        if task != keys.PLACE_TASK:
            return None
        order = args[0] if args else kwargs.get("order")
        coid = place_client_order_id(args, kwargs, task_id)
        return QueuedPlace(coid, order if isinstance(order, dict) else {}) if coid else None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):  # binascii.Error is a ValueError
        return None


def place_client_order_id(args: Any, kwargs: Any, message_id: str | None) -> str | None:
    """The client order id a ``brokergate.place_order`` message carries, as the task reads it
    (derived from the message id when enqueued by name without one)."""
    order = args[0] if args else (kwargs or {}).get("order")
    coid = order.get("client_order_id") if isinstance(order, dict) else None
    if not coid and message_id:
        coid = message_client_order_id(message_id)
    return str(coid) if coid else None
