"""The Celery app: ``celery -A workers.app worker -Q orders.<account>.urgent,orders.<account>``.

Queues: ``orders.<account>`` (new orders) and ``orders.<account>.urgent`` (cancels, modifies,
orders marked urgent) for every configured account, plus ``auth`` (logins, instrument
refresh) and ``default`` (sweeper, reconciliation). Every task goes through ONE router,
:func:`route_task`; ``tests/orders/test_routing.py`` fails when a task has no declared queue.

Settings, each against a hazard of docs/architecture.md § Orders:

* ``worker_prefetch_multiplier = 1``: a worker holds at most one message per process, so no
  order is held hostage behind a busy process.
* No ETA / countdown on order queues (the client never sets them, and the order tasks warn
  when a message carries one): an ETA message is held unacked in the worker's memory, and with
  the Redis transport it is redelivered after the visibility timeout while still held: the
  classic duplicate. The limiter waits inside the task instead, and the deadline, not an ETA,
  decides whether an order may still be sent.
* ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only when its
  task ends, so a process killed mid-order leaves the message to be delivered again (a dead
  prefork child at once; a dead worker after the visibility timeout). The order's state claim
  (``common/orderstore.py``: an atomic NEW -> SENDING with a fencing token checked again just
  before the request leaves) turns every redelivery into a no-op or a reconciliation, so
  duplicates are impossible rather than unlikely.
* ``visibility_timeout`` = :data:`VISIBILITY_TIMEOUT_S` (60 s; ``BROKERGATE_VISIBILITY_TIMEOUT_S``
  overrides). Longer than a healthy order task (default deadline 30 s + read timeout 7 s + a
  reconciliation), so a healthy task is not redelivered while it runs; short enough that an
  order with a long deadline whose worker died is still sent in time. A too-short value costs
  only wasted slots (the redelivery takes over an unsent claim), never a duplicate. Abandoned
  messages are looked for every :data:`RESTORE_INTERVAL_S` (kombu's default is ~100 s), under
  kombu's restore mutex, which a worker killed mid-restore holds until it expires: after
  :data:`RESTORE_MUTEX_EXPIRE_S`, not kombu's 300 s (a pass takes milliseconds; two passes at once
  only restore a message twice, which the claim makes harmless). What a dead worker leaves behind before its deadline is settled by the sweeper anyway.
* ``queue_order_strategy = "priority"``: the Redis transport reads a worker's queues in the
  order given with -Q instead of round-robin, so ``-Q orders.X.urgent,orders.X`` always takes
  an urgent message first. Run one small worker on ``orders.X.urgent`` alone as well, so an
  exit never waits for a busy worker.
* Celery ``rate_limit``: a task's rate limit is per task type and per worker process, so one
  shared ``brokergate.place_order`` cannot carry a limit per account. A worker consumes one
  account's queues, so at start (``worker_init``) the worker sets the place task's rate limit
  from the account of its -Q queues (the tightest one if it consumes several accounts): the
  account's ``rate_limit`` if set, else the rate of its shortest order window (see
  ``Account.celery_rate_limit`` for why not the tightest average), times the worker's
  concurrency (see ``worker_rate_limit``). It is the first line of defence
  only, keeping a worker from piling up on the limiter; the guarantee is the Redis limiter
  (``common/ratelimit.py``). A pooled worker (``workers/pooled.py``) sets none: its one bucket
  would hold every account's orders behind the busiest account's.
  Cancels and modifies have no Celery rate limit: an exit must not wait in a worker's bucket.
* A lost broker connection (Redis restarted): Celery reconnects by itself; what it leaves
  undone (messages held but not started, a cleanup that stops the worker) is
  ``workers/connection_loss.py``'s.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, signals
from celery.signals import worker_init
from kombu import Queue

from beat import schedule as beat_schedule
from common import keys, redisconf
from common.errors import ConfigError
from common.keys import (
    CANCEL_TASK,
    LOGIN_TASK,
    MODIFY_TASK,
    PLACE_TASK,
    RECONCILE_TASK,
    REFRESH_INSTRUMENTS_TASK,
    SWEEP_TASK,
)
from common.redis import redis_conf
from common.settings import Account, accounts, require_secrets, settings
from workers.connection_loss import Consumer, RestoreDropped
from workers.pooled import PooledConsumer, is_pooled

__all__ = [
    "PLACE_TASK",
    "RESTORE_INTERVAL_S",
    "RESTORE_MUTEX_EXPIRE_S",
    "TASK_QUEUES",
    "VISIBILITY_TIMEOUT_S",
    "RestoreDropped",
    "app",
    "declared_queues",
    "queue_for_order",
    "route_task",
]

log = logging.getLogger(__name__)

VISIBILITY_TIMEOUT_S = int(os.environ.get("BROKERGATE_VISIBILITY_TIMEOUT_S", "60"))
RESTORE_INTERVAL_S = max(1, min(5, VISIBILITY_TIMEOUT_S // 4))
RESTORE_MUTEX_EXPIRE_S = 10

# Tasks routed by name to a fixed queue; the order tasks are routed by their account.
TASK_QUEUES: dict[str, str] = {
    LOGIN_TASK: keys.AUTH_QUEUE,
    REFRESH_INSTRUMENTS_TASK: keys.AUTH_QUEUE,
    SWEEP_TASK: keys.DEFAULT_QUEUE,
    RECONCILE_TASK: keys.DEFAULT_QUEUE,
    keys.ACCOUNT_STATE_TASK: keys.DEFAULT_QUEUE,
}


def _configured_accounts() -> dict[str, Account]:
    try:
        return accounts()
    except ConfigError as e:
        # The app must import without an accounts file (docs, the CLI's --help); workers for
        # order queues name their queues with -Q, which Celery creates on demand.
        log.debug("no accounts: %s", e)
        return {}


def queue_for_order(order: dict[str, Any]) -> str:
    """The queue of a ``brokergate.place_order`` message: urgent orders skip the line."""
    return keys.place_queue(str(order.get("account") or ""), bool(order.get("urgent")))


def _account_arg(args: Any, kwargs: Any) -> str:
    """The account of a cancel or modify message (first argument or keyword)."""
    kwargs = kwargs or {}
    first = args[0] if args else kwargs.get("order") or kwargs.get("account")
    if isinstance(kwargs.get("account"), str):
        return kwargs["account"]
    return str(first or "")


def route_task(name: str, args: Any, kwargs: Any, options: dict[str, Any], task: Any = None,
               **kw: Any) -> dict[str, Any] | None:
    """The one routing table (a Celery router function).

    ``brokergate.place_order(order)`` -> ``orders.<account>`` or ``.urgent`` when ``order["urgent"]``;
    ``brokergate.modify_order(account, ...)`` / ``brokergate.cancel_order(account, ...)`` ->
    ``orders.<account>.urgent``; login and instrument refresh -> ``auth``; sweeper and
    reconciliation -> ``default``."""
    if name == PLACE_TASK:
        order = args[0] if args else (kwargs or {}).get("order", {})
        return {"queue": queue_for_order(order if isinstance(order, dict) else {})}
    if name in (MODIFY_TASK, CANCEL_TASK):
        return {"queue": keys.urgent_queue(_account_arg(args, kwargs))}
    return {"queue": TASK_QUEUES.get(name, keys.DEFAULT_QUEUE)}


def declared_queues(accts: dict[str, Account] | None = None) -> list[str]:
    """Every queue brokergate uses for these accounts, urgent lanes first."""
    accts = _configured_accounts() if accts is None else accts
    names: list[str] = []
    for name in accts:
        names += [keys.urgent_queue(name), keys.orders_queue(name)]
    return [*names, keys.AUTH_QUEUE, keys.DEFAULT_QUEUE]


app = Celery("brokergate", include=["workers.orders", "workers.login"])
app.steps["consumer"].add(RestoreDropped)
# A pooled worker (brokergate worker --pooled) reads each account's lanes on channels of their own.
_consumer = PooledConsumer if is_pooled() else Consumer
app.conf.update(
    worker_consumer=f"{_consumer.__module__}:{_consumer.__qualname__}",
    task_ignore_result=True,  # handles read bg:order:<id>, never Celery results
    timezone="Asia/Kolkata",
    enable_utc=True,
    task_queues=[Queue(q, routing_key=q) for q in declared_queues()],
    task_default_queue=keys.DEFAULT_QUEUE,
    task_routes=(route_task,),
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    # broker_url, result_backend and their options: a plain URL, TLS + ACL, or Sentinel (common/redisconf.py)
    **redisconf.celery_conf(
        redis_conf(),
        {
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            "queue_order_strategy": "priority",
            "unacked_restore_interval": RESTORE_INTERVAL_S,
            "unacked_restore_throttle": 1,
            "unacked_mutex_expire": RESTORE_MUTEX_EXPIRE_S,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            "retry_on_timeout": True,
        },
        {"visibility_timeout": VISIBILITY_TIMEOUT_S},
    ),
    worker_send_task_events=True,  # Flower
    task_send_sent_event=True,
)

beat_schedule.configure(app)


def worker_rate_limit(
    queue_names: list[str], accts: dict[str, Account] | None = None, concurrency: int = 1
) -> str | None:
    """The Celery rate limit of the place task in a worker consuming ``queue_names``: that of the
    account whose order queues it consumes (the tightest if several), times the worker's
    concurrency; None without any.

    Times the concurrency because Celery's bucket is per worker process and a worker whose
    bucket binds starves its own pool (measured: at 10/s with threads x10, 36% of the cap; with
    the bucket at cap x concurrency the Redis limiter alone paces it, at 94-95%). The bucket
    then only stops a worker from running ahead of what the caps could ever allow."""
    accts = _configured_accounts() if accts is None else accts
    rates: list[tuple[float, str]] = []
    for name, acct in accts.items():
        if keys.orders_queue(name) in queue_names or keys.urgent_queue(name) in queue_names:
            count, _, unit = acct.celery_rate_limit().partition("/")
            per_s = float(count) / {"s": 1, "m": 60, "h": 3600}.get(unit or "s", 1)
            rates.append(per_s * max(1, concurrency))
    return f"{min(rates):.4g}/s" if rates else None


def accounts_needing_secrets(queue_names: list[str], accts: dict[str, Account] | None = None) -> list[Account]:
    """The accounts whose secrets a worker consuming ``queue_names`` may use: those of its order
    queues (a refused token is renewed by a login in the worker), and every account when it
    consumes ``auth`` (logins, instrument refresh) or ``default`` (reconciliation logs in too)."""
    accts = _configured_accounts() if accts is None else accts
    if keys.AUTH_QUEUE in queue_names or keys.DEFAULT_QUEUE in queue_names:
        return list(accts.values())
    return [a for name, a in accts.items()
            if keys.orders_queue(name) in queue_names or keys.urgent_queue(name) in queue_names]


@signals.setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **kw: Any) -> None:
    """Workers and Beat log as every other brokergate process: ``BROKERGATE_LOG_JSON``, the
    secret-redacting filter on the one handler, and ``BROKERGATE_LOG_LEVEL`` when it is set
    (else Celery's ``-l``). Connecting this signal also stops Celery from installing its own
    handlers, which would write unredacted (Celery sends it in the prefork children too)."""
    from common.logs import setup_logging

    st = settings()
    level = st.log_level
    if "BROKERGATE_LOG_LEVEL" not in os.environ and loglevel:
        level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else str(loglevel).upper()
    setup_logging(level, st.log_json)


@worker_init.connect
def _require_secrets(sender: Any = None, **kw: Any) -> None:
    """A worker that would need a secret it has not got refuses to start, naming the variable,
    instead of failing at the first login hours later (secrets are read lazily elsewhere)."""
    try:
        consumed = list(sender.app.amqp.queues.consume_from or {})
    except AttributeError:
        return
    try:
        require_secrets(accounts_needing_secrets(consumed))
    except ConfigError as e:
        log.critical("worker cannot start: %s", e)
        # SystemExit, not the ConfigError: Celery logs and swallows an Exception raised by a
        # signal handler, and the worker would run on without the secret.
        raise SystemExit(f"brokergate worker: configuration error: {e}") from None


@worker_init.connect
def _set_rate_limit(sender: Any = None, **kw: Any) -> None:
    if is_pooled():
        # One bucket per task type would hold every account's orders behind the busiest account's
        # (workers/pooled.py): the lanes' prefetch and the Redis limiter pace a pooled worker.
        log.info("pooled worker: no Celery rate_limit on place_order")
        return
    try:
        consumed = list(sender.app.amqp.queues.consume_from or {})
    except AttributeError:
        return
    limit = worker_rate_limit(consumed, concurrency=int(getattr(sender, "concurrency", 1) or 1))
    if limit:
        sender.app.tasks[PLACE_TASK].rate_limit = limit
        log.info("place_order rate_limit=%s for queues %s", limit, ",".join(consumed))
