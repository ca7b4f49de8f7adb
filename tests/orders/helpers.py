"""Small helpers for the order tests (waiting on conditions with deadlines, reading the paper log)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout_s: float, interval_s: float = 0.05, what: str = "condition") -> T:
    """Poll ``predicate`` until truthy or fail after ``timeout_s`` (never a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s")
        time.sleep(interval_s)


def order_requests(log: list[dict[str, Any]], user_id: str, method: str | None = "POST") -> list[dict[str, Any]]:
    """The order-class requests of one user at the paper broker (place = POST), in arrival order."""
    return [e for e in log if e["endpoint_class"] == "orders" and e["user_id"] == user_id
            and (method is None or e["method"] == method)]
