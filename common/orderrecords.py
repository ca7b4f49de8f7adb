"""Reading ``bg:order:<client_order_id>`` and the order indexes: the stored order as a dict
(:func:`get`) or a typed record (:func:`read`, :class:`StoredOrder`), the sweeper's index of live
orders, each account's index, and what the sweeper checks for lost messages (:func:`unsent`).
Writes of state go through :mod:`common.orderstore`; these only read, or tidy an index.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, cast

import redis
from redis.typing import ZSetScoredMembers

from common import keys
from common.models import Order
from common.orderscripts import retention_ms, text
from common.orderstate import TERMINAL_STATES, OrderState

__all__ = [
    "StoredOrder",
    "Unsent",
    "account_order_ids",
    "account_orders",
    "active_ids",
    "forget_index",
    "get",
    "get_many",
    "mark_enqueued",
    "read",
    "recheck_later",
    "stale_ids",
    "trim_account_index",
    "unsent",
]


_INT_FIELDS = ("deadline_ms", "created_ms", "updated_ms", "filled_quantity", "pending_quantity",
               "claimed_ms", "sent_at_ms", "sends", "modify_seq", "modify_applied_seq", "redrives",
               "redriven_ms", "cancel_requested_ms", "overturned_ms")  # fmt: skip


def get(r: redis.Redis, client_order_id: str) -> dict[str, Any] | None:
    """The stored order, decoded (ints as ints, history as a list, request as a dict), or None."""
    return _decoded(client_order_id, r.hgetall(keys.order(client_order_id)))


def get_many(r: redis.Redis, client_order_ids: Sequence[str]) -> list[dict[str, Any] | None]:
    """:func:`get` of each order, in one round trip."""
    with r.pipeline(transaction=False) as p:
        for coid in client_order_ids:
            p.hgetall(keys.order(coid))
        raws = p.execute()
    return [_decoded(coid, raw) for coid, raw in zip(client_order_ids, raws, strict=True)]


def _decoded(client_order_id: str, raw: dict[Any, Any]) -> dict[str, Any] | None:
    if not raw:
        return None
    d: dict[str, Any] = {text(k): text(v) for k, v in raw.items()}
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
        # Each field by its declared type: a missing int is 0, a missing text "".
        kw: dict[str, Any] = {}
        for f in fields(cls):
            v = h.get(f.name, "")
            kw[f.name] = (int(v) if v else 0) if f.type == "int" else (bool(v) if f.type == "bool" else v)
        return cls(**{**kw, "client_order_id": client_order_id, "state": OrderState(h["state"]),
                      "request": json.loads(h.get("request") or "{}")})


def read(r: redis.Redis, client_order_id: str) -> StoredOrder | None:
    """The stored order as a :class:`StoredOrder`, or None."""
    raw = r.hgetall(keys.order(client_order_id))
    if not raw:
        return None
    return StoredOrder.from_hash(client_order_id, {text(k): text(v) for k, v in raw.items()})


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
    return [(text(m), int(s)) for m, s in rows]


def account_order_ids(r: redis.Redis, account: str, since_ms: int | None = None) -> list[str]:
    """The account's orders created at or after ``since_ms`` (all kept, when None), newest first.
    An id whose order has expired is dropped from the index as it is found."""
    lo: str | int = "-inf" if since_ms is None else since_ms
    ids = [text(m) for m in r.zrevrangebyscore(keys.account_orders(account), "+inf", lo)]
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


def account_orders(r: redis.Redis, account: str, since_ms: int | None = None, *,
                   open_only: bool = False) -> list[dict[str, Any]]:
    """:func:`get` of the account's orders of :func:`account_order_ids`, in one round trip (one may
    expire between the index and the read: left out); ``open_only``: those not settled yet."""
    found = [g for g in get_many(r, account_order_ids(r, account, since_ms)) if g is not None]
    return [g for g in found if not open_only or OrderState(g["state"]) not in TERMINAL_STATES]


def trim_account_index(r: redis.Redis, account: str, now_ms: int) -> int:
    """Drop index entries of orders created longer ago than the retention (done by every create
    too; this is for an account that stopped placing orders). Returns how many went."""
    return int(r.zremrangebyscore(keys.account_orders(account), "-inf", f"({now_ms - retention_ms()}"))


def stale_ids(r: redis.Redis, account: str, created_before_ms: int) -> list[str]:
    """The account's non-terminal orders created before ``created_before_ms``: every one is in the
    sweeper's index (which, unlike the account's, is never trimmed). One pipelined round trip."""
    ids = [text(m) for m in r.zrange(keys.ORDERS_ACTIVE, 0, -1)]
    rows = _fields_of(r, ids, ("account", "created_ms"))
    return [coid for coid, (acct, created) in zip(ids, rows, strict=True)
            if acct is not None and text(acct) == account and int(text(created or "0") or 0) < created_before_ms]


def _fields_of(r: redis.Redis, client_order_ids: list[str], fields: Sequence[str]) -> list[list[Any]]:
    """``fields`` of each order, in one round trip (HMGET: None where one has none)."""
    with r.pipeline(transaction=False) as p:
        for coid in client_order_ids:
            p.hmget(keys.order(coid), *fields)
        return p.execute()


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
    ids = [text(m) for m in r.zrangebyscore(keys.ORDERS_ACTIVE, f"({now_ms}", "+inf")]
    fields = ("state", "created_ms", "account", "deadline_ms", "redrives", "enqueued", "sent_at_ms",
              "claimed_ms", "claimed_by", "attempt", "cancel_requested_ms")
    rows = _fields_of(r, ids, fields)
    out: list[Unsent] = []
    for coid, row in zip(ids, rows, strict=True):
        f = dict(zip(fields, (text(v) if v is not None else "" for v in row), strict=True))
        if f["state"] not in (OrderState.NEW.value, OrderState.SENDING.value) or f["sent_at_ms"]:
            continue
        if not f["deadline_ms"] or int(f["deadline_ms"]) <= now_ms or f["cancel_requested_ms"]:
            continue
        out.append(Unsent(coid, OrderState(f["state"]), f["account"], int(f["created_ms"] or 0),
                          int(f["claimed_ms"] or 0), f["claimed_by"], f["attempt"], f["redrives"],
                          bool(f["enqueued"])))
    return out
