"""The order state machine, whole: the states, one transition table, the rank that keeps updates from
going backwards, and the sets derived from them (terminal, wake, our verdicts, broker states). The Lua
order scripts get every one of them generated from here (``common/orderstore.py``).

    NEW ──► SENDING ──► OPEN ──► COMPLETE | CANCELLED | REJECTED
     │         │  └───────────► COMPLETE | CANCELLED | REJECTED
     │         ├──► FAILED      (certainly never reached the broker)
     │         └──► UNKNOWN ──► (reconciled) OPEN | COMPLETE | ... | FAILED
     └──► EXPIRED               (no slot before the deadline: never sent)
    OPEN ──► EXPIRED            (a day order gone from the next trading day's book, its end unseen)

A worker that finds SENDING (a redelivery) or UNKNOWN reconciles by tag before it sends.
"""

from __future__ import annotations

from enum import StrEnum

from common.errors import IllegalTransition

__all__ = [
    "BROKER_STATES",
    "OUR_VERDICTS",
    "RANK",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "WAKE_STATES",
    "OrderState",
    "can_move",
    "check_move",
]


class OrderState(StrEnum):
    """Where an order is. The allowed moves are :data:`TRANSITIONS`."""

    NEW = "NEW"  # validated and enqueued, not yet sent
    SENDING = "SENDING"  # a worker claimed it and may have sent it
    OPEN = "OPEN"  # the broker holds it (open, trigger pending, partially filled)
    COMPLETE = "COMPLETE"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"  # certainly never reached the broker
    EXPIRED = "EXPIRED"  # not sent before its deadline; or a day order gone from the next day's book, unseen
    UNKNOWN = "UNKNOWN"  # outcome unknown until reconciled against the order book


S = OrderState

TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    S.NEW: frozenset({S.SENDING, S.EXPIRED, S.FAILED, S.OPEN, S.COMPLETE, S.REJECTED, S.CANCELLED}),
    S.SENDING: frozenset({S.OPEN, S.COMPLETE, S.REJECTED, S.CANCELLED, S.FAILED, S.UNKNOWN, S.EXPIRED}),
    S.UNKNOWN: frozenset({S.SENDING, S.OPEN, S.COMPLETE, S.REJECTED, S.CANCELLED, S.FAILED, S.EXPIRED}),
    # OPEN -> EXPIRED only by workers/sweeper.py settle_stale: a day order that the book at the next
    # trading day's login no longer shows ended unseen (a broker sighting still overturns it).
    S.OPEN: frozenset({S.OPEN, S.COMPLETE, S.REJECTED, S.CANCELLED, S.EXPIRED}),
    S.COMPLETE: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
    S.FAILED: frozenset(),
    S.EXPIRED: frozenset(),
}

# Settled: the states the table never leaves.
TERMINAL_STATES: frozenset[OrderState] = frozenset(s for s, moves in TRANSITIONS.items() if not moves)
# States a waiting handle is woken for: the broker has the order, or the order is settled.
WAKE_STATES: frozenset[OrderState] = frozenset({S.OPEN}) | TERMINAL_STATES

# Push updates may arrive late and out of order; an update is applied only when it moves
# the order forward in this rank (OPEN -> OPEN is allowed: partial fills, modifications).
RANK: dict[OrderState, int] = {
    S.NEW: 0, S.SENDING: 1, S.UNKNOWN: 1, S.OPEN: 2,
    S.COMPLETE: 3, S.REJECTED: 3, S.CANCELLED: 3, S.FAILED: 3, S.EXPIRED: 3,
}  # fmt: skip


# Our own verdicts that an order is not at the broker (also CANCELLED while it has no broker order
# id: cancelled before it was sent). A broker sighting of the order's tag overturns them: the broker
# is the truth about money at risk (common/lua/order_apply.lua).
OUR_VERDICTS: frozenset[OrderState] = frozenset({S.FAILED, S.EXPIRED})
# The states only a broker reports: a sighting of the order there.
BROKER_STATES: frozenset[OrderState] = frozenset({S.OPEN, S.COMPLETE, S.REJECTED, S.CANCELLED})


def can_move(current: OrderState, new: OrderState) -> bool:
    """True when the table allows ``current -> new``."""
    return new in TRANSITIONS[current]


def check_move(current: OrderState, to: OrderState) -> None:
    """Raise :class:`IllegalTransition` unless the table allows ``current -> to`` (staying put is
    allowed: it only writes fields)."""
    if to != current and not can_move(current, to):
        raise IllegalTransition(current.value, to.value)
