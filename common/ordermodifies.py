"""Modifies of an order: one at a time per order, in the order they were enqueued (a sequence
stamped at enqueue time, a fenced lock per order, the changes recorded under each sequence)."""

from __future__ import annotations

import json
from typing import Any

import redis

from common import keys
from common.orderscripts import order_keys, script, text

__all__ = ["modify_changes", "modify_discard", "modify_done", "modify_lock", "next_modify_seq"]


def _modify_keys(client_order_id: str) -> list[str]:
    return [*order_keys(client_order_id), keys.modify_lock(client_order_id)]


def next_modify_seq(r: redis.Redis, client_order_id: str, changes: dict[str, Any] | None = None,
                    message_id: str = "") -> int:
    """Stamp a modify being enqueued: the order's next modify sequence (atomic INCR); 0 when
    the order does not exist. ``changes`` (the modify's changed fields, JSON-able) are recorded
    under that seq in the same step, so a worker running a later seq first can send them too
    (:func:`modify_changes`). ``message_id``: the message of a modify enqueued by name without a
    seq; a redelivery of that message gets the seq it got the first time."""
    return int(script("order_modify_seq")(
        r, order_keys(client_order_id), [json.dumps(changes) if changes is not None else "", message_id]))


def modify_changes(r: redis.Redis, client_order_id: str, seq: int, own: dict[str, Any]) -> dict[str, Any]:
    """What modify ``seq`` sends, as changes onto the stored request: the recorded changes of
    every seq after the last applied one up to ``seq``, composed in seq order (a later seq's
    value wins), with ``own`` standing in for ``seq``'s when it has none recorded (a message
    from an older client). Read while holding the order's modify lock: only its holder moves
    the request and the applied seq."""
    key = keys.order(client_order_id)
    applied = int(text(r.hget(key, "modify_applied_seq") or 0) or 0)
    seqs = list(range(applied + 1, seq + 1))
    recorded = r.hmget(key, [f"modify_changes:{s}" for s in seqs]) if seqs else []
    merged: dict[str, Any] = {}
    for s, raw in zip(seqs, recorded, strict=True):
        if raw is not None:
            merged.update(json.loads(text(raw)))
        elif s == seq:
            merged.update(own)
    return merged


def modify_lock(r: redis.Redis, client_order_id: str, token: str, seq: int, ttl_ms: int) -> tuple[str, int]:
    """Try to take the order's modify lock for modify ``seq`` (see ``order_modify_lock.lua``).
    Returns (verdict, last applied seq): ``locked`` (also when ``token`` already holds it),
    ``busy``, ``stale`` (``seq`` is not newer than the last applied modify: drop it) or ``missing``."""
    v, applied = script("order_modify_lock")(r, _modify_keys(client_order_id), [token, max(1, ttl_ms), seq])
    return text(v), int(applied)


def modify_done(r: redis.Redis, client_order_id: str, token: str, seq: int,
                fields: dict[str, str | int] | None = None, *, applied: bool = False) -> bool:
    """Record a modify's outcome (``fields``; with ``applied`` its seq becomes the last applied
    one and the recorded changes up to it are cleaned up; without, its own recorded changes are
    discarded) and release the lock, only while ``token`` holds it. False: fenced off, nothing
    written."""
    done = script("order_modify_done")(
        r, _modify_keys(client_order_id),
        [token, seq, json.dumps({k: str(v) for k, v in (fields or {}).items()}), "1" if applied else "0"])
    return bool(int(done))


def modify_discard(r: redis.Redis, client_order_id: str, seq: int) -> None:
    """Forget the recorded changes of modify ``seq``, which never took the lock (it expired
    waiting): it did not happen, so no later modify may carry it. An applied seq is left alone."""
    script("order_modify_done")(r, _modify_keys(client_order_id), ["", seq, "{}", "discard"])
