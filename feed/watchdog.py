"""Silent-stall detection: a socket that sends nothing (no tick, no heartbeat, no pong)
for ``timeout_s`` is dead even if TCP says otherwise, and is reconnected.

The session's receive loop feeds the watchdog on every frame and blocks on the socket for
at most :meth:`Watchdog.remaining_s`, so detection costs no extra thread and fires within
the timeout (plus one scheduler tick).
"""

from __future__ import annotations

import time

__all__ = ["Watchdog"]


class Watchdog:
    def __init__(self, timeout_s: float, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self.timeout_s = timeout_s
        self._clock = clock
        self.last_frame = clock()
        self.fired = 0

    def kick(self) -> None:
        """A frame arrived."""
        self.last_frame = self._clock()

    def remaining_s(self, now: float | None = None) -> float:
        now = self._clock() if now is None else now
        return self.last_frame + self.timeout_s - now

    def expired(self, now: float | None = None) -> bool:
        if self.remaining_s(now) <= 0:
            self.fired += 1
            return True
        return False
