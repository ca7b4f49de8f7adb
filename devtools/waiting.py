"""Waiting on a condition with a deadline: the one way tests and the harness wait (never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout_s: float = 5.0, interval_s: float = 0.02, what: str = "condition",
    error: type[Exception] = AssertionError,
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s`` with
    ``error`` (a test's AssertionError; a benchmark's TimeoutError)."""
    value = until(predicate, timeout_s, interval_s)
    if not value:
        raise error(f"{what} not met within {timeout_s} s")
    return value


def until(predicate: Callable[[], T], timeout_s: float, interval_s: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy, or ``timeout_s`` passed; its last value
    (falsy on a timeout: the caller says what did not happen)."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()) and time.monotonic() <= deadline:
        time.sleep(interval_s)
    return value
