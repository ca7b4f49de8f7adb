"""The order store: every write to ``bg:order:<client_order_id>`` goes through this module.

Each write is one Lua script (``common/lua/order_*.lua``), so a state move is a
compare-and-set on Redis and every process sees the same order of events. The scripts
carry the transition table, ranks and terminal states generated from
``common/orderstate.py``: the table has one source.

Hash fields: state, account, broker_order_id, request (Order JSON), deadline_ms, created_ms,
updated_ms, filled_quantity, pending_quantity, average_price, broker_status, error, history
(entries {state, at_ms, source}, plus message on a sweeper redrive, one field ``history:<n>`` each,
capped at :data:`HISTORY_MAX`; read as one list by :func:`get`); and the sender's
bookkeeping: attempt (fencing token of the delivery that owns the send), claimed_ms, sent_at_ms
(set just before the request leaves), sends; redrives / redriven_ms (the sweeper sent a NEW
order's lost message again); modify_seq (the last modify sequence stamped at enqueue time) and
modify_applied_seq (that of the last modify sent).

The sweeper's index ``bg:orders:active`` holds every non-terminal order, scored by its
deadline (ms); an OPEN order (resting at the broker, which is normal) is re-scored to
``OPEN_RECHECK_S`` later, so the sweeper reconciles a silent one now and then instead of
re-reading it every few seconds.

Bounded: a settled order expires :func:`retention_ms` after it settled (set by the script that
settles it), and ``bg:orders:account:<account>`` lists an account's orders by creation time
(:func:`account_order_ids`) until then; a broker sighting that revives a settled order removes its
expiry again. OPEN orders whose last update was missed are settled at the account's next daily
login (``workers/sweeper.py``: :func:`stale_ids`).

Split by concept, every name re-exported here (callers import ``common.orderstore`` alone): the
moves are this module; the reads and the indexes :mod:`common.orderrecords`; modifies
:mod:`common.ordermodifies`; the scripts' generated prelude, keys and timings :mod:`common.orderscripts`.

Who calls what:
- client: :func:`create` (a group's children: :func:`create_many`, one round trip)
- cancel: :func:`request_cancel` (durable; every later send honours it)
- order worker: :func:`claim`, :func:`mark_sent`, :func:`transition`, :func:`apply_update`,
  :func:`modify_lock` / :func:`modify_done` (modifies of one order one at a time, fenced)
- client: :func:`next_modify_seq` when it enqueues a modify
- postback receiver, order-update sockets, reconciliation: :func:`apply_update`
- everyone: :func:`get`
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis

from common import accountstate, keys
from common.errors import InvalidOrder
from common.models import Order, OrderUpdate
from common.ordermodifies import modify_changes, modify_discard, modify_done, modify_lock, next_modify_seq
from common.orderrecords import (
    StoredOrder,
    Unsent,
    account_order_ids,
    account_orders,
    active_ids,
    forget_index,
    get,
    get_many,
    mark_enqueued,
    read,
    recheck_later,
    stale_ids,
    trim_account_index,
    unsent,
)
from common.orderscripts import (
    CANCEL_RECHECK_S,
    DONE_TTL_S,
    HISTORY_MAX,
    NOT_SENT_CANCEL,
    OPEN_RECHECK_S,
    create_keys,
    order_keys,
    retention_ms,
    script,
    text,
)
from common.orderscripts import create_keys as _create_keys  # noqa: F401  (tests reach for these three)
from common.orderscripts import prelude as _prelude  # noqa: F401
from common.orderscripts import script as _script  # noqa: F401
from common.orderstate import TERMINAL_STATES, WAKE_STATES, OrderState, check_move

__all__ = [
    "CANCEL_RECHECK_S",
    "DONE_TTL_S",
    "HISTORY_MAX",
    "NOT_SENT_CANCEL",
    "OPEN_RECHECK_S",
    "TERMINAL_STATES",
    "WAKE_STATES",
    "Applied",
    "Claim",
    "StoredOrder",
    "Unsent",
    "account_order_ids",
    "account_orders",
    "active_ids",
    "annotate",
    "apply",
    "apply_update",
    "claim",
    "create",
    "create_many",
    "forget_index",
    "get",
    "get_many",
    "mark_enqueued",
    "mark_redriven",
    "mark_sent",
    "modify_changes",
    "modify_discard",
    "modify_done",
    "modify_lock",
    "next_modify_seq",
    "read",
    "recheck_later",
    "request_cancel",
    "retention_ms",
    "stale_ids",
    "transition",
    "trim_account_index",
    "unsent",
]

log = logging.getLogger(__name__)

# --- create ------------------------------------------------------------------------------------


def create(r: redis.Redis, order: Order, source: str = "client") -> int:
    """Store ``order`` as NEW with its deadline on Redis time; returns the deadline (epoch ms).

    Raises InvalidOrder("client_order_id") when the id is already in use."""
    created, deadline_ms, _now = script("order_create")(r, create_keys(order), _create_args(order, source))
    if not int(created):
        raise InvalidOrder("client_order_id", f"{order.client_order_id} is already in use")
    return int(deadline_ms)


def _create_args(order: Order, source: str) -> list[str | int]:
    return [order.account, json.dumps(order.to_dict()), int(order.deadline_s * 1000), source, uuid.uuid4().hex]


def create_many(r: redis.Redis, orders: Sequence[Order], source: str = "client") -> list[int | Exception]:
    """:func:`create` of each order in one round trip (a pipeline of the same script, each create
    atomic and idempotent on its own exactly as alone): per order its deadline (epoch ms), or the
    error that refused it (InvalidOrder for an id in use) while the others are stored."""
    replies = script("order_create").batch(r, [(create_keys(o), _create_args(o, source)) for o in orders])
    out: list[int | Exception] = []
    for o, reply in zip(orders, replies, strict=True):
        if isinstance(reply, Exception):
            out.append(reply)
        elif not int(reply[0]):
            out.append(InvalidOrder("client_order_id", f"{o.client_order_id} is already in use"))
        else:
            out.append(int(reply[1]))
    return out


# --- the worker's moves -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """What :func:`claim` found (see ``order_claim.lua``)."""

    verdict: str  # claimed, expired, reconcile, done, halted, missing
    state: str
    sent_at_ms: int
    deadline_ms: int
    now_ms: int
    risk_reply: list[Any] | None = None  # the risk read's reply, when asked for and claimed


def claim(r: redis.Redis, client_order_id: str, attempt: str, source: str = "worker", *, account: str = "",
          reduce_only: bool = False, risk_read: tuple[list[str], list[Any]] | None = None) -> Claim:
    """Take the order for sending (NEW -> SENDING), atomically; see :class:`Claim`. An entry of a
    halted ``account`` is settled REJECTED instead (verdict ``halted``). ``risk_read``: the keys
    and arguments of the pre-trade risk read (``common.risk.read_query``), made in the same script
    when the claim is taken (``Claim.risk_reply``), so the worker's check costs no round trip."""
    extra_keys, extra_args = risk_read or ([], [])
    v, state, sent_at, deadline, now, *got = script("order_claim")(
        r, [*order_keys(client_order_id), keys.halt(account), keys.HALT_ALL, *extra_keys],
        [attempt, source, "1" if reduce_only else "", *extra_args])
    return Claim(text(v), text(state), int(sent_at), int(deadline), int(now), got[0] if got else None)


def mark_sent(r: redis.Redis, client_order_id: str, attempt: str, source: str = "worker", *,
              slot_us: int = 0, late_tolerance_us: int = 0, account: str = "",
              reduce_only: bool = False) -> tuple[str, int]:
    """Record that the request leaves now. Returns (verdict, Redis time in us): ``ok``, ``lost``
    (not ours any more), ``expired`` (now EXPIRED), ``cancelled`` (a cancel was requested: now
    CANCELLED), ``halted`` (``account`` is halted and the order is no exit: now REJECTED) or
    ``late`` (too long after ``slot_us``)."""
    v, _deadline, _now_ms, now_us = script("order_mark_sent")(
        r, [*order_keys(client_order_id), keys.halt(account), keys.HALT_ALL],
        [attempt, source, slot_us, late_tolerance_us, "1" if reduce_only else ""])
    return text(v), int(now_us)


def transition(
    r: redis.Redis,
    client_order_id: str,
    to: OrderState,
    *,
    allowed_from: set[OrderState] | frozenset[OrderState] | None = None,
    cas: tuple[str, str] | None = None,
    fields: dict[str, str | int] | None = None,
    source: str = "worker",
    message: str = "",
) -> bool:
    """Move the order to ``to`` if the table allows it from its current state (and, when given,
    the current state is in ``allowed_from`` and field ``cas[0]`` holds ``cas[1]``). Returns
    whether it moved: False is a lost compare-and-set (someone moved the order first), never an
    error. Moving to the current state only writes ``fields``.

    Raises :class:`~common.errors.IllegalTransition`, before anything is written, when
    ``allowed_from`` names a state the table never moves to ``to`` from: a bug in the caller."""
    for current in allowed_from or ():
        check_move(current, to)
    cas_field, cas_value = cas or ("", "")
    moved, _state = script("order_transition")(
        r,
        order_keys(client_order_id),
        [
            to.value,
            " ".join(s.value for s in allowed_from) if allowed_from else "",
            cas_field,
            cas_value,
            json.dumps({k: str(v) for k, v in (fields or {}).items()}),
            source,
            message,
        ],
    )
    return bool(int(moved))


def request_cancel(r: redis.Redis, client_order_id: str, source: str = "cancel") -> tuple[str, str]:
    """Ask for the order to be cancelled, durably (see ``order_request_cancel.lua``). Returns
    (verdict, state): ``cancelled`` (never sent, now CANCELLED), ``requested`` (it may be at the
    broker: the mark is set, and no send, resend or redrive will place it from now on),
    ``done`` (already terminal) or ``missing``."""
    v, state = script("order_request_cancel")(r, order_keys(client_order_id), [source])
    return text(v), text(state)


def annotate(r: redis.Redis, client_order_id: str, fields: dict[str, str | int]) -> bool:
    """Set bookkeeping fields (never ``state``) of an existing order; False when it does not exist."""
    if "state" in fields:
        raise ValueError("the state moves only through transition() or apply_update()")
    done = script("order_annotate")(r, order_keys(client_order_id), [json.dumps({k: str(v) for k, v in fields.items()})])
    return bool(int(done))


def mark_redriven(r: redis.Redis, client_order_id: str, redrives_seen: str, source: str = "sweeper",
                  message: str = "redriven: message lost", *, dead_attempt: str = "") -> bool:
    """Before the sweeper sends an unsent order's message again (``order_redrive.lua``): only while
    it is still NEW (or, with ``dead_attempt``, still claimed by that attempt and unsent), before
    its deadline, with no cancel requested, and not redriven by someone else since
    ``redrives_seen`` was read (so concurrent sweepers send one copy); counts ``redrives`` and
    adds a history entry."""
    return bool(int(script("order_redrive")(r, order_keys(client_order_id),
                                             [redrives_seen, source, message, dead_attempt])))


# --- pushed and reconciled updates ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Applied:
    """What :func:`apply` did: whether the order changed, its state after (None: not stored),
    and whether a cancel is pending on it (so the worker that just placed it cancels it there)."""

    changed: bool
    state: OrderState | None
    cancel_pending: bool


def apply_update(r: redis.Redis, update: OrderUpdate) -> bool:
    """Apply a broker update if it moves the order forward; True when the order changed (see
    :func:`apply`)."""
    return apply(r, update).changed


def apply(r: redis.Redis, update: OrderUpdate, count: str = "") -> Applied:
    """Apply a broker update if it moves the order forward, in one round trip.

    Forward means a higher :data:`common.orderstate.RANK`, or OPEN -> OPEN with a larger fill
    or changed fields (never a smaller fill). A late OPEN never undoes a COMPLETE and a replay
    changes nothing. The update is published on ``orders:<account>`` only when it changed the
    order, and handles waiting on the order are woken. An update whose tag brokergate does not
    know is published but not stored. A broker sighting overturns our own verdict that the order
    is not at the broker (FAILED, EXPIRED, cancelled before it was sent): it is applied,
    published, logged as an alarm and counted (``verdict_overturned``, shown by ``status``).
    ``count``: a counter of the account's stats to add 1 to in the same round trip, whatever the
    update did (the placing worker's ``placed``)."""
    payload = json.dumps(update.to_dict())
    if not update.client_order_id:
        r.publish(keys.orders_channel(update.account), payload)
        return Applied(False, None, False)
    changed, state, _known, overturned, cancel_pending, *grew = script("order_apply")(
        r,
        [*order_keys(update.client_order_id), keys.stats(update.account)],
        [
            update.state.value,
            update.broker_order_id,
            int(update.filled_quantity),
            "" if update.average_price is None else str(update.average_price),
            update.broker_status,
            update.message,
            update.source,
            payload,
            update.account,
            int(update.pending_quantity),
            update.exchange_ts,
            count,
        ],
    )
    if overturned:
        log.error("ALARM: order %s of %s was %s by our own verdict, but the broker (%s) reports it %s: "
                  "now %s; check the account's positions", update.client_order_id, update.account,
                  text(overturned), update.source, update.state.value, text(state))
    if grew:
        _fill_to_account_state(r, update, int(grew[0]), text(grew[1]), text(grew[2]))
    state = text(state)
    return Applied(bool(int(changed)), OrderState(state) if state else None, bool(text(cancel_pending)))


def _fill_to_account_state(r: redis.Redis, update: OrderUpdate, filled_before: int, average_before: str,
                           request: str) -> None:
    """The fill this update added moves the account's position and trade book at once
    (``common/accountstate.py``). Its price: what the new average says the added quantity cost.
    Never fails the update: a position left behind is corrected by the next read of the book."""
    try:
        added = update.filled_quantity - filled_before
        new_avg = update.average_price
        if added <= 0 or new_avg is None or not request:
            return
        old_value = Decimal(average_before or "0") * filled_before
        price = (new_avg * update.filled_quantity - old_value) / added
        accountstate.apply_fill_soon(update.account, json.loads(request), quantity=added, price=price,
                                     broker_order_id=update.broker_order_id, client_order_id=update.client_order_id,
                                     filled_total=update.filled_quantity)
    except Exception:  # the order's own update is what matters here; positions self-correct
        log.exception("account state: fill of %s not applied to positions", update.client_order_id)
