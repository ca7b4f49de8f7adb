"""Orders above the exchange's freeze quantity: sliced into at most ten children that settle as one
parent.

The exchanges refuse a single F&O order above a contract's freeze quantity, and the 2026 algo
framework allows at most :data:`MAX_SLICES` slices of one order. :func:`plan` cuts a quantity into
children of the largest lot multiple within the freeze (or refuses, naming ``quantity``, when it would
take more); ``common.client.place_order`` stores a parent record (:func:`keys.parent_order`: the
request and the children's ids) and places each child as an order of its own (each exactly once,
each on the account's queue), and returns a :class:`SlicedHandle`: ``.wait()``, ``.get()``,
``.updates()`` and ``.cancel()`` act on the parent as the sum of its children (:func:`aggregate`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import redis

from common import keys, orderstore
from common.errors import InvalidOrder
from common.models import Order, OrderState, OrderUpdate
from common.order_updates import Handle, _Subscription, at_broker_or_settled, wait_stored
from common.orderstate import TERMINAL_STATES

__all__ = ["MAX_SLICES", "SlicedHandle", "aggregate", "plan", "read_parent", "store_parent"]

MAX_SLICES = 10
S = OrderState
# How a parent settles when its children did not all complete: the first of these any child is in.
_SETTLED_AS = (S.REJECTED, S.FAILED, S.EXPIRED, S.CANCELLED)


def plan(quantity: int, lot_size: int, freeze_quantity: int) -> list[int]:
    """The children's quantities: one (the whole) at or under the freeze quantity (or when it is
    unknown: 0); else children of the largest lot multiple within it, the rest in the last."""
    if not freeze_quantity or quantity <= freeze_quantity:
        return [quantity]
    per = (freeze_quantity // max(1, lot_size)) * max(1, lot_size)
    if per <= 0:
        raise InvalidOrder("quantity", f"the freeze quantity {freeze_quantity} is under one lot of {lot_size}")
    n = -(-quantity // per)
    if n > MAX_SLICES:
        raise InvalidOrder("quantity", f"{quantity} needs {n} orders of at most {per} (freeze quantity "
                                       f"{freeze_quantity}); the exchanges allow at most {MAX_SLICES} slices")
    return [per] * (n - 1) + [quantity - per * (n - 1)]


def store_parent(r: redis.Redis, parent: Order, children: Sequence[Order], retention_ms: int) -> None:
    r.set(keys.parent_order(parent.client_order_id),
          json.dumps({"request": parent.to_dict(), "children": [c.client_order_id for c in children]}),
          px=retention_ms)


def read_parent(r: redis.Redis, parent_id: str) -> dict[str, Any] | None:
    raw = r.get(keys.parent_order(parent_id))
    return json.loads(raw) if raw else None


def aggregate(parent_id: str, request: dict[str, Any], children: list[dict[str, Any]]) -> dict[str, Any]:
    """The parent as one order: filled and pending quantities summed, the average price weighted by
    fill, the state COMPLETE when every child is, OPEN while any is live at the broker, settled as
    the first of REJECTED, FAILED, EXPIRED, CANCELLED a child ended in once all are settled, and
    the earliest child state (NEW, SENDING) before any reached the broker."""
    states = [S(c["state"]) for c in children]
    filled = sum(int(c.get("filled_quantity") or 0) for c in children)
    value = sum(Decimal(str(c.get("average_price") or 0)) * int(c.get("filled_quantity") or 0) for c in children)
    if all(s is S.COMPLETE for s in states):
        state = S.COMPLETE
    elif all(s in TERMINAL_STATES for s in states):
        state = next(s for s in _SETTLED_AS if s in states)
    elif any(s in (S.OPEN, S.COMPLETE, S.UNKNOWN) for s in states):
        state = S.OPEN
    else:
        state = min(states, key=lambda s: (s is not S.NEW, s.value))
    return {
        "client_order_id": parent_id, "account": request["account"], "state": state.value, "request": request,
        "filled_quantity": filled, "pending_quantity": sum(int(c.get("pending_quantity") or 0) for c in children),
        "average_price": str(value / filled) if filled else None,
        "children": [{k: c.get(k) for k in ("client_order_id", "state", "filled_quantity", "average_price",
                                             "broker_order_id", "error")} for c in children],
    }


class SlicedHandle(Handle):
    """A parent order sliced into children: the same surface as :class:`common.client.OrderHandle`."""

    def __init__(self, parent_id: str, account: str, children: list[str], request: dict[str, Any],
                 r: redis.Redis | None = None) -> None:
        super().__init__(parent_id, account, r)
        self.children = children
        self._request = request

    def get(self) -> dict[str, Any] | None:
        got = orderstore.get_many(self.r, self.children)
        if any(g is None for g in got):
            return None
        return aggregate(self.id, self._request, [g for g in got if g])

    def wait(self, timeout_s: float | None = 30.0, *, final: bool = False) -> dict[str, Any]:
        """The parent once every child is at the broker or settled (``final``: settled)."""
        def ready(got: dict[str, Any]) -> bool:
            return all(at_broker_or_settled(c["state"], final) for c in got["children"])

        return wait_stored(self.r, self.children, self.get, ready, timeout_s, self.id)

    def updates(self, timeout_s: float | None = None) -> Iterator[OrderUpdate]:
        """The parent as it is now, then again each time a child changes, ending once settled."""
        sub = _Subscription(self.r, [self.account])
        try:
            last = None
            until = None if timeout_s is None else time.monotonic() + timeout_s
            while True:
                got = self.get()
                if got is not None and got != last:
                    last = got
                    yield OrderUpdate.from_dict({**got, "source": "children"})
                    if S(got["state"]) in TERMINAL_STATES:
                        return
                    until = None if timeout_s is None else time.monotonic() + timeout_s
                left = 0.5 if until is None else min(0.5, until - time.monotonic())
                if left <= 0:
                    raise TimeoutError(f"no update of order {self.id} within {timeout_s} s")
                sub.get(left)
        finally:
            sub.close()

    def cancel(self, deadline_s: float | None = None) -> None:
        from common.client import cancel_order

        for c in self.children:
            got = orderstore.get(self.r, c)
            if got is not None and S(got["state"]) not in TERMINAL_STATES:
                cancel_order(c, deadline_s=deadline_s)

    def modify(self, **changes: Any) -> None:
        raise InvalidOrder("client_order_id", f"{self.id} is sliced into {len(self.children)} orders: "
                                              "modify each child (.children) instead")

    def __repr__(self) -> str:
        return f"SlicedHandle({self.id!r}, account={self.account!r}, children={len(self.children)})"
