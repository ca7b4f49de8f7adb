"""The sweeper (on Beat, every few seconds) and reconciliation: nothing stays in limbo.

* NEW (or claimed, never sent) past its deadline -> EXPIRED.
* Sent but unsettled past the deadline (SENDING with a send recorded, UNKNOWN) -> reconciled
  against the order book: adopted when the book has it; FAILED (or CANCELLED, when a cancel was
  requested) when its send window has passed and the book does not.
* A NEW order whose Celery message was lost (kombu pops it, then records it as unacked: Redis
  gone between the two, or before it answered the record) -> sent again once it is in no queue
  and held by no live worker (:func:`redrive_lost`); a copy too many is a no-op by the order's
  claim.
* An order claimed by a worker whose liveness mark has gone (a whole host crashed) and never
  sent -> sent again before its deadline, instead of waiting out kombu's visibility timeout
  past it; the new delivery's claim fences the dead one off.
* An OPEN order with a cancel pending (it reached the broker after its cancel task gave up) ->
  a cancel is enqueued on the urgent lane.
* A non-terminal order from before the current trading day that the book at the account's next
  login no longer shows (its last update was missed) -> EXPIRED (:func:`settle_stale`).
* An account whose day loss (realised + marked at the live ticks) has reached its
  ``max_daily_loss`` -> halted (:func:`common.risk.sweep_daily_loss`), first, so it waits on nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import redis

from common import keys, orderstore, risk, tradingday
from common.client import send_task_by_name
from common.errors import BrokerError, ConfigError, DeadlineExceeded
from common.models import OrderState
from common.queued import place_of
from common.redis import as_text, get_redis, server_time_ms
from workers import brokercall as bc
from workers import liveness

__all__ = ["STALE_MESSAGE", "reconcile", "redrive_lost", "settle_stale", "sweep"]

log = logging.getLogger(__name__)
S = OrderState

REDRIVE_AFTER_S = 3.0  # a NEW order this old whose message is nowhere in Redis is sent again by the sweeper
REDRIVE_CONFIRM_S = 0.5  # ... when its message is still nowhere this long after the first look
REDRIVE_MAX = 3  # at most this many redrives per order (bounds the copies if messages were misread)
LISTED_WITHIN_S = 2.0  # a live worker lists a message it received in its held set within this long
ORPHAN_AFTER_S = 1.0  # a claim this old whose worker has no liveness mark is taken over
BOOK_READ_S = 10.0  # how long one reconcile may wait for the book's slot and answer
STALE_MESSAGE = "not in the broker's book at the next trading day's login"


def reconcile(account_name: str, ids: list[str] | None = None, *, stale_before_ms: int = 0) -> dict[str, int]:
    """Read the account's order book once and apply it to every order brokergate knows; then
    settle orders stuck in SENDING (sent) / UNKNOWN whose send window and deadline have passed
    and which the book does not show (FAILED: they never reached the broker; CANCELLED when a
    cancel was requested). With ``stale_before_ms`` (the start of the trading day, at the day's
    first login), also settle as EXPIRED the non-terminal ones created before it that the book
    does not show (see :func:`settle_stale`)."""
    r = get_redis()
    acct = bc.account(account_name)
    asked_ms = server_time_ms(r)  # the book shows what reached the broker before this, no more
    try:
        book = bc.call(r, acct, bc.ORDERBOOK, lambda a: a.orders(), deadline_ms=asked_ms + int(BOOK_READ_S * 1000),
                       urgent=True)
    except DeadlineExceeded as e:
        raise BrokerError(f"{account_name}: order book not read: {e}") from e
    counts = {"applied": 0, "failed": 0, "stale": 0}
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
    window_ms = bc.send_window_ms(acct)
    for coid in ids or []:
        if coid in seen:
            continue
        got = orderstore.read(r, coid)
        if not got or got.account != account_name:
            continue
        if got.created_ms < stale_before_ms and not got.terminal and got.updated_ms < asked_ms:
            # Orders are day orders: a resting one ends with its trading day (cancelled by the
            # exchange, or filled while we missed the update), and the next day's book, read
            # with the day's fresh login, is empty of it. So it is over, and no verdict of ours
            # can tell which way: EXPIRED says "ended without us seeing how", is terminal (the
            # order leaves the sweeper's index and expires with the retention), and, being our
            # own verdict, is still overturned by any later broker sighting of a fill
            # (order_apply.lua). Not CANCELLED (a broker's word we never had, which no sighting
            # could overturn) nor FAILED (it did reach the broker). One updated after the book
            # was asked for is left to the next look. (An order the broker legitimately carries
            # over, e.g. a GTT, is shown by the book and so adopted above, never settled here.)
            if orderstore.transition(r, coid, S.EXPIRED, allowed_from={got.state},
                                     cas=("updated_ms", str(got.updated_ms)), source="login",
                                     message=STALE_MESSAGE):
                counts["stale"] += 1
            continue
        if got.state not in (S.SENDING, S.UNKNOWN):
            continue
        sent_at = got.sent_at_ms
        if not sent_at or asked_ms <= sent_at + window_ms or asked_ms <= got.deadline_ms:
            continue
        to, why = ((S.CANCELLED, "cancelled: not at the broker") if got.cancel_requested_ms
                   else (S.FAILED, "not at the broker, and the deadline has passed"))
        if orderstore.transition(r, coid, to, allowed_from={S.SENDING, S.UNKNOWN}, cas=("sent_at_ms", str(sent_at)),
                                 source="sweeper", message=why):
            counts["failed"] += 1
    return counts


def settle_stale(account_name: str) -> int:
    """After the account's login of a new trading day: reconcile every non-terminal order of the
    account created before that day (an OPEN order whose last update was missed stays OPEN, and
    indexed, forever otherwise) and settle those the book no longer shows as EXPIRED
    (:data:`STALE_MESSAGE`), counted as ``stale_expired``. Reads the book only when there is such
    an order. Also trims the account's order index, for an account that stopped placing orders.
    Returns how many were settled."""

    r = get_redis()
    now_ms = server_time_ms(r)
    orderstore.trim_account_index(r, account_name, now_ms)
    acct = bc.account(account_name)
    day_start_ms = tradingday.day_start_ms(acct, now_ms)
    ids = orderstore.stale_ids(r, account_name, day_start_ms)
    if not ids:
        return 0
    n = reconcile(account_name, ids, stale_before_ms=day_start_ms)["stale"]
    if n:
        log.warning("login: %d order(s) of %s from before %s were %s: EXPIRED", n, account_name,
                    tradingday.local_date(acct, now_ms).isoformat(), STALE_MESSAGE)
        bc.count(r, account_name, "stale_expired", n)
    return n


def _place_order_id(raw: Any, unacked: bool = False) -> str | None:
    """The client order id of a place_order message as kombu stores it: a queue's entry, or an
    entry of the unacked hash (``[message, exchange, routing key]``); None for anything else."""
    try:
        envelope = json.loads(raw)
        got = place_of(envelope[0] if unacked else envelope)
    except (ValueError, TypeError, IndexError, KeyError):
        return None
    return got.client_order_id if got else None


def _enqueued_ids(r: redis.Redis, account_names: Iterable[str]) -> tuple[set[str], dict[str, int]]:
    """client_order_ids of every place_order message waiting in these accounts' queues (each
    priority list kombu keeps), and of those a consumer recorded as held (kombu's unacked hash:
    reserved, in a rate-limit bucket, or running), each with when it was recorded (epoch ms, the
    consumer's clock), read in one MULTI so a message moving from a queue to a worker (or
    restored back) is seen in one place or the other. O(messages): call it only when there is a
    candidate."""
    names = [lst for a in sorted(set(account_names))
             for q in (keys.urgent_queue(a), keys.orders_queue(a)) for lst in keys.queue_lists(q)]
    with r.pipeline(transaction=True) as p:
        for name in names:
            p.lrange(name, 0, -1)
        p.hgetall(keys.KOMBU_UNACKED)
        p.zrange(keys.KOMBU_UNACKED_INDEX, 0, -1, withscores=True)
        *waiting, held, recorded_at = p.execute()
    queued = {coid for lst in waiting for raw in lst if (coid := _place_order_id(raw))}
    at_ms = {as_text(tag): int(score * 1000) for tag, score in recorded_at}
    unacked = {coid: at_ms.get(as_text(tag), 0) for tag, raw in held.items()
               if (coid := _place_order_id(raw, unacked=True))}
    return queued, unacked


def _send_place(order: dict[str, Any]) -> None:
    """Enqueue ``brokergate.place_order`` exactly as the client does (common.client.place_order)."""
    send_task_by_name(keys.PLACE_TASK, args=[order], queue=keys.place_queue(order["account"], bool(order.get("urgent"))))


def _redrive(r: redis.Redis, u: orderstore.Unsent, message: str, dead_attempt: str = "") -> bool:
    if not orderstore.mark_redriven(r, u.client_order_id, u.redrives, source="sweeper", message=message,
                                    dead_attempt=dead_attempt):
        return False
    got = orderstore.read(r, u.client_order_id)
    if got is None:
        return False
    try:
        _send_place(got.request)
    except Exception as e:  # the next sweep looks again
        log.error("sweeper: could not send %s again: %s", u.client_order_id, e)
        return False
    log.warning("sweeper: order %s %s: sent again", u.client_order_id, message)
    bc.count(r, u.account, "redriven")
    return True


def redrive_lost(r: redis.Redis, now_ms: int | None = None, confirm_s: float = REDRIVE_CONFIRM_S) -> int:
    """Send again the message of unsent orders before their deadline whose delivery is provably
    gone. A NEW order (older than :data:`REDRIVE_AFTER_S`, enqueued by a client whose publish
    succeeded) whose message is in no queue of the account and held by no worker, at two looks
    ``confirm_s`` apart: kombu's Redis transport pops a message (BRPOP) and only then records it
    as unacked (a second command), and a Redis crash, or a lost reply, between the two loses it.
    Recorded as unacked is not held either when no live worker lists it (:mod:`workers.liveness`)
    :data:`LISTED_WITHIN_S` after the record: Redis stopping after it ran the record but before
    it answered makes the consumer's append raise, and the message never reaches Celery (it would
    wait out the visibility timeout). A message merely queued behind a burst, or received by a
    live worker, is found and left alone. And an order claimed more than :data:`ORPHAN_AFTER_S`
    ago by a worker with no liveness mark, nothing sent: its message sits in kombu's unacked hash
    until the visibility timeout, past the deadline. A copy sent in a race anyway is a no-op by
    the order's claim. Returns how many were sent again."""
    now_ms = server_time_ms(r) if now_ms is None else now_ms
    rows = [u for u in orderstore.unsent(r, now_ms) if int(u.redrives or 0) < REDRIVE_MAX]
    claimed = [u for u in rows if u.state is S.SENDING and u.claimed_by
               and u.claimed_ms < now_ms - int(ORPHAN_AFTER_S * 1000)]
    workers = liveness.registered(r)
    # The alive marks read once, for the registered workers and the claimers alike.
    live_workers = liveness.alive(r, workers | {u.claimed_by for u in claimed})
    redriven = sum(_redrive(r, u, "redriven: its worker is gone", dead_attempt=u.attempt)
                   for u in claimed if u.claimed_by not in live_workers)
    dead = liveness.held_by(r, workers - live_workers)
    held_by_dead = set().union(*dead.values())
    candidates = {u.client_order_id: u for u in rows if u.state is S.NEW and u.enqueued
                  and u.created_ms < now_ms - int(REDRIVE_AFTER_S * 1000)}
    if candidates:
        accts = {u.account for u in candidates.values()}

        def nowhere() -> set[str]:
            queued, unacked = _enqueued_ids(r, accts)
            # Read after the unacked hash: a worker lists a message before it can ack it.
            listed = set().union(*liveness.held_by(r, live_workers).values())
            # Recorded as held counts as somewhere while a live worker lists it, or while it is too
            # young to be listed yet (unless a dead worker listed it): a record whose reply was
            # lost (Redis gone between running kombu's append and answering it) reached no worker.
            held_live = {coid for coid, at_ms in unacked.items() if coid in listed
                         or (coid not in held_by_dead and at_ms > now_ms - int(LISTED_WITHIN_S * 1000))}
            return set(candidates) - queued - held_live

        lost = nowhere()
        if lost and confirm_s > 0:
            # A message between its pop and its unacked record is in neither place for a moment.
            time.sleep(confirm_s)
            lost &= nowhere()
        redriven += sum(_redrive(r, candidates[coid], "redriven: its worker is gone" if coid in held_by_dead
                                 else "redriven: message lost") for coid in sorted(lost))
    # A dead worker's marks go once every order it held is no longer waiting to be sent again
    # (settled, claimed by another, or already redriven by an earlier sweep): read from this
    # sweep's one scan, so an order redriven just now keeps its worker's marks one sweep longer.
    waiting = {u.client_order_id for u in rows if not int(u.redrives or 0)}
    for name, held in dead.items():
        if not held & waiting:
            liveness.forget(r, name)
    return redriven


def _daily_loss(r: redis.Redis) -> int:
    try:
        return len(risk.sweep_daily_loss(r))
    except Exception:  # the sweeper's own work goes on whatever a halt ran into
        log.exception("sweeper: the daily-loss check failed")
        return 0


def sweep() -> dict[str, int]:
    """Settle what dead workers left behind (see the module docstring)."""
    r = get_redis()
    now_ms = server_time_ms(r)
    counts = {"expired": 0, "reconciled": 0, "redriven": 0, "cancels": 0, "risk_halted": _daily_loss(r)}
    stuck: dict[str, list[str]] = {}
    for coid, _due in orderstore.active_ids(r, now_ms):
        got = orderstore.read(r, coid)
        if got is None:
            orderstore.forget_index(r, coid)
            continue
        state = got.state
        if state is S.NEW or (state is S.SENDING and not got.sent_at_ms):
            if now_ms > got.deadline_ms and orderstore.transition(
                    r, coid, S.EXPIRED, allowed_from={state}, cas=("sent_at_ms", ""), source="sweeper",
                    message="not sent before its deadline"):
                counts["expired"] += 1
                bc.count(r, got.account, "expired")
        elif state in (S.SENDING, S.UNKNOWN):
            stuck.setdefault(got.account, []).append(coid)
        elif state is S.OPEN:
            if got.cancel_requested_ms:
                # At the broker after its cancel task gave up waiting for it: cancel it there now.
                send_task_by_name(keys.CANCEL_TASK, args=[got.account, coid], queue=keys.urgent_queue(got.account))
                counts["cancels"] += 1
                orderstore.recheck_later(r, coid, now_ms + orderstore.CANCEL_RECHECK_S * 1000 * 5)
                continue
            # Resting and silent for OPEN_RECHECK_S: read the book once, look again later.
            stuck.setdefault(got.account, []).append(coid)
            orderstore.recheck_later(r, coid, now_ms + orderstore.OPEN_RECHECK_S * 1000)
    counts["redriven"] = redrive_lost(r, now_ms)
    for acct_name, ids in stuck.items():
        try:
            counts["reconciled"] += reconcile(acct_name, ids)["applied"]
        except (BrokerError, ConfigError) as e:
            log.warning("sweeper: reconcile of %s failed: %s", acct_name, e)
    return counts
