"""The order store: every write to ``bg:order:<client_order_id>`` goes through this module.

Each write is one Lua script (``common/lua/order_*.lua``), so a state move is a
compare-and-set on Redis and every process sees the same order of events. The scripts
carry the transition table, ranks and terminal states generated from
``common/orderstate.py`` and ``common/models.py``: the table has one source.

Hash fields: state, account, broker_order_id, request (Order JSON), deadline_ms, created_ms,
updated_ms, filled_quantity, pending_quantity, average_price, broker_status, error, history
(JSON list of {state, at_ms, source}, plus message on a sweeper redrive); and the sender's
bookkeeping: attempt (fencing token of the delivery that owns the send), claimed_ms, sent_at_ms
(set just before the request leaves), sends; redrives / redriven_ms (the sweeper sent a NEW
order's lost message again); modify_seq (the last modify sequence stamped at enqueue time) and
modify_applied_seq (that of the last modify sent).

The sweeper's index ``bg:orders:active`` holds every non-terminal order, scored by its
deadline (ms); an OPEN order (resting at the broker, which is normal) is re-scored to
``OPEN_RECHECK_S`` later, so the sweeper reconciles a silent one now and then instead of
re-reading it every few seconds.

Who calls what:
- client: :func:`create`
- order worker: :func:`claim`, :func:`mark_sent`, :func:`transition`, :func:`apply_update`,
  :func:`modify_lock` / :func:`modify_done` (modifies of one order one at a time, fenced)
- client: :func:`next_modify_seq` when it enqueues a modify
- postback receiver, order-update sockets, reconciliation: :func:`apply_update`
- everyone: :func:`get`
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

import redis

from common import keys
from common.errors import InvalidOrder
from common.lua import LuaScript, script_text
from common.models import TERMINAL_STATES, Order, OrderState, OrderUpdate
from common.orderstate import RANK, TRANSITIONS

__all__ = [
    "WAKE_STATES",
    "Claim",
    "active_ids",
    "annotate",
    "apply_update",
    "claim",
    "create",
    "forget_index",
    "get",
    "mark_redriven",
    "mark_sent",
    "modify_done",
    "modify_lock",
    "next_modify_seq",
    "recheck_later",
    "transition",
    "unsent_new",
]

# States a waiting handle is woken for: the broker has the order, or the order is settled.
WAKE_STATES = frozenset({OrderState.OPEN}) | TERMINAL_STATES
DONE_TTL_S = 3600  # a wake-up list outlives any handle that may still read it
OPEN_RECHECK_S = 3600  # an OPEN order that hears nothing for this long is reconciled by the sweeper


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
        f"local CHANNEL_PREFIX = {json.dumps(keys.orders_channel(''))}\n"
        f"local DONE_TTL_S = {DONE_TTL_S}\n"
        f"local OPEN_RECHECK_MS = {OPEN_RECHECK_S * 1000}\n"
    )


@cache
def _script(name: str) -> LuaScript:
    return LuaScript(_prelude() + script_text("order_lib") + "\n" + script_text(name))


def _keys(client_order_id: str) -> list[str]:
    return [keys.order(client_order_id), keys.order_done(client_order_id), keys.ORDERS_ACTIVE]


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# --- create / read ------------------------------------------------------------------------------


def create(r: redis.Redis, order: Order, source: str = "client") -> int:
    """Store ``order`` as NEW with its deadline on Redis time; returns the deadline (epoch ms).

    Raises InvalidOrder("client_order_id") when the id is already in use."""
    created, deadline_ms, _now = _script("order_create")(
        r,
        _keys(order.client_order_id),
        [order.account, json.dumps(order.to_dict()), int(order.deadline_s * 1000), source, uuid.uuid4().hex],
    )
    if not int(created):
        raise InvalidOrder("client_order_id", f"{order.client_order_id} is already in use")
    return int(deadline_ms)


_INT_FIELDS = ("deadline_ms", "created_ms", "updated_ms", "filled_quantity", "pending_quantity",
               "claimed_ms", "sent_at_ms", "sends", "modify_seq", "modify_applied_seq", "redrives",
               "redriven_ms")  # fmt: skip


def get(r: redis.Redis, client_order_id: str) -> dict[str, Any] | None:
    """The stored order, decoded (ints as ints, history as a list, request as a dict), or None."""
    raw = r.hgetall(keys.order(client_order_id))
    if not raw:
        return None
    d: dict[str, Any] = {_s(k): _s(v) for k, v in raw.items()}
    for k in _INT_FIELDS:
        if d.get(k, "") != "":
            d[k] = int(d[k])
    d["history"] = json.loads(d.get("history") or "[]")
    d["request"] = json.loads(d.get("request") or "{}")
    d["client_order_id"] = client_order_id
    return d


def recheck_later(r: redis.Redis, client_order_id: str, at_ms: int) -> None:
    """The sweeper looked at a still-OPEN order: due again at ``at_ms`` (only if still indexed)."""
    r.zadd(keys.ORDERS_ACTIVE, {client_order_id: at_ms}, xx=True)


def forget_index(r: redis.Redis, client_order_id: str) -> None:
    """Drop an index entry whose order no longer exists."""
    r.zrem(keys.ORDERS_ACTIVE, client_order_id)


def active_ids(r: redis.Redis, deadline_before_ms: int | None = None) -> list[tuple[str, int]]:
    """Non-terminal orders as (id, deadline_ms), earliest deadline first."""
    hi: float | int = float("inf") if deadline_before_ms is None else deadline_before_ms
    return [(_s(m), int(s)) for m, s in r.zrangebyscore(keys.ORDERS_ACTIVE, "-inf", hi, withscores=True)]


def mark_enqueued(r: redis.Redis, client_order_id: str) -> None:
    """The client's publish of this order succeeded: from now on only a lost message can leave
    it NEW, and the sweeper may redrive it. An order whose publish failed is never redriven: its
    client was told it was not enqueued, and a strategy may place it again under a new id."""
    r.hset(keys.order(client_order_id), "enqueued", "1")


def unsent_new(r: redis.Redis, now_ms: int, created_before_ms: int) -> list[tuple[str, str, str]]:
    """NEW orders that were enqueued, are not past their deadline and were created before
    ``created_before_ms``, as (id, account, redrives): what the sweeper checks for a lost
    message. One round trip for the index and one (pipelined) for the orders."""
    ids = [_s(m) for m in r.zrangebyscore(keys.ORDERS_ACTIVE, f"({now_ms}", "+inf")]
    if not ids:
        return []
    with r.pipeline(transaction=False) as p:
        for coid in ids:
            p.hmget(keys.order(coid), "state", "created_ms", "account", "deadline_ms", "redrives", "enqueued")
        rows = p.execute()
    out: list[tuple[str, str, str]] = []
    for coid, (state, created, acct, deadline, redrives, enqueued) in zip(ids, rows, strict=True):
        if state is None or _s(state) != OrderState.NEW.value or not created or not deadline or not enqueued:
            continue
        if int(_s(created)) < created_before_ms and int(_s(deadline)) > now_ms:
            out.append((coid, _s(acct or ""), _s(redrives or "")))
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
    (not ours any more), ``expired`` (now EXPIRED) or ``late`` (too long after ``slot_us``)."""
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
    whether it moved. Moving to the current state only writes ``fields``."""
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


def annotate(r: redis.Redis, client_order_id: str, fields: dict[str, str | int]) -> bool:
    """Set bookkeeping fields (never ``state``) of an existing order; False when it does not exist."""
    if "state" in fields:
        raise ValueError("the state moves only through transition() or apply_update()")
    done = _script("order_annotate")(r, _keys(client_order_id), [json.dumps({k: str(v) for k, v in fields.items()})])
    return bool(int(done))


_REDRIVE_LUA = """
-- Record a redrive of a NEW order whose message was lost, once per observed redrive count.
-- ARGV[1] the redrives field as the caller saw it ('' = never)   ARGV[2] source   ARGV[3] message
-- Returns 1 when recorded (the caller sends the message again), else 0.
local now = now_ms()
if redis.call('HGET', KEYS[1], 'state') ~= 'NEW' then return 0 end
if (redis.call('HGET', KEYS[1], 'redrives') or '') ~= ARGV[1] then return 0 end
local dl = tonumber(redis.call('HGET', KEYS[1], 'deadline_ms') or '0') or 0
if now >= dl then return 0 end
redis.call('HINCRBY', KEYS[1], 'redrives', 1)
redis.call('HSET', KEYS[1], 'redriven_ms', now, 'updated_ms', now)
local h = redis.call('HGET', KEYS[1], 'history')
local list = {}
if h and h ~= '' then list = cjson.decode(h) end
list[#list + 1] = {state = 'NEW', at_ms = now, source = ARGV[2], message = ARGV[3]}
redis.call('HSET', KEYS[1], 'history', cjson.encode(list))
return 1
"""


@cache
def _redrive_script() -> LuaScript:
    return LuaScript(_prelude() + script_text("order_lib") + "\n" + _REDRIVE_LUA)


def mark_redriven(r: redis.Redis, client_order_id: str, redrives_seen: str, source: str = "sweeper",
                  message: str = "redriven: message lost") -> bool:
    """Before the sweeper sends a NEW order's lost message again: only while the order is still
    NEW, before its deadline and not redriven by someone else since ``redrives_seen`` was read
    (so concurrent sweepers send one copy); counts ``redrives`` and adds a history entry."""
    return bool(int(_redrive_script()(r, _keys(client_order_id), [redrives_seen, source, message])))


# --- modifies: one at a time per order, in the order they were enqueued --------------------------


def _modify_keys(client_order_id: str) -> list[str]:
    return [*_keys(client_order_id), keys.modify_lock(client_order_id)]


def next_modify_seq(r: redis.Redis, client_order_id: str) -> int:
    """Stamp a modify being enqueued: the order's next modify sequence (atomic INCR); 0 when
    the order does not exist."""
    return int(_script("order_modify_seq")(r, _keys(client_order_id), []))


def modify_lock(r: redis.Redis, client_order_id: str, token: str, seq: int, ttl_ms: int) -> tuple[str, int]:
    """Try to take the order's modify lock for modify ``seq`` (see ``order_modify_lock.lua``).
    Returns (verdict, last applied seq): ``locked`` (also when ``token`` already holds it),
    ``busy``, ``stale`` (``seq`` is not newer than the last applied modify: drop it) or ``missing``."""
    v, applied = _script("order_modify_lock")(r, _modify_keys(client_order_id), [token, max(1, ttl_ms), seq])
    return _s(v), int(applied)


def modify_done(r: redis.Redis, client_order_id: str, token: str, seq: int,
                fields: dict[str, str | int] | None = None, *, applied: bool = False) -> bool:
    """Record a modify's outcome (``fields``; with ``applied`` its seq becomes the last applied
    one) and release the lock, only while ``token`` holds it. False: fenced off, nothing written."""
    done = _script("order_modify_done")(
        r, _modify_keys(client_order_id),
        [token, seq, json.dumps({k: str(v) for k, v in (fields or {}).items()}), "1" if applied else "0"])
    return bool(int(done))


# --- pushed and reconciled updates ----------------------------------------------------------------


def apply_update(r: redis.Redis, update: OrderUpdate) -> bool:
    """Apply a broker update if it moves the order forward; True when the order changed.

    Forward means a higher :data:`common.orderstate.RANK`, or OPEN -> OPEN with a larger fill
    or changed fields (never a smaller fill). A late OPEN never undoes a COMPLETE and a replay
    changes nothing. The update is published on ``orders:<account>`` only when it changed the
    order, and handles waiting on the order are woken. An update whose tag brokergate does not
    know is published but not stored."""
    payload = json.dumps(update.to_dict())
    if not update.client_order_id:
        r.publish(keys.orders_channel(update.account), payload)
        return False
    changed, _state, _known = _script("order_apply")(
        r,
        _keys(update.client_order_id),
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
    return bool(int(changed))
