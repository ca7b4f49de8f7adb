"""Order tasks by stable names (``brokergate.place_order``, ``cancel_order``, ``modify_order``,
``sweep_orders``, ``reconcile_account``): thin wrappers that ride out Redis outages around the
work in :mod:`workers.placing`, :mod:`workers.actions` and :mod:`workers.sweeper` (the one
broker-call policy they share is :mod:`workers.brokercall`).

Redis unreachable (a restart, a failover) mid-task: the task runs the same work again once it
is back (:func:`_riding_out_redis`), within the order's deadline plus a grace. That is safe
because every step decides from the state in Redis, not from how far the last run got: claim
retakes an order never sent, and one whose ``sent_at_ms`` was recorded (the request may have
left) is reconciled by tag before anything is sent. Past the budget the message is rejected
back to its queue (or, Redis still down, restored after the visibility timeout) and decided the
same way. Messages the worker had reserved but not started are put back by the worker when its
broker connection is restored (``workers/app.py``).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from celery import shared_task
from celery.exceptions import Reject

from common import accountstate, keys, orderstore
from common.client import send_task_by_name
from common.models import Order, message_client_order_id
from common.redis import get_redis, server_time_ms
from workers import liveness  # its signal handlers mark this worker alive
from workers.actions import run_cancel, run_modify
from workers.brokercall import DEFAULT_ACTION_DEADLINE_S
from workers.placing import run_place
from workers.sweeper import reconcile, sweep

__all__ = ["cancel_order", "modify_order", "place_order", "reconcile_account", "sweep_orders"]

log = logging.getLogger(__name__)

REDIS_RETRY_S = (0.05, 0.1, 0.2, 0.5)  # full-jitter caps between runs while Redis is unreachable, then 0.5 s
REDIS_GRACE_S = 10.0  # past its deadline, how long a task keeps waiting for Redis to settle its order
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)  # BusyLoadingError (loading the AOF) included


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


@shared_task(name=keys.PLACE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def place_order(self: Any, order: dict[str, Any]) -> str:
    """Place one generic order dict (docs/architecture.md § Interfaces)."""
    _warn_eta(self)
    if isinstance(order, dict) and not order.get("client_order_id") and self.request.id:
        # Enqueued by name without an id: derive it from the message, so that a redelivery of
        # this message is the same order (a random id per delivery would send it twice).
        order = {**order, "client_order_id": message_client_order_id(self.request.id)}
    source = liveness.claimer(self.request.hostname or "")
    deadline_s = order.get("deadline_s") if isinstance(order, dict) else None
    if not isinstance(deadline_s, int | float):
        deadline_s = Order.__dataclass_fields__["deadline_s"].default
    budget_s = float(deadline_s) + REDIS_GRACE_S
    return _riding_out_redis(f"place_order {order.get('client_order_id') if isinstance(order, dict) else ''}",
                             lambda: run_place(order, source=source), budget_s)


def _enqueued_at(enqueued_ms: int | None, started: float) -> Callable[[], int]:
    """The enqueue time a cancel or modify counts its deadline from: the client's stamp, or for
    a message without one (an older client) when this delivery started, read once (a run again
    after a Redis outage keeps counting from the same moment)."""
    stamped: list[int] = [enqueued_ms] if enqueued_ms else []

    def at() -> int:
        if not stamped:
            stamped.append(server_time_ms(get_redis()) - int((time.monotonic() - started) * 1000))
        return stamped[0]

    return at


@shared_task(name=keys.CANCEL_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def cancel_order(self: Any, account: str, client_order_id: str, deadline_s: float | None = None,
                 enqueued_ms: int | None = None) -> str:
    """Cancel an order by its client order id (a NEW order is cancelled before it is sent).
    ``enqueued_ms``: the client's Redis time at enqueue; the deadline counts from it."""
    _warn_eta(self)
    deadline = float(deadline_s or DEFAULT_ACTION_DEADLINE_S)
    enqueued = _enqueued_at(enqueued_ms, time.monotonic())
    return _riding_out_redis(
        f"cancel_order {client_order_id}",
        lambda: run_cancel(account, client_order_id, deadline, enqueued()),
        deadline + REDIS_GRACE_S)


@shared_task(name=keys.MODIFY_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def modify_order(self: Any, account: str, client_order_id: str, changes: dict[str, Any],
                 deadline_s: float | None = None, seq: int | None = None, enqueued_ms: int | None = None) -> str:
    """Change quantity, price, trigger_price, order_type or validity of an open order. ``seq``:
    the modify sequence the client stamped (modifies compose in seq order; one not newer than
    the last applied one was composed into it and is dropped); ``enqueued_ms``: the client's
    Redis time at enqueue, the deadline counts from it."""
    _warn_eta(self)
    deadline = float(deadline_s or DEFAULT_ACTION_DEADLINE_S)
    enqueued = _enqueued_at(enqueued_ms, time.monotonic())
    # The lock token is the message id: every run and every delivery of this message (one
    # redelivered after a SIGKILL included) retakes its own lock instead of waiting it out.
    token = str(self.request.id or "") or uuid.uuid4().hex
    stamped: list[int] = [seq] if seq else []

    def work() -> str:
        if not stamped:  # enqueued by name without a seq: stamped (changes recorded) once per message
            stamped.append(orderstore.next_modify_seq(get_redis(), client_order_id, changes,
                                                      message_id=str(self.request.id or "")))
        return run_modify(account, client_order_id, changes, deadline, stamped[0], token, enqueued())

    return _riding_out_redis(f"modify_order {client_order_id}", work, deadline + REDIS_GRACE_S)


@shared_task(name=keys.SWEEP_TASK, acks_late=True)
def sweep_orders() -> dict[str, int]:
    return sweep()


@shared_task(name=keys.RECONCILE_TASK, acks_late=True)
def reconcile_account(account: str) -> dict[str, int]:
    """Apply the account's order book to every order brokergate knows (after a feed gap)."""
    r = get_redis()
    ids = [coid for coid, _ in orderstore.active_ids(r)]
    done = reconcile(account, ids)
    # A feed gap may have hidden fills from the positions too: read them again (its own task, so
    # a slow or failing read never holds up the order book's).
    send_task_by_name(keys.ACCOUNT_STATE_TASK, args=[account], queue=keys.DEFAULT_QUEUE)
    return done


@shared_task(name=keys.ACCOUNT_STATE_TASK, acks_late=True)
def refresh_account_state(account: str, kinds: list[str] | None = None) -> dict[str, int]:
    """Read the account's positions, holdings, funds and trades from the broker into Redis
    (common/accountstate.py): after a login, after a feed gap, on demand, and on Beat's interval."""
    wanted = [k for k in accountstate.KINDS if kinds is None or k in kinds]
    return accountstate.refresh_all(account, wanted, relogin=True)
