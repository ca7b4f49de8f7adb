"""Order tasks: place, modify, cancel, the sweeper and reconciliation, by stable names.

Exactly once, never late (docs/architecture.md § Orders):

* ``place_order`` claims the order atomically (NEW -> SENDING with a fresh fencing token);
  only the delivery holding the token may send, and it records ``sent_at_ms`` on Redis time,
  refused after the deadline, just before the request leaves (``orderstore.mark_sent``).
* A redelivery that finds SENDING before anything was sent takes the claim over (the first
  delivery, if still alive, can then no longer send); one that finds SENDING after the send,
  or UNKNOWN, reconciles by tag before anything is sent: found -> adopted; absent after the
  request's read timeout has passed (so nothing can still be in flight) -> resent if the
  deadline allows, else FAILED.
* An ambiguous failure (read timeout, reset after the request left) -> UNKNOWN, reconcile,
  never a blind resend. A failure that certainly did not place the order (connect refused,
  5xx, rate-limit answer, expired token) clears ``sent_at_ms`` and sends again within the
  deadline, through the limiter again.
* The limiter slot is taken inside the task (the worker sleeps until it); a slot after the
  deadline is refused: EXPIRED, never sent late.
* Redis unreachable (a restart, a failover) mid-task: the task runs the same work again once it
  is back (:func:`_riding_out_redis`), within the order's deadline plus a grace. That is safe
  because every step decides from the state in Redis, not from how far the last run got: claim
  retakes an order never sent, and one whose ``sent_at_ms`` was recorded (the request may have
  left) is reconciled by tag before anything is sent. Past the budget the message is rejected
  back to its queue (or, Redis still down, restored after the visibility timeout) and decided
  the same way. Messages the worker had reserved but not started are put back by the worker
  when its broker connection is restored (``workers/app.py``).
* A message lost outright (kombu pops it, then records it as unacked: Redis gone between the
  two) leaves its order NEW: the sweeper sends it again once it is in no queue and held by no
  worker (:func:`redrive_lost`); a copy too many is a no-op by the claim.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import redis
from celery import shared_task
from celery.exceptions import Reject

from common import keys, orderstore, ratelimit
from common.brokers.base import CONNECT_TIMEOUT_S, adapter_for, sending_by
from common.errors import (
    Ambiguous,
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    DeadlineExceeded,
    InvalidOrder,
    LoginFailed,
    OrderRejected,
    RateLimited,
    TokenExpired,
)
from common.models import TERMINAL_STATES, Instrument, Order, OrderState, OrderUpdate
from common.redis import get_redis, server_time_ms
from common.settings import Account, account

__all__ = [
    "cancel_order",
    "modify_order",
    "place_order",
    "reconcile",
    "reconcile_account",
    "redrive_lost",
    "run_cancel",
    "run_modify",
    "run_place",
    "sweep",
    "sweep_orders",
]

log = logging.getLogger(__name__)
S = OrderState

ORDERS = "orders"  # endpoint class of place / modify / cancel
ORDERBOOK = "orderbook"  # endpoint class of the order book
BOOK_LAG_S = 1.0  # how long after a request's read timeout the order book may still not show it
RECONCILE_BUDGET_S = 15.0  # past the send window, how long one task keeps trying to read the book
UNAVAILABLE_BACKOFF_S = (0.05, 0.1, 0.2, 0.4, 0.8)  # full-jitter caps, then 0.8 s
DEFAULT_ACTION_DEADLINE_S = 10.0  # a cancel or modify that cannot be sent within this is dropped
REDIS_RETRY_S = (0.05, 0.1, 0.2, 0.5)  # full-jitter caps between runs while Redis is unreachable, then 0.5 s
REDIS_GRACE_S = 10.0  # past its deadline, how long a task keeps waiting for Redis to settle its order
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)  # BusyLoadingError (loading the AOF) included
MODIFY_LOCK_POLL_S = 0.02  # how often a modify waiting for the order's modify lock asks again
MODIFY_LOCK_SLACK_S = 1.0  # the lock outlives its holder's deadline + connect + read timeouts by this
REDRIVE_AFTER_S = 3.0  # a NEW order this old whose message is nowhere in Redis is sent again by the sweeper
REDRIVE_CONFIRM_S = 0.5  # ... when its message is still nowhere this long after the first look
REDRIVE_MAX = 3  # at most this many redrives per order (bounds the copies if messages were misread)
PLACE_TASK = "brokergate.place_order"


def _stat(r: redis.Redis, acct: str, name: str, n: int = 1) -> None:
    try:
        r.hincrby(keys.stats(acct), name, n)
    except redis.RedisError:  # counters must never fail an order
        log.debug("stats %s not counted", name)


def _read_timeout_s(acct: Account) -> float:
    return float(acct.extra.get("read_timeout_s", 7.0))


def _token_version(acct: Account) -> int:
    from common.tokens import get_token

    tok = get_token(acct.name)
    return tok.version if tok else 0


def _relogin(acct: Account, stale_version: int, remaining_s: float) -> None:
    """Single-flight re-login across every worker (common.tokens)."""
    from common.tokens import relogin

    relogin(acct.name, stale_version, timeout_s=max(1.0, remaining_s))


def _instrument(acct: Account, order: Order) -> Instrument | None:
    try:
        from common.instruments import lookup
    except ImportError:  # pragma: no cover - the instrument master module ships with brokergate
        return None
    return lookup(acct.name, order.instrument_key)


def _remaining_s(r: redis.Redis, deadline_ms: int) -> float:
    return (deadline_ms - server_time_ms(r)) / 1000


# --- place ------------------------------------------------------------------------------------------


def run_place(order_dict: dict[str, Any], source: str = "worker") -> str:
    """Place one order (the body of ``brokergate.place_order``); returns the state it left."""
    r = get_redis()
    coid = order_dict.get("client_order_id") if isinstance(order_dict, dict) else None
    try:
        order = Order.from_dict(dict(order_dict))
    except InvalidOrder as e:
        # The client validates before enqueueing; this is a strategy that used send_task directly.
        log.warning("place_order: %s", e)
        if isinstance(coid, str) and orderstore.get(r, coid) is not None:
            orderstore.transition(r, coid, S.FAILED, message=str(e), source=source)
        return S.FAILED.value
    try:
        acct = account(order.account)
    except ConfigError as e:
        log.error("place_order %s: %s", order.client_order_id, e)
        _ensure_created(r, order)
        orderstore.transition(r, order.client_order_id, S.FAILED, allowed_from={S.NEW}, message=str(e), source=source)
        return S.FAILED.value
    attempt = uuid.uuid4().hex
    c = orderstore.claim(r, order.client_order_id, attempt, source)
    if c.verdict == "missing":
        # Enqueued by name without the client: the deadline starts now.
        _ensure_created(r, order)
        c = orderstore.claim(r, order.client_order_id, attempt, source)
    if c.verdict == "claimed":
        return _send(r, acct, order, attempt, c.deadline_ms)
    if c.verdict == "reconcile":
        _stat(r, acct.name, "redelivered_after_send")
        return _reconcile_one(r, acct, order, c.deadline_ms, c.sent_at_ms)
    if c.verdict == "done":
        _stat(r, acct.name, "duplicates_avoided")
    return c.state


def _ensure_created(r: redis.Redis, order: Order) -> None:
    with contextlib.suppress(InvalidOrder):  # created meanwhile by someone else: fine
        orderstore.create(r, order, source="task")


def _send(r: redis.Redis, acct: Account, order: Order, attempt: str, deadline_ms: int) -> str:
    """Send an order this delivery has claimed; resend only when the broker certainly did not take it."""
    coid = order.client_order_id
    mine = ("attempt", attempt)
    adapter = adapter_for(acct)
    limiter = ratelimit.Limiter(r, acct.name, ORDERS, acct.caps_for(ORDERS))
    instrument = _instrument(acct, order)
    relogged = False
    unavailable = 0

    def unsend() -> None:
        # Certainly not placed: forget the send, so a redelivery may take over instead of reconciling.
        orderstore.transition(r, coid, S.SENDING, allowed_from={S.SENDING}, cas=mine, fields={"sent_at_ms": ""})

    while True:
        # The token this request will carry, read before the slot so as not to delay the send: a
        # refusal names it stale (read after the refusal, it may name a newer token: a second login).
        version = _token_version(acct)
        try:
            slot_us = limiter.acquire(deadline_ms, urgent=order.urgent)
        except DeadlineExceeded as e:
            orderstore.transition(r, coid, S.EXPIRED, allowed_from={S.SENDING}, cas=mine, message=str(e))
            _stat(r, acct.name, "expired")
            return S.EXPIRED.value
        asked = time.monotonic()
        verdict, sent_us = orderstore.mark_sent(r, coid, attempt, slot_us=slot_us,
                                               late_tolerance_us=ratelimit.LATE_TOLERANCE_MS * 1000)
        if verdict == "late":
            _stat(r, acct.name, "late_slots")
            continue  # woke too long after the slot: take a new one rather than crowd a window
        if verdict != "ok":
            if verdict == "expired":
                _stat(r, acct.name, "expired")
            return S.EXPIRED.value if verdict == "expired" else "LOST"
        try:
            # A new connection made after the deadline does not carry the order (BrokerUnavailable).
            with limiter.used(slot_us), sending_by(asked + (deadline_ms * 1000 - sent_us) / 1e6):
                broker_order_id = adapter.place(order, instrument)
        except InvalidOrder as e:  # raised before any request left (e.g. no symbol token)
            orderstore.transition(r, coid, S.FAILED, allowed_from={S.SENDING}, cas=mine, message=str(e))
            return S.FAILED.value
        except OrderRejected as e:
            orderstore.transition(r, coid, S.REJECTED, allowed_from={S.SENDING}, cas=mine, message=str(e))
            _stat(r, acct.name, "rejected")
            return S.REJECTED.value
        except TokenExpired as e:
            unsend()
            if relogged:
                orderstore.transition(r, coid, S.FAILED, allowed_from={S.SENDING}, cas=mine,
                                      message=f"token refused after a re-login: {e}")
                return S.FAILED.value
            relogged = True
            _stat(r, acct.name, "relogins")
            try:
                _relogin(acct, version, _remaining_s(r, deadline_ms))
            except (LoginFailed, BrokerUnavailable, ConfigError) as le:
                orderstore.transition(r, coid, S.FAILED, allowed_from={S.SENDING}, cas=mine,
                                      message=f"re-login failed: {le}")
                return S.FAILED.value
            continue
        except RateLimited as e:
            unsend()
            ratelimit.note_rate_limited(r, acct.name, ORDERS, acct.caps_for(ORDERS), e.retry_after_s)
            log.error("broker rate-limit answer for %s (the limiter should prevent this): %s", acct.name, e)
            continue
        except BrokerUnavailable as e:
            unsend()
            cap_s = UNAVAILABLE_BACKOFF_S[min(unavailable, len(UNAVAILABLE_BACKOFF_S) - 1)]
            unavailable += 1
            log.warning("broker unavailable for %s (%s); retrying within the deadline", coid, e)
            time.sleep(min(random.uniform(0, cap_s), max(0.0, _remaining_s(r, deadline_ms))))
            continue
        except Exception as e:  # Ambiguous, or anything unexpected after the request may have left
            log.warning("order %s outcome unknown (%s: %s): reconciling", coid, type(e).__name__, e)
            orderstore.transition(r, coid, S.UNKNOWN, allowed_from={S.SENDING}, cas=mine, message=str(e))
            got = orderstore.get(r, coid)
            sent_at = int(got.get("sent_at_ms") or 0) if got else 0
            return _reconcile_one(r, acct, order, deadline_ms, sent_at)
        orderstore.apply_update(r, OrderUpdate(account=acct.name, client_order_id=coid, broker_order_id=broker_order_id,
                                               state=S.OPEN, pending_quantity=order.quantity, source="worker"))
        _stat(r, acct.name, "placed")
        got = orderstore.get(r, coid)
        return str(got["state"]) if got else S.OPEN.value


def _book_lookup(r: redis.Redis, acct: Account, tag: str) -> OrderUpdate | None:
    """One order-book read by tag, through the limiter of the order-book class."""
    ratelimit.Limiter(r, acct.name, ORDERBOOK, acct.caps_for(ORDERBOOK)).acquire(urgent=True)
    return adapter_for(acct).order_by_tag(tag)


def _reconcile_one(r: redis.Redis, acct: Account, order: Order, deadline_ms: int, sent_at_ms: int) -> str:
    """The order may have reached the broker: find it by tag before anything is sent again."""
    coid = order.client_order_id
    settle_ms = sent_at_ms + int((_read_timeout_s(acct) + BOOK_LAG_S) * 1000)
    give_up = time.monotonic() + max(0.0, (settle_ms - server_time_ms(r)) / 1000) + RECONCILE_BUDGET_S
    relogged = False
    while True:
        try:
            # When the book was asked for, not answered: an answer that arrives after settle_ms
            # may have been made before it, while the request was still in flight.
            asked_ms = server_time_ms(r)
            version = _token_version(acct)
            found = _book_lookup(r, acct, coid)
        except TokenExpired:
            if relogged:
                return S.UNKNOWN.value  # the sweeper tries again
            relogged = True
            try:
                _relogin(acct, version, 20)
            except (LoginFailed, BrokerUnavailable, ConfigError) as e:
                log.error("reconcile %s: re-login failed: %s", coid, e)
                return S.UNKNOWN.value
            continue
        except BrokerError as e:
            if isinstance(e, RateLimited):
                ratelimit.note_rate_limited(r, acct.name, ORDERBOOK, acct.caps_for(ORDERBOOK), e.retry_after_s)
            if time.monotonic() > give_up:
                log.warning("reconcile %s: order book unreachable (%s); left to the sweeper", coid, e)
                return S.UNKNOWN.value
            time.sleep(0.2)
            continue
        if found is not None:
            orderstore.apply_update(r, replace(found, source="reconcile"))
            _stat(r, acct.name, "reconciled_adopted")
            got = orderstore.get(r, coid)
            return str(got["state"]) if got else found.state.value
        now_ms = server_time_ms(r)
        if asked_ms < settle_ms:
            # The request may still be in flight (or the book lagging): look again shortly.
            time.sleep(max(0.0, min(0.25, (settle_ms - now_ms) / 1000)))
            continue
        # Certainly absent: the request's read window has passed and the book does not show it.
        cas = ("sent_at_ms", str(sent_at_ms) if sent_at_ms else "")
        if now_ms < deadline_ms:
            attempt = uuid.uuid4().hex
            if orderstore.transition(r, coid, S.SENDING, allowed_from={S.SENDING, S.UNKNOWN}, cas=cas,
                                     fields={"attempt": attempt, "sent_at_ms": ""}, source="reconcile"):
                _stat(r, acct.name, "reconciled_absent_resent")
                return _send(r, acct, order, attempt, deadline_ms)
        elif orderstore.transition(r, coid, S.FAILED, allowed_from={S.SENDING, S.UNKNOWN}, cas=cas,
                                   source="reconcile", message="not at the broker, and the deadline has passed"):
            _stat(r, acct.name, "reconciled_absent_failed")
        got = orderstore.get(r, coid)
        return str(got["state"]) if got else S.UNKNOWN.value


# --- cancel / modify -------------------------------------------------------------------------------


def _wait_for_broker_id(r: redis.Redis, coid: str, until_monotonic: float) -> dict[str, Any] | None:
    """The stored order once it has a broker order id or is settled (a cancel right after a place)."""
    while True:
        got = orderstore.get(r, coid)
        if got is None or got.get("broker_order_id") or S(got["state"]) in TERMINAL_STATES:
            return got
        if time.monotonic() >= until_monotonic:
            return got
        # Poll rather than BLPOP the order's wake-up list: that list belongs to client handles.
        time.sleep(0.05)


def _modify_lock(r: redis.Redis, acct: Account, coid: str, seq: int, token: str, until: float) -> str:
    """Wait for the order's modify lock (``locked``), or learn the modify is ``stale`` / the order
    ``missing``; ``expired`` when an earlier modify still holds it at ``until``. The lock lives as
    long as its holder may still wait for a slot (until its deadline) and for the answer."""
    while True:
        ttl_s = max(0.0, until - time.monotonic()) + CONNECT_TIMEOUT_S + _read_timeout_s(acct) + MODIFY_LOCK_SLACK_S
        verdict, _applied = orderstore.modify_lock(r, coid, token, seq, int(ttl_s * 1000))
        if verdict != "busy":
            return verdict
        if time.monotonic() >= until:
            return "expired"
        time.sleep(MODIFY_LOCK_POLL_S)


def _action(kind: str, account_name: str, coid: str, changes: dict[str, Any] | None, deadline_s: float | None,
            seq: int | None = None, token: str | None = None) -> str:
    r = get_redis()
    acct = account(account_name)
    deadline_s = float(deadline_s or DEFAULT_ACTION_DEADLINE_S)
    until = time.monotonic() + deadline_s
    deadline_ms = server_time_ms(r) + int(deadline_s * 1000)
    got = orderstore.get(r, coid)
    if got is None:
        log.warning("%s %s: no such order", kind, coid)
        return "MISSING"
    # Not sent yet (NEW, or claimed and waiting for its slot): cancelled here, atomically against
    # mark_sent (which then finds it no longer SENDING), instead of racing the send.
    if kind == "cancel" and got["state"] in (S.NEW.value, S.SENDING.value) and orderstore.transition(
            r, coid, S.CANCELLED, allowed_from={S.NEW, S.SENDING}, cas=("sent_at_ms", ""), source="cancel",
            message="cancelled before it was sent"):
        return S.CANCELLED.value
    if kind != "modify":
        return _act(r, acct, kind, coid, changes, until, deadline_ms, None)
    # Modifies of one order one at a time (a fenced lock in Redis), each merged onto the request
    # the previous one stored, in the order the client enqueued them (seq, stamped at enqueue
    # time; a modify enqueued by name without one is stamped here): an older one is dropped.
    seq = seq or orderstore.next_modify_seq(r, coid)
    token = token or uuid.uuid4().hex
    verdict = _modify_lock(r, acct, coid, seq, token, until)
    if verdict == "missing":
        return "MISSING"
    if verdict == "stale":
        orderstore.annotate(r, coid, {f"{kind}_dropped": f"seq {seq}: superseded by a later modify"})
        return "DROPPED"
    if verdict == "expired":
        orderstore.annotate(r, coid, {f"{kind}_status": "expired: an earlier modify of this order was still running"})
        return "EXPIRED"
    try:
        return _act(r, acct, kind, coid, changes, until, deadline_ms, (token, seq))
    finally:
        orderstore.modify_done(r, coid, token, seq)  # releases the lock if still held (not once recorded)


def _act(r: redis.Redis, acct: Account, kind: str, coid: str, changes: dict[str, Any] | None, until: float,
         deadline_ms: int, lock: tuple[str, int] | None) -> str:
    """Send a cancel or (holding the order's modify lock) a modify of an order the broker has."""
    got = _wait_for_broker_id(r, coid, until)
    if got is None or S(got["state"]) in TERMINAL_STATES or not got.get("broker_order_id"):
        state = got["state"] if got else "MISSING"
        orderstore.annotate(r, coid, {f"{kind}_status": f"not sent: order is {state}"})
        return str(state)
    order = Order.from_dict(got["request"])
    broker_order_id = str(got["broker_order_id"])
    adapter = adapter_for(acct)
    instrument = _instrument(acct, order) if kind == "modify" else None
    limiter = ratelimit.Limiter(r, acct.name, ORDERS, acct.caps_for(ORDERS))
    relogged = False
    while True:
        version = _token_version(acct)  # before the slot: the token this request will carry
        try:
            slot_us = limiter.acquire(deadline_ms, urgent=True)
            with limiter.used(slot_us):  # counts from its answer, as every used slot does
                if kind == "cancel":
                    adapter.cancel(order, broker_order_id)
                else:
                    adapter.modify(order, broker_order_id, changes or {}, instrument)
        except DeadlineExceeded as e:
            orderstore.annotate(r, coid, {f"{kind}_status": f"expired: {e}"})
            return "EXPIRED"
        except TokenExpired:
            if relogged:
                orderstore.annotate(r, coid, {f"{kind}_status": "failed: token refused after re-login"})
                return "FAILED"
            relogged = True
            _relogin(acct, version, max(1.0, until - time.monotonic()))
            continue
        except RateLimited as e:
            ratelimit.note_rate_limited(r, acct.name, ORDERS, acct.caps_for(ORDERS), e.retry_after_s)
            continue
        except BrokerUnavailable:
            if time.monotonic() > until:
                orderstore.annotate(r, coid, {f"{kind}_status": "failed: broker unavailable"})
                return "FAILED"
            time.sleep(random.uniform(0, 0.2))
            continue
        except (OrderRejected, InvalidOrder) as e:
            orderstore.annotate(r, coid, {f"{kind}_status": f"rejected: {e}"})
            return "REJECTED"
        except Ambiguous as e:
            orderstore.annotate(r, coid, {f"{kind}_status": f"unknown: {e}"})
            break
        status: dict[str, str | int] = {f"{kind}_status": "sent", f"{kind}_sent_ms": server_time_ms(r)}
        if lock is None:
            orderstore.annotate(r, coid, status)
        else:
            # The modified request is stored (and the seq applied) only while the lock is still ours.
            status["request"] = json.dumps(order.with_(**(changes or {})).to_dict())
            if not orderstore.modify_done(r, coid, *lock, status, applied=True):
                log.warning("modify %s seq %s sent after its lock expired: the request is not recorded", coid, lock[1])
                orderstore.annotate(r, coid, {f"{kind}_status": "sent; not recorded: its lock had expired"})
        break
    # Without a live order-update feed the store would not learn the outcome: read it once.
    try:
        found = _book_lookup(r, acct, coid)
        if found is not None:
            orderstore.apply_update(r, replace(found, source="reconcile"))
    except BrokerError as e:
        log.info("%s %s: outcome left to the order-update feed (%s)", kind, coid, e)
    got = orderstore.get(r, coid)
    return str(got["state"]) if got else "MISSING"


def run_cancel(account_name: str, client_order_id: str, deadline_s: float | None = None) -> str:
    return _action("cancel", account_name, client_order_id, None, deadline_s)


def run_modify(account_name: str, client_order_id: str, changes: dict[str, Any],
               deadline_s: float | None = None, seq: int | None = None, token: str | None = None) -> str:
    """``seq``: the modify's sequence stamped at enqueue time (``orderstore.next_modify_seq``);
    ``token``: the fencing token of this delivery's modify lock (one is made when not given)."""
    return _action("modify", account_name, client_order_id, changes, deadline_s, seq, token)


# --- sweeper and reconciliation ------------------------------------------------------------------------


def reconcile(account_name: str, ids: list[str] | None = None) -> dict[str, int]:
    """Read the account's order book once and apply it to every order brokergate knows; then
    settle orders stuck in SENDING (sent) / UNKNOWN whose send window and deadline have passed
    and which the book does not show (FAILED: they never reached the broker)."""
    r = get_redis()
    acct = account(account_name)
    ratelimit.Limiter(r, acct.name, ORDERBOOK, acct.caps_for(ORDERBOOK)).acquire(urgent=True)
    asked_ms = server_time_ms(r)  # the book shows what reached the broker before this, no more
    book = adapter_for(acct).orders()
    counts = {"applied": 0, "failed": 0}
    tags = [u for u in book if u.client_order_id]
    with r.pipeline(transaction=False) as p:
        for u in tags:
            p.exists(keys.order(u.client_order_id))
        known = p.execute()
    seen: set[str] = set()
    for u, k in zip(tags, known, strict=True):
        if k:
            seen.add(u.client_order_id)
            counts["applied"] += int(orderstore.apply_update(r, replace(u, source="reconcile")))
    window_ms = int((_read_timeout_s(acct) + BOOK_LAG_S) * 1000)
    for coid in ids or []:
        if coid in seen:
            continue
        got = orderstore.get(r, coid)
        if not got or got["account"] != account_name or got["state"] not in (S.SENDING.value, S.UNKNOWN.value):
            continue
        sent_at = int(got.get("sent_at_ms") or 0)
        if sent_at and asked_ms > sent_at + window_ms and asked_ms > int(got["deadline_ms"]) and orderstore.transition(
                r, coid, S.FAILED, allowed_from={S.SENDING, S.UNKNOWN}, cas=("sent_at_ms", str(sent_at)),
                source="sweeper", message="not at the broker, and the deadline has passed"):
            counts["failed"] += 1
    return counts


def _place_order_id(envelope: Any) -> str | None:
    """The client_order_id a kombu message of ``brokergate.place_order`` carries (None: another
    task, or not decodable). Celery protocol 2: the task name and id are headers, the body is
    ``[args, kwargs, embed]`` (JSON, base64 on the Redis transport); protocol 1: all in the body."""
    try:
        headers = envelope.get("headers") or {}
        body = envelope["body"]
        if (envelope.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        payload = json.loads(body)
        if isinstance(payload, dict):  # protocol 1
            task, task_id = payload.get("task"), payload.get("id")
            args, kwargs = payload.get("args") or [], payload.get("kwargs") or {}
        else:
            task, task_id = headers.get("task"), headers.get("id")
            args, kwargs = payload[0] or [], payload[1] or {}
        if task != PLACE_TASK:
            return None
        order = args[0] if args else kwargs.get("order")
        coid = order.get("client_order_id") if isinstance(order, dict) else None
        if not coid and task_id:  # enqueued by name without an id: place_order derives it so
            coid = str(task_id).replace("-", "")[:20]
        return str(coid) if coid else None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):  # binascii.Error is a ValueError
        return None


def _enqueued_ids(r: redis.Redis, account_names: Iterable[str]) -> set[str]:
    """client_order_ids of every place_order message waiting in these accounts' queues (each
    priority list kombu keeps) or held by any worker (kombu's unacked hash: reserved, in a
    rate-limit bucket, or running), read in one MULTI so a message moving from a queue to a
    worker (or restored back) is seen in one place or the other. O(messages): call it only
    when there is a candidate."""
    names = [lst for a in sorted(set(account_names))
             for q in (keys.urgent_queue(a), keys.orders_queue(a)) for lst in keys.queue_lists(q)]
    with r.pipeline(transaction=True) as p:
        for name in names:
            p.lrange(name, 0, -1)
        p.hvals(keys.KOMBU_UNACKED)
        *waiting, held = p.execute()
    found: set[str] = set()
    for raw in (m for lst in waiting for m in lst):
        with contextlib.suppress(ValueError, TypeError):
            coid = _place_order_id(json.loads(raw))
            if coid:
                found.add(coid)
    for raw in held:
        with contextlib.suppress(ValueError, TypeError, IndexError, KeyError):
            coid = _place_order_id(json.loads(raw)[0])  # [message, exchange, routing key]
            if coid:
                found.add(coid)
    return found


def _send_place(order: dict[str, Any]) -> None:
    """Enqueue ``brokergate.place_order`` exactly as the client does (common.client.place_order)."""
    from common.client import _celery

    queue = keys.urgent_queue(order["account"]) if order.get("urgent") else keys.orders_queue(order["account"])
    _celery().send_task(PLACE_TASK, args=[order], queue=queue)


def redrive_lost(r: redis.Redis, now_ms: int | None = None, confirm_s: float = REDRIVE_CONFIRM_S) -> int:
    """Send again the message of NEW orders (older than :data:`REDRIVE_AFTER_S`, before their
    deadline) that is provably nowhere: in no queue of the account, held by no worker, at two
    looks ``confirm_s`` apart. kombu's Redis transport pops a message (BRPOP) and only then
    records it as unacked (a second command): a Redis crash, or a lost reply, between the two
    loses the message while the order is NEW. A message merely queued behind a burst is found
    and left alone; a copy sent in a race anyway is a no-op by the order's claim. Returns how
    many were sent again."""
    now_ms = server_time_ms(r) if now_ms is None else now_ms
    candidates = {coid: (acct, seen) for coid, acct, seen in
                  orderstore.unsent_new(r, now_ms, now_ms - int(REDRIVE_AFTER_S * 1000))
                  if int(seen or 0) < REDRIVE_MAX}
    if not candidates:
        return 0
    accts = {acct for acct, _ in candidates.values()}
    lost = set(candidates) - _enqueued_ids(r, accts)
    if lost and confirm_s > 0:
        # A message between its pop and its unacked record is in neither place for a moment.
        time.sleep(confirm_s)
        lost -= _enqueued_ids(r, accts)
    redriven = 0
    for coid in sorted(lost):
        acct, seen = candidates[coid]
        got = orderstore.get(r, coid)
        if got is None or got["state"] != S.NEW.value:
            continue
        if not orderstore.mark_redriven(r, coid, seen, source="sweeper", message="redriven: message lost"):
            continue
        try:
            _send_place(got["request"])
        except Exception as e:  # the next sweep looks again (the message is still nowhere)
            log.error("sweeper: could not send %s again: %s", coid, e)
            continue
        log.warning("sweeper: order %s was NEW with its message lost: sent again", coid)
        _stat(r, acct, "redriven")
        redriven += 1
    return redriven


def sweep() -> dict[str, int]:
    """Settle what dead workers left behind: NEW (or claimed, never sent) past the deadline ->
    EXPIRED; sent but unsettled past the deadline -> reconciled against the order book; NEW
    before its deadline whose message was lost -> sent again (:func:`redrive_lost`)."""
    r = get_redis()
    now_ms = server_time_ms(r)
    counts = {"expired": 0, "reconciled": 0, "redriven": 0}
    stuck: dict[str, list[str]] = {}
    for coid, _deadline in orderstore.active_ids(r, now_ms):
        got = orderstore.get(r, coid)
        if got is None:
            orderstore.forget_index(r, coid)
            continue
        state = got["state"]
        if state == S.NEW.value or (state == S.SENDING.value and not got.get("sent_at_ms")):
            if orderstore.transition(r, coid, S.EXPIRED, allowed_from={S(state)}, cas=("sent_at_ms", ""),
                                     source="sweeper", message="not sent before its deadline"):
                counts["expired"] += 1
                _stat(r, got["account"], "expired")
        elif state in (S.SENDING.value, S.UNKNOWN.value):
            stuck.setdefault(got["account"], []).append(coid)
        elif state == S.OPEN.value:
            # Resting and silent for OPEN_RECHECK_S: read the book once, look again later.
            stuck.setdefault(got["account"], []).append(coid)
            orderstore.recheck_later(r, coid, now_ms + orderstore.OPEN_RECHECK_S * 1000)
    counts["redriven"] = redrive_lost(r, now_ms)
    for acct_name, ids in stuck.items():
        try:
            counts["reconciled"] += reconcile(acct_name, ids)["applied"]
        except (BrokerError, ConfigError) as e:
            log.warning("sweeper: reconcile of %s failed: %s", acct_name, e)
    return counts


# --- the tasks ----------------------------------------------------------------------------------------


def _riding_out_redis(what: str, work: Callable[[], str], budget_s: float) -> str:
    """``work()``, run again while Redis is unreachable, for up to ``budget_s``; then the message
    goes back to its queue (see the module docstring: each run decides from the state in Redis)."""
    give_up = time.monotonic() + budget_s
    failures = 0
    while True:
        try:
            return work()
        except REDIS_ERRORS as e:
            if time.monotonic() >= give_up:
                log.error("%s: Redis unreachable for %.0f s (%s); message back to the queue", what, budget_s, e)
                raise Reject(e, requeue=True) from e
            cap_s = REDIS_RETRY_S[min(failures, len(REDIS_RETRY_S) - 1)]
            failures += 1
            log.warning("%s: Redis unreachable (%s: %s); running it again when it is back", what, type(e).__name__, e)
            time.sleep(min(random.uniform(0, cap_s), max(0.0, give_up - time.monotonic())))


def _warn_eta(task: Any) -> None:
    if getattr(task.request, "eta", None):
        log.warning("%s carried an ETA: order tasks must not be delayed by Celery (see workers/app.py)", task.name)


@shared_task(name="brokergate.place_order", bind=True, acks_late=True, reject_on_worker_lost=True)
def place_order(self: Any, order: dict[str, Any]) -> str:
    """Place one generic order dict (docs/architecture.md § Interfaces)."""
    _warn_eta(self)
    if isinstance(order, dict) and not order.get("client_order_id") and self.request.id:
        # Enqueued by name without an id: derive it from the message, so that a redelivery of
        # this message is the same order (a random id per delivery would send it twice).
        order = {**order, "client_order_id": str(self.request.id).replace("-", "")[:20]}
    source = f"worker:{self.request.hostname or ''}"
    deadline_s = order.get("deadline_s") if isinstance(order, dict) else None
    if not isinstance(deadline_s, int | float):
        deadline_s = Order.__dataclass_fields__["deadline_s"].default
    budget_s = float(deadline_s) + REDIS_GRACE_S
    return _riding_out_redis(f"place_order {order.get('client_order_id') if isinstance(order, dict) else ''}",
                             lambda: run_place(order, source=source), budget_s)


@shared_task(name="brokergate.cancel_order", bind=True, acks_late=True, reject_on_worker_lost=True)
def cancel_order(self: Any, account: str, client_order_id: str, deadline_s: float | None = None) -> str:
    """Cancel an order by its client order id (a NEW order is cancelled before it is sent)."""
    _warn_eta(self)
    deadline = float(deadline_s or DEFAULT_ACTION_DEADLINE_S)
    started = time.monotonic()
    return _riding_out_redis(
        f"cancel_order {client_order_id}",
        lambda: run_cancel(account, client_order_id, max(0.001, deadline - (time.monotonic() - started))),
        deadline + REDIS_GRACE_S)


@shared_task(name="brokergate.modify_order", bind=True, acks_late=True, reject_on_worker_lost=True)
def modify_order(self: Any, account: str, client_order_id: str, changes: dict[str, Any],
                 deadline_s: float | None = None, seq: int | None = None) -> str:
    """Change quantity, price, trigger_price, order_type or validity of an open order. ``seq``:
    the modify sequence the client stamped (a modify older than the last applied one is dropped)."""
    _warn_eta(self)
    deadline = float(deadline_s or DEFAULT_ACTION_DEADLINE_S)
    started = time.monotonic()
    token = uuid.uuid4().hex  # one lock token for every run of this delivery: a run again retakes its own lock
    stamped: list[int] = [seq] if seq else []

    def work() -> str:
        if not stamped:  # enqueued by name without a seq: stamp it once, not once per run
            stamped.append(orderstore.next_modify_seq(get_redis(), client_order_id))
        return run_modify(account, client_order_id, changes, max(0.001, deadline - (time.monotonic() - started)),
                          stamped[0], token)

    return _riding_out_redis(f"modify_order {client_order_id}", work, deadline + REDIS_GRACE_S)


@shared_task(name="brokergate.sweep_orders", acks_late=True)
def sweep_orders() -> dict[str, int]:
    return sweep()


@shared_task(name="brokergate.reconcile_account", acks_late=True)
def reconcile_account(account: str) -> dict[str, int]:
    """Apply the account's order book to every order brokergate knows (after a feed gap)."""
    r = get_redis()
    ids = [coid for coid, _ in orderstore.active_ids(r)]
    return reconcile(account, ids)
