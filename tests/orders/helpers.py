"""Small helpers for the order tests (reading the paper log)."""

from __future__ import annotations

from typing import Any


def order_requests(log: list[dict[str, Any]], user_id: str, method: str | None = "POST") -> list[dict[str, Any]]:
    """The order-class requests of one user at the paper broker (place = POST), in arrival order."""
    return [e for e in log if e["endpoint_class"] == "orders" and e["user_id"] == user_id
            and (method is None or e["method"] == method)]
