"""Per-user request caps with several sliding windows per endpoint class, as the brokers count.

A request is admitted only if every window of its class has room; an admitted request counts
in all windows (even if it is then refused as invalid: the brokers count those too). A refused
request (the broker's rate-limit answer) does not take a slot, so the log of admitted requests
never shows more than the cap in any sliding window.
"""

from __future__ import annotations

import time
from collections import deque

_UNIT_S = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0,
           "hour": 3600.0, "d": 86400.0, "day": 86400.0}


def parse_cap(text: str) -> tuple[int, float]:
    """"10/s" -> (10, 1.0); "400/min" -> (400, 60.0); "5000/day" -> (5000, 86400.0)."""
    count, _, unit = text.strip().partition("/")
    unit = unit.strip().lower()
    if unit not in _UNIT_S:
        raise ValueError(f"bad cap {text!r}: unit must be one of s, min, hour, day")
    return int(count), _UNIT_S[unit]


class CapLimiter:
    """Sliding-window counters keyed by (broker, user_id, endpoint class, window length)."""

    def __init__(self) -> None:
        self._hits: dict[tuple[str, str, str, float], deque[int]] = {}

    def admit(
        self, broker: str, user_id: str, endpoint_class: str, caps: list[str], now_ns: int | None = None
    ) -> bool:
        """Take a slot in every window of the class, or none and return False.
        `now_ns` (monotonic) is for tests; the server uses the clock."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        windows = [parse_cap(c) for c in caps]
        queues: list[tuple[deque[int], int]] = []
        for limit, length_s in windows:
            key = (broker, user_id, endpoint_class, length_s)
            hits = self._hits.setdefault(key, deque())
            horizon = now - int(length_s * 1e9)
            while hits and hits[0] <= horizon:
                hits.popleft()
            if len(hits) >= limit:
                return False
            queues.append((hits, limit))
        for hits, _limit in queues:
            hits.append(now)
        return True

    def clear(self) -> None:
        self._hits.clear()
