"""Cancelling and modifying orders (the bodies of ``brokergate.cancel_order`` / ``modify_order``).

Cancel: the request is durable (``orderstore.request_cancel``). An order not yet sent is
cancelled without reaching the broker. One in flight keeps the mark, so no send, resend or
redrive places it from then on; if it reaches the broker anyway, whoever learns its broker
order id cancels it there (this task while it waits, else the placing worker, the reconcile
that adopts it, or the sweeper). The strategy tells which happened from the order's update:
CANCELLED with no ``broker_order_id`` (never at the broker) or with one (cancelled there).
Cancels are idempotent at the broker, so an ambiguous one is sent again until the broker
confirms or the order is terminal.

Modify: one at a time per order (a fenced lock in Redis, whose token is the task's message id,
so a redelivery after a crash retakes its own lock), composed in the order the client enqueued
them: the client stamps each with a ``seq`` and records its changes under it in one step, and a
worker running seq N sends the stored request plus the changes of every seq after the last
applied one up to N, in seq order. A seq below the last applied one is then stale and dropped
with nothing lost, whichever order the workers ran them in. A modify that did not happen
(refused, not sent) is forgotten, so no later one carries it. An ambiguous one (the answer was
lost) is recorded as maybe applied (``modify_maybe_seq``): the next modify composes onto it, as
every adapter sends the whole order. The order book cannot settle it: the normalized book rows
(``OrderUpdate``) carry no quantity or price.

Deadlines (cancel and modify) count from the enqueue (``enqueued_ms``, the client's Redis time),
so a request that waited in the queue is not sent stale.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import replace
from typing import Any

import redis

from common import marketprotection, orderstore
from common.brokers.base import CONNECT_TIMEOUT_S
from common.errors import (
    Ambiguous,
    BrokerError,
    DeadlineExceeded,
    InvalidOrder,
    LoginFailed,
    OrderRejected,
)
from common.models import OrderState
from common.orderstore import StoredOrder
from common.redis import get_redis, server_time_ms
from common.settings import Account
from workers import brokercall as bc
from workers.placing import book_lookup

__all__ = ["cancel_at_broker", "run_cancel", "run_modify"]

log = logging.getLogger(__name__)
S = OrderState

MODIFY_LOCK_POLL_S = 0.02  # how often a modify waiting for the order's modify lock asks again
MODIFY_LOCK_SLACK_S = 1.0  # the lock outlives its holder's deadline + connect + read timeouts by this
BROKER_ID_POLL_S = 0.05  # how often a cancel or modify waiting for the broker's order id looks again


def _wait_for_broker_id(r: redis.Redis, coid: str, deadline_ms: int) -> StoredOrder | None:
    """The stored order once it has a broker order id or is settled (a cancel right after a place)."""
    while True:
        got = orderstore.read(r, coid)
        if got is None or got.broker_order_id or got.terminal:
            return got
        if server_time_ms(r) >= deadline_ms:
            return got
        # Poll rather than BLPOP the order's wake-up list: that list belongs to client handles.
        time.sleep(BROKER_ID_POLL_S)


def _learn_outcome(r: redis.Redis, acct: Account, coid: str, kind: str) -> StoredOrder | None:
    """Without a live order-update feed the store would not learn the outcome: read the book once."""
    try:
        found = book_lookup(r, acct, coid, server_time_ms(r) + int(bc.DEFAULT_ACTION_DEADLINE_S * 1000))
        if found is not None:
            orderstore.apply_update(r, replace(found, source="reconcile"))
    except (BrokerError, DeadlineExceeded) as e:
        log.info("%s %s: outcome left to the order-update feed (%s)", kind, coid, e)
    return orderstore.read(r, coid)


# --- cancel --------------------------------------------------------------------------------------


def _deadline_ms(r: redis.Redis, deadline_s: float | None, enqueued_ms: int | None) -> int:
    """A cancel's or modify's deadline (Redis ms), counted from its enqueue; a message without
    an enqueue time (an older client) counts from now."""
    return (enqueued_ms or server_time_ms(r)) + int(float(deadline_s or bc.DEFAULT_ACTION_DEADLINE_S) * 1000)


def run_cancel(account_name: str, client_order_id: str, deadline_s: float | None = None,
               enqueued_ms: int | None = None) -> str:
    """Cancel an order; returns its state, or ``PENDING`` when it was still in flight at the
    deadline (the durable mark hands the cancel to whoever learns its broker order id).
    ``enqueued_ms``: when the client enqueued it (Redis ms); the deadline counts from then."""
    r = get_redis()
    acct = bc.account(account_name)
    deadline_ms = _deadline_ms(r, deadline_s, enqueued_ms)
    verdict, state = orderstore.request_cancel(r, client_order_id)
    if verdict == "missing":
        log.warning("cancel %s: no such order", client_order_id)
        return "MISSING"
    if verdict != "requested":
        return state
    got = _wait_for_broker_id(r, client_order_id, deadline_ms)
    if got is None:
        return "MISSING"
    if got.terminal:
        return got.state.value
    if not got.broker_order_id:
        orderstore.annotate(r, client_order_id, {"cancel_status": "pending: in flight; cancelled once the broker has it"})
        return "PENDING"
    return cancel_at_broker(r, acct, got, deadline_ms)


def cancel_at_broker(r: redis.Redis, acct: Account, got: StoredOrder, deadline_ms: int) -> str:
    """Cancel an order the broker has (urgent lane) until the broker confirms the request or the
    order is terminal; an ambiguous cancel is sent again (cancels are idempotent at the broker)."""
    coid, order, broker_order_id = got.client_order_id, got.order, got.broker_order_id
    while True:
        try:
            bc.call(r, acct, bc.ORDERS, lambda a: a.cancel(order, broker_order_id), deadline_ms=deadline_ms, urgent=True)
        except (DeadlineExceeded, LoginFailed) as e:
            orderstore.annotate(r, coid, {"cancel_status": f"not sent: {e}"})
            break
        except (OrderRejected, InvalidOrder) as e:  # e.g. it filled first: the book says what it is
            orderstore.annotate(r, coid, {"cancel_status": f"rejected: {e}"})
            break
        except Ambiguous as e:
            orderstore.annotate(r, coid, {"cancel_status": f"unknown: {e}"})
            now = _learn_outcome(r, acct, coid, "cancel")
            if now is None or now.terminal or server_time_ms(r) >= deadline_ms:
                return now.state.value if now else "MISSING"
            bc.count(r, acct.name, "cancels_resent")
            continue
        orderstore.annotate(r, coid, {"cancel_status": "sent", "cancel_sent_ms": server_time_ms(r)})
        break
    now = _learn_outcome(r, acct, coid, "cancel")
    return now.state.value if now else "MISSING"


# --- modify --------------------------------------------------------------------------------------


def _modify_lock(r: redis.Redis, acct: Account, coid: str, seq: int, token: str, until: float) -> str:
    """Wait for the order's modify lock (``locked``), or learn the modify is ``stale`` / the order
    ``missing``; ``expired`` when an earlier modify still holds it at ``until``. The lock lives as
    long as its holder may still wait for a slot (until its deadline) and for the answer."""
    while True:
        ttl_s = (max(0.0, until - time.monotonic()) + CONNECT_TIMEOUT_S + acct.read_timeout_s
                 + MODIFY_LOCK_SLACK_S)
        verdict, _applied = orderstore.modify_lock(r, coid, token, seq, int(ttl_s * 1000))
        if verdict != "busy":
            return verdict
        if time.monotonic() >= until:
            return "expired"
        time.sleep(MODIFY_LOCK_POLL_S)


def run_modify(account_name: str, client_order_id: str, changes: dict[str, Any],
               deadline_s: float | None = None, seq: int | None = None, token: str | None = None,
               enqueued_ms: int | None = None) -> str:
    """``seq``: the modify's sequence stamped at enqueue time (``orderstore.next_modify_seq``);
    ``token``: the fencing token of its modify lock, the task's message id so that every delivery
    of one message holds the same lock (one is made when not given); ``enqueued_ms``: when the
    client enqueued it (Redis ms), the deadline counts from then."""
    r = get_redis()
    acct = bc.account(account_name)
    coid = client_order_id
    deadline_ms = _deadline_ms(r, deadline_s, enqueued_ms)
    left_ms = deadline_ms - server_time_ms(r)
    until = time.monotonic() + max(0, left_ms) / 1000
    if orderstore.read(r, coid) is None:
        log.warning("modify %s: no such order", coid)
        return "MISSING"
    seq = seq or orderstore.next_modify_seq(r, coid, changes)
    if left_ms <= 0:  # it waited in the queue past its deadline: a stale modify is worse than none
        orderstore.modify_discard(r, coid, seq)
        orderstore.annotate(r, coid, {"modify_status": f"not sent: seq {seq} waited in the queue past its deadline"})
        return "EXPIRED"
    token = token or uuid.uuid4().hex
    verdict = _modify_lock(r, acct, coid, seq, token, until)
    if verdict == "missing":
        return "MISSING"
    if verdict == "stale":
        orderstore.annotate(r, coid, {"modify_dropped": f"seq {seq}: applied, or composed into a later modify"})
        return "DROPPED"
    if verdict == "expired":
        orderstore.modify_discard(r, coid, seq)
        orderstore.annotate(r, coid, {"modify_status": "expired: an earlier modify of this order was still running"})
        return "EXPIRED"
    try:
        return _modify(r, acct, coid, changes, deadline_ms, token, seq)
    finally:
        orderstore.modify_done(r, coid, token, seq)  # releases the lock if still held (not once recorded)


def _modify(r: redis.Redis, acct: Account, coid: str, changes: dict[str, Any], deadline_ms: int,
            token: str, seq: int) -> str:
    """Send a modify of an order the broker has, holding the order's modify lock."""
    got = _wait_for_broker_id(r, coid, deadline_ms)
    if got is None or got.terminal or not got.broker_order_id:
        state = got.state.value if got else "MISSING"
        orderstore.annotate(r, coid, {"modify_status": f"not sent: order is {state}"})
        return state
    order, broker_order_id = got.order, got.broker_order_id
    # Every not yet applied modify up to this one, in seq order: an earlier one still queued
    # (its worker slower) is carried now, and dropped as stale when it runs.
    merged = orderstore.modify_changes(r, coid, seq, changes)
    target = json.dumps(order.with_(**merged).to_dict())
    inst = bc.instrument(acct, order)
    try:
        wire = marketprotection.as_sent(r, acct, order.with_(**merged), inst)
    except InvalidOrder as e:
        orderstore.annotate(r, coid, {"modify_status": f"rejected: {e}"})
        return "REJECTED"
    if wire.order_type.value != merged.get("order_type", order.order_type.value):
        merged = {**merged, "order_type": wire.order_type.value, "price": str(wire.price)}
    try:
        bc.call(r, acct, bc.ORDERS, lambda a: a.modify(order, broker_order_id, merged, inst),
                deadline_ms=deadline_ms, urgent=True)
    except (DeadlineExceeded, LoginFailed) as e:
        orderstore.annotate(r, coid, {"modify_status": f"not sent: {e}"})
        return "EXPIRED" if isinstance(e, DeadlineExceeded) else "FAILED"
    except (OrderRejected, InvalidOrder) as e:
        orderstore.annotate(r, coid, {"modify_status": f"rejected: {e}"})
        return "REJECTED"
    except Ambiguous as e:
        # It may have been applied: recorded as if it was, so the next modify (every adapter
        # sends the whole order) composes onto it instead of sending the old values back. The
        # book cannot tell (its rows carry no quantity or price), so "maybe" stays on record.
        maybe: dict[str, str | int] = {"modify_status": f"unknown: maybe applied: {e}", "modify_maybe_seq": seq,
                                       "request": target}
        if not orderstore.modify_done(r, coid, token, seq, maybe, applied=True):
            log.warning("modify %s seq %s: ambiguous after its lock expired: not recorded", coid, seq)
    else:
        # The modified request is stored (and the seq applied) only while the lock is still ours.
        status: dict[str, str | int] = {"modify_status": "sent", "modify_sent_ms": server_time_ms(r),
                                        "modify_maybe_seq": "", "request": target}
        if not orderstore.modify_done(r, coid, token, seq, status, applied=True):
            log.warning("modify %s seq %s sent after its lock expired: the request is not recorded", coid, seq)
            orderstore.annotate(r, coid, {"modify_status": "sent; not recorded: its lock had expired"})
    now = _learn_outcome(r, acct, coid, "modify")
    return now.state.value if now else "MISSING"
