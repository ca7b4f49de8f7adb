"""Placing an order exactly once, never late (the body of ``brokergate.place_order``).

* :func:`run_place` claims the order atomically (NEW -> SENDING with a fresh fencing token);
  only the delivery holding the token may send, and it records ``sent_at_ms`` on Redis time,
  refused after the deadline or once a cancel was requested, just before the request leaves
  (``orderstore.mark_sent``, the gate of :func:`workers.brokercall.call`).
* A redelivery that finds SENDING before anything was sent takes the claim over (the first
  delivery, if still alive, can then no longer send); one that finds SENDING after the send,
  or UNKNOWN, reconciles by tag before anything is sent (:func:`reconcile_one`): found ->
  adopted; absent once the request's whole send window has passed (connect, answer, the book's
  lag: nothing can still be in flight) -> resent if the deadline allows and no cancel was
  requested, else FAILED (or CANCELLED).
* An ambiguous failure (read timeout, reset after the request left) -> UNKNOWN, reconcile,
  never a blind resend. A failure that certainly did not place the order (connect refused, the
  broker's own "unavailable", a rate-limit answer, an expired token) clears ``sent_at_ms`` and
  sends again within the deadline, through the limiter again.
* A cancel requested while the order was in flight is honoured by whoever learns the broker's
  order id: the placing worker right after the answer, or the reconcile that adopts it.
* Before every send, the authoritative pre-trade risk check (:func:`common.risk.check`): a
  refusal settles the order REJECTED with the limit and its numbers; it is never sent. Its read is
  made by the claim, in the same script (an order with no limit in force pays no round trip for
  it); a resend after a reconcile reads for itself.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import uuid
from dataclasses import replace
from typing import Any

import redis

from common import marketprotection, orderstore, ratelimit, risk
from common.errors import (
    Ambiguous,
    BrokerError,
    ConfigError,
    DeadlineExceeded,
    InvalidOrder,
    LoginFailed,
    OrderRejected,
    RateLimited,
    RiskRefused,
)
from common.models import Order, OrderState, OrderUpdate
from common.redis import server_time_ms
from common.settings import Account
from workers import brokercall as bc

__all__ = ["RECONCILE_BUDGET_S", "book_lookup", "reconcile_one", "run_place", "send"]

log = logging.getLogger(__name__)
S = OrderState

RECONCILE_BUDGET_S = 15.0  # past the send window, how long one task keeps trying to read the book


def run_place(order_dict: dict[str, Any], source: str = "worker") -> str:
    """Place one order; returns the state it left."""
    from common.redis import get_redis

    r = get_redis()
    coid = order_dict.get("client_order_id") if isinstance(order_dict, dict) else None
    try:
        order = Order.from_dict(dict(order_dict))
    except InvalidOrder as e:
        # The client validates before enqueueing; this is a strategy that used send_task directly.
        log.warning("place_order: %s", e)
        if isinstance(coid, str) and orderstore.read(r, coid) is not None:
            orderstore.transition(r, coid, S.FAILED, message=str(e), source=source)
        return S.FAILED.value
    try:
        acct = bc.account(order.account)
    except ConfigError as e:
        log.error("place_order %s: %s", order.client_order_id, e)
        _ensure_created(r, order)
        orderstore.transition(r, order.client_order_id, S.FAILED, allowed_from={S.NEW}, message=str(e), source=source)
        return S.FAILED.value
    attempt = uuid.uuid4().hex
    # The authoritative risk check's read rides in the claim: no round trip of its own (see send).
    q = risk.read_query(order, acct)
    claim = functools.partial(orderstore.claim, r, order.client_order_id, attempt, source, account=order.account,
                              reduce_only=order.reduce_only, risk_read=(q.keys, q.args))
    c = claim()
    if c.verdict == "missing":
        # Enqueued by name without the client: the deadline starts now.
        _ensure_created(r, order)
        c = claim()
    if c.verdict == "claimed":
        return send(r, acct, order, attempt, c.deadline_ms,
                    risk_read=(q, c.risk_reply) if c.risk_reply is not None else None)
    if c.verdict == "reconcile":
        bc.count(r, acct.name, "redelivered_after_send")
        return reconcile_one(r, acct, order, c.deadline_ms, c.sent_at_ms)
    if c.verdict == "halted":
        bc.count(r, acct.name, "halted_refused")  # refused by the kill switch at the claim
        return c.state
    if c.verdict == "done":
        bc.count(r, acct.name, "duplicates_avoided")
        _honour_cancel(r, acct, order.client_order_id)
    return c.state


def _ensure_created(r: redis.Redis, order: Order) -> None:
    with contextlib.suppress(InvalidOrder):  # created meanwhile by someone else: fine
        orderstore.create(r, order, source="task")


def _honour_cancel(r: redis.Redis, acct: Account, coid: str) -> None:
    """A cancel was requested while the order was in flight: now that the broker has it, cancel
    it there (the cancel task may have given up waiting for the broker's order id)."""
    got = orderstore.read(r, coid)
    if got is None or not got.cancel_requested_ms or got.state is not S.OPEN or not got.broker_order_id:
        return
    from workers.actions import cancel_at_broker

    bc.count(r, acct.name, "cancels_after_place")
    cancel_at_broker(r, acct, got, deadline_ms=server_time_ms(r) + int(bc.DEFAULT_ACTION_DEADLINE_S * 1000))


def send(r: redis.Redis, acct: Account, order: Order, attempt: str, deadline_ms: int,
         risk_read: tuple[risk.ReadQuery, list[Any]] | None = None) -> str:
    """Send an order this delivery has claimed; resend only when the broker certainly did not take it.
    ``risk_read``: the risk read its claim made (else the check reads it: a resend after a reconcile)."""
    coid = order.client_order_id
    mine = ("attempt", attempt)
    inst = bc.instrument(acct, order)

    def gate(slot_us: int) -> tuple[str, int]:
        return orderstore.mark_sent(r, coid, attempt, slot_us=slot_us,
                                    late_tolerance_us=ratelimit.LATE_TOLERANCE_MS * 1000,
                                    account=order.account, reduce_only=order.reduce_only)

    def not_sent() -> None:
        # Certainly not placed: forget the send, so a redelivery may take over instead of reconciling.
        orderstore.transition(r, coid, S.SENDING, allowed_from={S.SENDING}, cas=mine, fields={"sent_at_ms": ""})

    def settle(state: OrderState, message: str) -> str:
        orderstore.transition(r, coid, state, allowed_from={S.SENDING}, cas=mine, message=message)
        return state.value

    try:
        # The authoritative risk check (common/risk.py): atomic across every worker and host for the
        # counted limits; refused -> REJECTED with the limit named, never sent (counted by check).
        risk.check(order, r, authoritative=True, account=acct, prefetched=risk_read)
    except RiskRefused as e:
        return settle(S.REJECTED, str(e))
    try:
        wire = marketprotection.as_sent(r, acct, order, inst)
    except InvalidOrder as e:
        return settle(S.REJECTED, str(e))
    try:
        broker_order_id = bc.call(r, acct, bc.ORDERS, lambda a: a.place(wire, inst), deadline_ms=deadline_ms,
                                  urgent=order.urgent, gate=gate, not_sent=not_sent)
    except bc.NotSent as e:
        if e.verdict == "expired":
            bc.count(r, acct.name, "expired")
        elif e.verdict == "halted":
            bc.count(r, acct.name, "halted_refused")
        got = orderstore.read(r, coid)
        return got.state.value if got else "LOST"
    except DeadlineExceeded as e:
        bc.count(r, acct.name, "expired")
        return settle(S.EXPIRED, str(e))
    except (InvalidOrder, LoginFailed) as e:  # InvalidOrder: raised before any request left (e.g. no symbol token)
        return settle(S.FAILED, str(e))
    except OrderRejected as e:
        bc.count(r, acct.name, "rejected")
        return settle(S.REJECTED, str(e))
    except redis.RedisError:
        # Redis, not the broker: the task runs again once it is back, and the order's state
        # decides (a recorded send is reconciled; an unrecorded one never left).
        raise
    except Exception as e:  # Ambiguous, or anything unexpected after the request may have left
        log.warning("order %s outcome unknown (%s: %s): reconciling", coid, type(e).__name__, e)
        orderstore.transition(r, coid, S.UNKNOWN, allowed_from={S.SENDING}, cas=mine, message=str(e))
        got = orderstore.read(r, coid)
        return reconcile_one(r, acct, order, deadline_ms, got.sent_at_ms if got else 0)
    # One round trip tells the state and whether a cancel is pending, and counts the order placed:
    # the order path reads nothing more.
    done = orderstore.apply(r, OrderUpdate(account=acct.name, client_order_id=coid, broker_order_id=broker_order_id,
                                           state=S.OPEN, pending_quantity=order.quantity, source="worker"),
                            count="placed")
    if done.cancel_pending:
        _honour_cancel(r, acct, coid)
        got = orderstore.read(r, coid)
        return got.state.value if got else S.OPEN.value
    return (done.state or S.OPEN).value


def book_lookup(r: redis.Redis, acct: Account, tag: str, deadline_ms: int) -> OrderUpdate | None:
    """The order carrying ``tag`` in the broker's book (one read, through the book's limiter)."""
    return bc.call(r, acct, bc.ORDERBOOK, lambda a: a.order_by_tag(tag), deadline_ms=deadline_ms, urgent=True)


def reconcile_one(r: redis.Redis, acct: Account, order: Order, deadline_ms: int, sent_at_ms: int) -> str:
    """The order may have reached the broker: find it by tag before anything is sent again."""
    coid = order.client_order_id
    settle_ms = sent_at_ms + bc.send_window_ms(acct)
    give_up_ms = max(settle_ms, server_time_ms(r)) + int(RECONCILE_BUDGET_S * 1000)
    while True:
        # When the book was asked for, not answered: an answer that arrives after settle_ms
        # may have been made before it, while the request was still in flight.
        asked_ms = server_time_ms(r)
        try:
            found = book_lookup(r, acct, coid, give_up_ms)
        except (LoginFailed, DeadlineExceeded) as e:
            log.warning("reconcile %s: %s; left to the sweeper", coid, e)
            return S.UNKNOWN.value
        except BrokerError as e:  # Ambiguous, OrderRejected: the read failed, the order is unchanged
            if isinstance(e, RateLimited | Ambiguous) and server_time_ms(r) < give_up_ms:
                time.sleep(0.2)
                continue
            log.warning("reconcile %s: order book unreadable (%s); left to the sweeper", coid, e)
            return S.UNKNOWN.value
        if found is not None:
            orderstore.apply_update(r, replace(found, source="reconcile"))
            bc.count(r, acct.name, "reconciled_adopted")
            _honour_cancel(r, acct, coid)
            got = orderstore.read(r, coid)
            return got.state.value if got else found.state.value
        now_ms = server_time_ms(r)
        if asked_ms < settle_ms:
            # The request may still be in flight (or the book lagging): look again shortly.
            time.sleep(max(0.0, min(0.25, (settle_ms - now_ms) / 1000)))
            continue
        # Certainly absent: the request's send window has passed and the book does not show it.
        return _absent(r, acct, order, deadline_ms, sent_at_ms, now_ms)


def _absent(r: redis.Redis, acct: Account, order: Order, deadline_ms: int, sent_at_ms: int, now_ms: int) -> str:
    coid = order.client_order_id
    cas = ("sent_at_ms", str(sent_at_ms) if sent_at_ms else "")
    got = orderstore.read(r, coid)
    if got is not None and got.cancel_requested_ms:
        if orderstore.transition(r, coid, S.CANCELLED, allowed_from={S.SENDING, S.UNKNOWN}, cas=cas,
                                 source="reconcile", message="cancelled: not at the broker, so not sent again"):
            bc.count(r, acct.name, "reconciled_absent_cancelled")
    elif now_ms < deadline_ms:
        attempt = uuid.uuid4().hex
        if orderstore.transition(r, coid, S.SENDING, allowed_from={S.SENDING, S.UNKNOWN}, cas=cas,
                                 fields={"attempt": attempt, "sent_at_ms": ""}, source="reconcile"):
            bc.count(r, acct.name, "reconciled_absent_resent")
            return send(r, acct, order, attempt, deadline_ms)
    elif orderstore.transition(r, coid, S.FAILED, allowed_from={S.SENDING, S.UNKNOWN}, cas=cas,
                               source="reconcile", message="not at the broker, and the deadline has passed"):
        bc.count(r, acct.name, "reconciled_absent_failed")
    got = orderstore.read(r, coid)
    return got.state.value if got else S.UNKNOWN.value
