"""Fault switches of the paper broker (`POST /_paper/faults`): what a request, a socket or a
pushed order update of one broker's user should suffer next."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

# The eight kinds of docs/architecture.md § Interfaces, plus two postback extras (Kite postbacks) and their twins for the
# order updates pushed on sockets (every broker's order-update socket, Kite's and Shoonya's ticker).
FAULT_KINDS = frozenset(
    {
        "accept_then_drop",
        "delay",
        "error_5xx",
        "rate_limit",
        "expire_tokens",
        "drop_socket",
        "stall_socket",
        "malformed_frame",
        "duplicate_postback",
        "reorder_postbacks",
        "duplicate_update",
        "reorder_updates",
    }
)


@dataclass
class Fault:
    kind: str
    broker: str
    user_id: str | None = None
    count: int | None = None  # uses left; None = unlimited within the duration
    duration_s: float | None = None
    delay_s: float | None = None  # for kind "delay": how long each affected request sleeps
    status: int | None = None  # for kind "error_5xx": the answer's status (see Faults)
    added_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        """Check the switch and fill in what its kind implies (see Faults)."""
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.status is not None and (self.kind != "error_5xx" or not 500 <= self.status <= 599):
            raise ValueError("status is for kind error_5xx only, and must be 500..599")
        if self.kind == "delay" and self.delay_s is None:
            self.delay_s = self.duration_s if self.duration_s is not None else 1.0
            self.duration_s = None
        if self.count is None and self.duration_s is None:
            self.count = 1

    def active(self, now: float) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        return not (self.duration_s is not None and now > self.added_at + self.duration_s)

    def to_dict(self) -> dict[str, Any]:
        """The switch as ``POST /_paper/faults`` takes it (without ``added_at``)."""
        out = asdict(self)
        del out["added_at"]
        return out


class Faults:
    """Fault switches. A fault applies to one broker, and to one user or (user_id None) to all.

    Without count or duration a fault fires once. With `count`, it fires that many times; with
    `duration_s`, every time until the duration has passed (and at most `count` times if both).
    Kind "delay": each affected request sleeps `delay_s`; when only `duration_s` is given it is
    taken as the sleep of one request (so `{"kind": "delay", "duration_s": 5}` delays the next
    request by 5 s), when only `count`, the sleep is 1 s.

    Kind "error_5xx" (`count` N: N failures, then the requests after them succeed):
    - `status` absent or 503: the broker's own "service unavailable" answer in its dialect (503
      with its error body: Kite NetworkException, Angel AB1004, Fyers -96, Shoonya Not_Ok), given
      before the handler runs, so the request was certainly not acted on (nothing placed).
    - any other 5xx `status` (500, 502, 504): a gateway in front of the broker answers it, bare
      (an HTML page, no broker body), after the broker acted on the request: an order POST was
      placed although its client saw a 502. Ambiguous by construction, as a real proxy's 502 is.
    """

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._faults.append(fault)

    def _find(self, kind: str, broker: str, user_id: str | None) -> Fault | None:
        now = time.monotonic()
        self._faults = [f for f in self._faults if f.active(now)]
        for fault in self._faults:
            if fault.kind == kind and fault.broker == broker and fault.user_id in (None, user_id):
                return fault
        return None

    def take_fault(self, kind: str, broker: str, user_id: str | None) -> Fault | None:
        """Consume one use of a matching fault and return it, or None."""
        fault = self._find(kind, broker, user_id)
        if fault is not None and fault.count is not None:
            fault.count -= 1
        return fault

    def take(self, kind: str, broker: str, user_id: str | None) -> bool:
        return self.take_fault(kind, broker, user_id) is not None

    def active(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [f.to_dict() for f in self._faults if f.active(now)]

    def clear(self) -> None:
        self._faults.clear()
