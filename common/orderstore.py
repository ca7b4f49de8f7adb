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

Who calls what:
- client: :func:`create`
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
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import redis
from redis.typing import ZSetScoredMembers

from common import keys
from common.errors import InvalidOrder
from common.lua import LuaScript, script_text
from common.models import Order, OrderUpdate
from common.orderstate import (
    BROKER_STATES,
    OUR_VERDICTS,
    RANK,
    TERMINAL_STATES,
    TRANSITIONS,
    WAKE_STATES,
    OrderState,
    check_move,
)
from common.settings import settings

__all__ = [
    "HISTORY_MAX",
    "WAKE_STATES",
    "Claim",
    "StoredOrder",
    "Unsent",
    "account_order_ids",
    "active_ids",
    "annotate",
    "apply_update",
    "claim",
    "create",
    "forget_index",
    "get",
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
    "unsent",
]

log = logging.getLogger(__name__)

DONE_TTL_S = 3600  # a wake-up list outlives any handle that may still read it
OPEN_RECHECK_S = 3600  # an OPEN order that hears nothing for this long is reconciled by the sweeper
CANCEL_RECHECK_S = 2  # an order whose cancel is pending is looked at by the sweeper this soon
NOT_SENT_CANCEL = "cancelled before it was sent"  # the message of a cancel that never reached the broker
# History entries kept per order: the first and the latest HISTORY_MAX - 1. Enough for a normal
# life (NEW, SENDING, OPEN, a few modifies, the end) and the last fills of a busy one; bounded,
# because an order filled in hundreds of parts would otherwise grow without end.
HISTORY_MAX = 50


def retention_ms() -> int:
    """How long a settled order stays in Redis (``BROKERGATE_ORDER_RETENTION_DAYS``)."""
    return int(settings().order_retention_days * 86_400_000)


def _lua_set(states: frozenset[OrderState] | set[OrderState]) -> str:
    return "{" + ", ".join(f"[{json.dumps(s.value)}] = true" for s in sorted(states)) + "}"


def _prelude() -> str:
    """Lua constants generated from the Python tables, so Lua and Python cannot disagree."""
    transitions = ", ".join(f"[{json.dumps(k.value)}] = {_lua_set(v)}" for k, v in TRANSITIONS.items())
    rank = ", ".join(f"[{json.dumps(k.value)}] = {v}" for k, v in RANK.items())
    return (
        f"local TRANSITIONS = {{{transitions}}}\n"
        f"local RANK = {{{rank}}}\n"
        f"local TERMINAL = {_lua_set(TERMINAL_STATES)}\n"
        f"local WAKE = {_lua_set(WAKE_STATES)}\n"
        f"local OURS = {_lua_set(OUR_VERDICTS)}\n"
        f"local BROKER_SEEN = {_lua_set(BROKER_STATES)}\n"
        f"local CANCEL_RECHECK_MS = {CANCEL_RECHECK_S * 1000}\n"
        f"local NOT_SENT_CANCEL = {json.dumps(NOT_SENT_CANCEL)}\n"
        f"local CHANNEL_PREFIX = {json.dumps(keys.orders_channel(''))}\n"
        f"local DONE_TTL_S = {DONE_TTL_S}\n"
        f"local OPEN_RECHECK_MS = {OPEN_RECHECK_S * 1000}\n"
        f"local HISTORY_MAX = {HISTORY_MAX}\n"
        f"local RETENTION_MS = {retention_ms()}\n"
    )


@cache
def _script(name: str) -> LuaScript:
    return LuaScript(_prelude() + script_text("order_lib") + "\n" + script_text(name))


def _keys(client_order_id: str) -> list[str]:
    return [keys.order(client_order_id), keys.order_done(client_order_id), keys.ORDERS_ACTIVE]


def _create_keys(order: Order) -> list[str]:
    return [*_keys(order.client_order_id), keys.account_orders(order.account)]


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# --- create / read ------------------------------------------------------------------------------


def create(r: redis.Redis, order: Order, source: str = "client") -> int:
    """Store ``order`` as NEW with its deadline on Redis time; returns the deadline (epoch ms).

    Raises InvalidOrder("client_order_id") when the id is already in use."""
    created, deadline_ms, _now = _script("order_create")(
        r,
        _create_keys(order),
        [order.account, json.dumps(order.to_dict()), int(order.deadline_s * 1000), source, uuid.uuid4().hex],
    )
    if not int(created):
        raise InvalidOrder("client_order_id", f"{order.client_order_id} is already in use")
    return int(deadline_ms)


_INT_FIELDS = ("deadline_ms", "created_ms", "updated_ms", "filled_quantity", "pending_quantity",
               "claimed_ms", "sent_at_ms", "sends", "modify_seq", "modify_applied_seq", "redrives",
               "redriven_ms", "cancel_requested_ms", "overturned_ms")  # fmt: skip


def get(r: redis.Redis, client_order_id: str) -> dict[str, Any] | None:
    """The stored order, decoded (ints as ints, history as a list, request as a dict), or None."""
    raw = r.hgetall(keys.order(client_order_id))
    if not raw:
        return None
    d: dict[str, Any] = {_s(k): _s(v) for k, v in raw.items()}
    for k in _INT_FIELDS:
        if d.get(k, "") != "":
            d[k] = int(d[k])
    d["history"] = _history(d)
    d["request"] = json.loads(d.get("request") or "{}")
    d["client_order_id"] = client_order_id
    return d


def _history(d: dict[str, Any]) -> list[dict[str, Any]]:
    """The history as one list, oldest first, taking its fields out of ``d``: a list stored whole
    before the cap (``history``, no longer written), then the numbered entries in push order."""
    entries = sorted((int(k.partition(":")[2]), d.pop(k)) for k in [k for k in d if k.startswith("history:")])
    d.pop("history_n", None)
    return [*json.loads(d.get("history") or "[]"), *(json.loads(v) for _, v in entries)]


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """``bg:order:<id>`` read as a typed record (what the workers decide on). Times are Redis
    epoch ms; 0 means "not yet" (``sent_at_ms`` 0: nothing is in flight)."""

    client_order_id: str
    state: OrderState
    account: str
    request: dict[str, Any]
    deadline_ms: int
    broker_order_id: str = ""
    filled_quantity: int = 0
    pending_quantity: int = 0
    average_price: str = ""
    broker_status: str = ""
    error: str = ""
    attempt: str = ""
    claimed_ms: int = 0
    sent_at_ms: int = 0
    sends: int = 0
    cancel_requested_ms: int = 0
    modify_seq: int = 0
    modify_applied_seq: int = 0
    enqueued: bool = False
    redrives: int = 0
    overturned_from: str = ""
    created_ms: int = 0
    updated_ms: int = 0

    @property
    def order(self) -> Order:
        return Order.from_dict(self.request)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @classmethod
    def from_hash(cls, client_order_id: str, h: dict[str, str]) -> StoredOrder:
        def i(name: str) -> int:
            v = h.get(name, "")
            return int(v) if v not in ("", None) else 0

        return cls(
            client_order_id=client_order_id, state=OrderState(h["state"]), account=h.get("account", ""),
            request=json.loads(h.get("request") or "{}"), deadline_ms=i("deadline_ms"),
            broker_order_id=h.get("broker_order_id", ""), filled_quantity=i("filled_quantity"),
            pending_quantity=i("pending_quantity"), average_price=h.get("average_price", ""),
            broker_status=h.get("broker_status", ""), error=h.get("error", ""), attempt=h.get("attempt", ""),
            claimed_ms=i("claimed_ms"), sent_at_ms=i("sent_at_ms"), sends=i("sends"),
            cancel_requested_ms=i("cancel_requested_ms"), modify_seq=i("modify_seq"),
            modify_applied_seq=i("modify_applied_seq"), enqueued=bool(h.get("enqueued")), redrives=i("redrives"),
            overturned_from=h.get("overturned_from", ""), created_ms=i("created_ms"), updated_ms=i("updated_ms"),
        )


def read(r: redis.Redis, client_order_id: str) -> StoredOrder | None:
    """The stored order as a :class:`StoredOrder`, or None."""
    raw = r.hgetall(keys.order(client_order_id))
    if not raw:
        return None
    return StoredOrder.from_hash(client_order_id, {_s(k): _s(v) for k, v in raw.items()})


def recheck_later(r: redis.Redis, client_order_id: str, at_ms: int) -> None:
    """The sweeper looked at a still-OPEN order: due again at ``at_ms`` (only if still indexed)."""
    r.zadd(keys.ORDERS_ACTIVE, {client_order_id: at_ms}, xx=True)


def forget_index(r: redis.Redis, client_order_id: str) -> None:
    """Drop an index entry whose order no longer exists."""
    r.zrem(keys.ORDERS_ACTIVE, client_order_id)


def active_ids(r: redis.Redis, deadline_before_ms: int | None = None) -> list[tuple[str, int]]:
    """Non-terminal orders as (id, deadline_ms), earliest deadline first."""
    hi: float | int = float("inf") if deadline_before_ms is None else deadline_before_ms
    # withscores=True answers (member, score) pairs; redis-py's return type cannot say so.
    rows = cast(ZSetScoredMembers, r.zrangebyscore(keys.ORDERS_ACTIVE, "-inf", hi, withscores=True))
    return [(_s(m), int(s)) for m, s in rows]


def account_order_ids(r: redis.Redis, account: str, since_ms: int | None = None) -> list[str]:
    """The account's orders created at or after ``since_ms`` (all kept, when None), newest first.
    An id whose order has expired is dropped from the index as it is found."""
    lo: str | int = "-inf" if since_ms is None else since_ms
    ids = [_s(m) for m in r.zrevrangebyscore(keys.account_orders(account), "+inf", lo)]
    if not ids:
        return []
    with r.pipeline(transaction=False) as p:
        for coid in ids:
            p.exists(keys.order(coid))
        there = p.execute()
    gone = [coid for coid, e in zip(ids, there, strict=True) if not e]
    if gone:
        r.zrem(keys.account_orders(account), *gone)
    return [coid for coid, e in zip(ids, there, strict=True) if e]


def trim_account_index(r: redis.Redis, account: str, now_ms: int) -> int:
    """Drop index entries of orders created longer ago than the retention (done by every create
    too; this is for an account that stopped placing orders). Returns how many went."""
    return int(r.zremrangebyscore(keys.account_orders(account), "-inf", f"({now_ms - retention_ms()}"))


def stale_ids(r: redis.Redis, account: str, created_before_ms: int) -> list[str]:
    """The account's non-terminal orders created before ``created_before_ms``: every one is in the
    sweeper's index (which, unlike the account's, is never trimmed). One pipelined round trip."""
    ids = [_s(m) for m in r.zrange(keys.ORDERS_ACTIVE, 0, -1)]
    if not ids:
        return []
    with r.pipeline(transaction=False) as p:
        for coid in ids:
            p.hmget(keys.order(coid), "account", "created_ms")
        rows = p.execute()
    return [coid for coid, (acct, created) in zip(ids, rows, strict=True)
            if acct is not None and _s(acct) == account and int(_s(created or "0") or 0) < created_before_ms]


def mark_enqueued(r: redis.Redis, client_order_id: str) -> None:
    """The client's publish of this order succeeded: from now on only a lost message can leave
    it NEW, and the sweeper may redrive it. An order whose publish failed is never redriven: its
    client was told it was not enqueued, and a strategy may place it again under a new id."""
    r.hset(keys.order(client_order_id), "enqueued", "1")


@dataclass(frozen=True, slots=True)
class Unsent:
    """An order the sweeper may have to send again (see :func:`unsent`)."""

    client_order_id: str
    state: OrderState  # NEW, or SENDING with nothing sent
    account: str
    created_ms: int
    claimed_ms: int
    claimed_by: str
    attempt: str
    redrives: str  # as stored ('' = never): the compare-and-set value of mark_redriven
    enqueued: bool


def unsent(r: redis.Redis, now_ms: int) -> list[Unsent]:
    """Orders not yet sent and not past their deadline: NEW, or claimed (SENDING) with nothing
    sent. What the sweeper checks for a lost message or a dead claimer. One round trip for the
    index and one (pipelined) for the orders."""
    ids = [_s(m) for m in r.zrangebyscore(keys.ORDERS_ACTIVE, f"({now_ms}", "+inf")]
    if not ids:
        return []
    fields = ("state", "created_ms", "account", "deadline_ms", "redrives", "enqueued", "sent_at_ms",
              "claimed_ms", "claimed_by", "attempt", "cancel_requested_ms")
    with r.pipeline(transaction=False) as p:
        for coid in ids:
            p.hmget(keys.order(coid), *fields)
        rows = p.execute()
    out: list[Unsent] = []
    for coid, row in zip(ids, rows, strict=True):
        f = dict(zip(fields, (_s(v) if v is not None else "" for v in row), strict=True))
        if f["state"] not in (OrderState.NEW.value, OrderState.SENDING.value) or f["sent_at_ms"]:
            continue
        if not f["deadline_ms"] or int(f["deadline_ms"]) <= now_ms or f["cancel_requested_ms"]:
            continue
        out.append(Unsent(coid, OrderState(f["state"]), f["account"], int(f["created_ms"] or 0),
                          int(f["claimed_ms"] or 0), f["claimed_by"], f["attempt"], f["redrives"],
                          bool(f["enqueued"])))
    return out


# --- the worker's moves -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """What :func:`claim` found (see ``order_claim.lua``)."""

    verdict: str  # claimed, expired, reconcile, done, missing
    state: str
    sent_at_ms: int
    deadline_ms: int
    now_ms: int


def claim(r: redis.Redis, client_order_id: str, attempt: str, source: str = "worker") -> Claim:
    """Take the order for sending (NEW -> SENDING), atomically; see :class:`Claim`."""
    v, state, sent_at, deadline, now = _script("order_claim")(r, _keys(client_order_id), [attempt, source])
    return Claim(_s(v), _s(state), int(sent_at), int(deadline), int(now))


def mark_sent(r: redis.Redis, client_order_id: str, attempt: str, source: str = "worker", *,
              slot_us: int = 0, late_tolerance_us: int = 0) -> tuple[str, int]:
    """Record that the request leaves now. Returns (verdict, Redis time in us): ``ok``, ``lost``
    (not ours any more), ``expired`` (now EXPIRED), ``cancelled`` (a cancel was requested: now
    CANCELLED) or ``late`` (too long after ``slot_us``)."""
    v, _deadline, _now_ms, now_us = _script("order_mark_sent")(
        r, _keys(client_order_id), [attempt, source, slot_us, late_tolerance_us])
    return _s(v), int(now_us)


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
    moved, _state = _script("order_transition")(
        r,
        _keys(client_order_id),
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
    v, state = _script("order_request_cancel")(r, _keys(client_order_id), [source])
    return _s(v), _s(state)


def annotate(r: redis.Redis, client_order_id: str, fields: dict[str, str | int]) -> bool:
    """Set bookkeeping fields (never ``state``) of an existing order; False when it does not exist."""
    if "state" in fields:
        raise ValueError("the state moves only through transition() or apply_update()")
    done = _script("order_annotate")(r, _keys(client_order_id), [json.dumps({k: str(v) for k, v in fields.items()})])
    return bool(int(done))


def mark_redriven(r: redis.Redis, client_order_id: str, redrives_seen: str, source: str = "sweeper",
                  message: str = "redriven: message lost", *, dead_attempt: str = "") -> bool:
    """Before the sweeper sends an unsent order's message again (``order_redrive.lua``): only while
    it is still NEW (or, with ``dead_attempt``, still claimed by that attempt and unsent), before
    its deadline, with no cancel requested, and not redriven by someone else since
    ``redrives_seen`` was read (so concurrent sweepers send one copy); counts ``redrives`` and
    adds a history entry."""
    return bool(int(_script("order_redrive")(r, _keys(client_order_id),
                                             [redrives_seen, source, message, dead_attempt])))


# --- modifies: one at a time per order, in the order they were enqueued --------------------------


def _modify_keys(client_order_id: str) -> list[str]:
    return [*_keys(client_order_id), keys.modify_lock(client_order_id)]


def next_modify_seq(r: redis.Redis, client_order_id: str, changes: dict[str, Any] | None = None,
                    message_id: str = "") -> int:
    """Stamp a modify being enqueued: the order's next modify sequence (atomic INCR); 0 when
    the order does not exist. ``changes`` (the modify's changed fields, JSON-able) are recorded
    under that seq in the same step, so a worker running a later seq first can send them too
    (:func:`modify_changes`). ``message_id``: the message of a modify enqueued by name without a
    seq; a redelivery of that message gets the seq it got the first time."""
    return int(_script("order_modify_seq")(
        r, _keys(client_order_id), [json.dumps(changes) if changes is not None else "", message_id]))


def modify_changes(r: redis.Redis, client_order_id: str, seq: int, own: dict[str, Any]) -> dict[str, Any]:
    """What modify ``seq`` sends, as changes onto the stored request: the recorded changes of
    every seq after the last applied one up to ``seq``, composed in seq order (a later seq's
    value wins), with ``own`` standing in for ``seq``'s when it has none recorded (a message
    from an older client). Read while holding the order's modify lock: only its holder moves
    the request and the applied seq."""
    key = keys.order(client_order_id)
    applied = int(_s(r.hget(key, "modify_applied_seq") or 0) or 0)
    seqs = list(range(applied + 1, seq + 1))
    recorded = r.hmget(key, [f"modify_changes:{s}" for s in seqs]) if seqs else []
    merged: dict[str, Any] = {}
    for s, raw in zip(seqs, recorded, strict=True):
        if raw is not None:
            merged.update(json.loads(_s(raw)))
        elif s == seq:
            merged.update(own)
    return merged


def modify_lock(r: redis.Redis, client_order_id: str, token: str, seq: int, ttl_ms: int) -> tuple[str, int]:
    """Try to take the order's modify lock for modify ``seq`` (see ``order_modify_lock.lua``).
    Returns (verdict, last applied seq): ``locked`` (also when ``token`` already holds it),
    ``busy``, ``stale`` (``seq`` is not newer than the last applied modify: drop it) or ``missing``."""
    v, applied = _script("order_modify_lock")(r, _modify_keys(client_order_id), [token, max(1, ttl_ms), seq])
    return _s(v), int(applied)


def modify_done(r: redis.Redis, client_order_id: str, token: str, seq: int,
                fields: dict[str, str | int] | None = None, *, applied: bool = False) -> bool:
    """Record a modify's outcome (``fields``; with ``applied`` its seq becomes the last applied
    one and the recorded changes up to it are cleaned up; without, its own recorded changes are
    discarded) and release the lock, only while ``token`` holds it. False: fenced off, nothing
    written."""
    done = _script("order_modify_done")(
        r, _modify_keys(client_order_id),
        [token, seq, json.dumps({k: str(v) for k, v in (fields or {}).items()}), "1" if applied else "0"])
    return bool(int(done))


def modify_discard(r: redis.Redis, client_order_id: str, seq: int) -> None:
    """Forget the recorded changes of modify ``seq``, which never took the lock (it expired
    waiting): it did not happen, so no later modify may carry it. An applied seq is left alone."""
    _script("order_modify_done")(r, _modify_keys(client_order_id), ["", seq, "{}", "discard"])


# --- pushed and reconciled updates ----------------------------------------------------------------


def apply_update(r: redis.Redis, update: OrderUpdate) -> bool:
    """Apply a broker update if it moves the order forward; True when the order changed.

    Forward means a higher :data:`common.orderstate.RANK`, or OPEN -> OPEN with a larger fill
    or changed fields (never a smaller fill). A late OPEN never undoes a COMPLETE and a replay
    changes nothing. The update is published on ``orders:<account>`` only when it changed the
    order, and handles waiting on the order are woken. An update whose tag brokergate does not
    know is published but not stored. A broker sighting overturns our own verdict that the order
    is not at the broker (FAILED, EXPIRED, cancelled before it was sent): it is applied,
    published, logged as an alarm and counted (``verdict_overturned``, shown by ``status``)."""
    payload = json.dumps(update.to_dict())
    if not update.client_order_id:
        r.publish(keys.orders_channel(update.account), payload)
        return False
    changed, state, _known, overturned = _script("order_apply")(
        r,
        [*_keys(update.client_order_id), keys.stats(update.account)],
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
        ],
    )
    if overturned:
        log.error("ALARM: order %s of %s was %s by our own verdict, but the broker (%s) reports it %s: "
                  "now %s; check the account's positions", update.client_order_id, update.account,
                  _s(overturned), update.source, update.state.value, _s(state))
    return bool(int(changed))
