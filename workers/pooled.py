"""The pooled worker: one Celery worker process serving the order lanes of many accounts, none of
which can starve another (``brokergate worker --pooled``, docs/architecture.md § Pooled workers).

A dedicated worker reads one account's queues through one kombu channel with one prefetch. Many
accounts on that one channel would share it: an account with 500 queued orders would fill every
prefetch slot and every thread (each sleeping in the limiter for a slot seconds away), and the
Redis transport's ``priority`` order would read the first account's queue before the next one's
for as long as it has messages. So the pooled worker reserves per account, with kombu's own
per-channel QoS: :class:`PooledTasks` (standing in for Celery's ``Tasks`` consumer step) gives
every queue a channel of its own,

* ``orders.<A>``: prefetch = the account's ``concurrency``;
* ``orders.<A>.urgent``: prefetch 1, so the urgent lane never waits behind the account's orders,

and the pool has as many threads as all prefetches together (the launch sets ``-c``), so no
received message waits for a thread and an account's backlog holds at most its own lanes. The
Redis transport gives each channel its own connection and BRPOP; its poller stops a channel's
BRPOP while the channel's credit is used and sends it again on the hub tick after an ack gives
credit back (acks from pool threads reach the hub through ``call_soon``, which wakes it). The
caps stay the Redis limiter's (``common/ratelimit.py``); Celery's per-task-type rate limit is off
in a pooled worker (one bucket for every account would queue them behind each other).

:class:`LaneConsumers` is what Celery sees as ``c.task_consumer``: the surface Celery uses
(``consume``, ``cancel``, ``close``, ``qos``, ``queues``, ``on_message``, ``add_queue``,
``consuming_from``, ``cancel_by_queue``, ``channel``) fanned out to one kombu ``Consumer`` per
lane. The worker knows it is pooled from :data:`POOLED_ENV`, set by ``brokergate worker
--pooled`` (``brokergate/launch.py``); ``workers/app.py`` then installs :class:`PooledConsumer`,
the connection-loss tolerant consumer (``workers/connection_loss.py``) with this step in its
blueprint. Dedicated workers are untouched.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from celery.worker import state as worker_state
from celery.worker.consumer.tasks import Tasks
from kombu.common import QoS, ignore_errors

from common import keys
from workers.connection_loss import Consumer

__all__ = ["POOLED_ENV", "LaneConsumers", "PooledConsumer", "PooledTasks", "is_pooled", "lanes"]

log = logging.getLogger(__name__)

POOLED_ENV = "BROKERGATE_WORKER_POOLED"  # "1": this worker is pooled (brokergate/launch.py sets it)
URGENT_PREFETCH = 1


def is_pooled(environ: Mapping[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(POOLED_ENV, "") == "1"


def account_concurrency(acct: Any) -> int:
    """An account's threads for its orders (an Account, or a mapping in tests; default 2): a
    dedicated worker's -c and a pooled worker's orders-lane prefetch."""
    conc = getattr(acct, "concurrency", None)
    if conc is None and isinstance(acct, Mapping):
        conc = acct.get("concurrency")
    return max(1, int(conc or 2))


def lanes(accounts: Mapping[str, Any], names: Iterable[str]) -> list[tuple[str, int]]:
    """``(queue, prefetch)`` of each lane of the accounts ``names``, each account's urgent lane
    then its orders lane; the pool's threads are the sum of the prefetches."""
    out: list[tuple[str, int]] = []
    for name in names:
        out += [(keys.urgent_queue(name), URGENT_PREFETCH), (keys.orders_queue(name), account_concurrency(accounts[name]))]
    return out


def lane_prefetch(accounts: Mapping[str, Any]) -> Callable[[str], int]:
    """The prefetch of a queue's lane: the account's concurrency for its orders queue, 1 for its
    urgent queue and for any queue that is no account's."""
    table = dict(lanes(accounts, accounts))
    return lambda queue: table.get(queue, URGENT_PREFETCH)


def _queue_of(req: Any) -> str | None:
    info = getattr(req, "delivery_info", None) or {}
    return info.get("routing_key") if isinstance(info, dict) else None


class LaneConsumers:
    """``c.task_consumer`` of a pooled worker: one kombu Consumer on a channel of its own per
    queue, with the lane's prefetch (see the module docstring)."""

    def __init__(self, connection: Any, app: Any, prefetch: Callable[[str], int],
                 on_decode_error: Callable[..., Any] | None = None) -> None:
        self.connection = connection
        self.app = app
        self.prefetch = prefetch
        self.on_decode_error = on_decode_error
        self.lanes: dict[str, Any] = {}  # queue name -> kombu Consumer
        self.retired: list[Any] = []  # cancelled lanes: their channels close with the rest
        self._on_message: Callable[..., Any] | None = None
        # Requests still running from before a reconnect, per queue: they count against the new
        # channel's credit until they end, so an account never runs more than its lanes allow.
        self.carried: dict[str, set[Any]] = {}
        for req in tuple(worker_state.active_requests):
            queue = _queue_of(req)
            if queue:
                self.carried.setdefault(queue, set()).add(req)

    # --- what Celery calls ---
    @property
    def on_message(self) -> Callable[..., Any] | None:
        return self._on_message

    @on_message.setter
    def on_message(self, callback: Callable[..., Any] | None) -> None:
        self._on_message = callback
        for consumer in self.lanes.values():
            consumer.on_message = callback

    @property
    def queues(self) -> list[Any]:
        return [q for consumer in self.lanes.values() for q in consumer.queues]

    @property
    def channel(self) -> Any:
        """A channel of this connection (the first lane's): the unacked hash it restores from is
        the transport's, not the channel's (``RestoreDropped``)."""
        return next(iter(self.lanes.values())).channel if self.lanes else self.connection.default_channel

    def add_queue(self, queue: Any) -> None:
        if queue.name in self.lanes:
            return
        channel = self.connection.channel()
        channel.basic_qos(0, self.prefetch(queue.name), False)
        self._guard_credit(channel, queue.name)
        consumer = self.app.amqp.TaskConsumer(channel, queues=[queue], on_decode_error=self.on_decode_error)
        consumer.on_message = self._on_message
        self.lanes[queue.name] = consumer

    def consume(self) -> None:
        for consumer in self.lanes.values():
            consumer.consume()

    def consuming_from(self, queue: str) -> bool:
        return queue in self.lanes and bool(self.lanes[queue].consuming_from(queue))

    def qos(self, prefetch_count: int | None = None, apply_global: bool = False, **_: Any) -> None:
        # Each lane's prefetch is its own and fixed; Celery's one worker-wide count (raised for ETA
        # messages, which order queues never carry) has nothing to set.
        log.debug("pooled worker: worker-wide prefetch %s ignored (per-lane prefetch)", prefetch_count)

    def cancel_by_queue(self, queue: str) -> None:
        consumer = self.lanes.pop(queue, None)
        if consumer is not None:
            # Cancelled, not closed: closing would put back the messages its running tasks hold.
            ignore_errors(self.connection, consumer.cancel)
            self.retired.append(consumer)

    def cancel(self) -> None:
        for consumer in self.lanes.values():
            ignore_errors(self.connection, consumer.cancel)

    def close(self) -> None:
        self.cancel()
        for consumer in [*self.lanes.values(), *self.retired]:
            try:
                consumer.channel.close()
            except Exception as e:  # as workers/connection_loss.py: a cleanup never stops the worker
                # A lost connection's channel cannot put its unacked messages back; they stay in
                # the transport's unacked hash for RestoreDropped or the visibility timeout.
                log.warning("closing the channel of %s failed (%r)", [q.name for q in consumer.queues], e)
        self.retired = []

    # --- credit ---
    def _guard_credit(self, channel: Any, queue: str) -> None:
        carried = self.carried.get(queue)
        if not carried:
            return
        qos = channel.qos
        own = qos.can_consume

        def can_consume() -> bool:
            carried.intersection_update(worker_state.active_requests)
            if not carried:
                return bool(own())
            # kombu's virtual QoS arithmetic (delivered and not acked), plus the carried requests.
            return len(qos._delivered) - len(qos._dirty) + len(carried) < qos.prefetch_count

        qos.can_consume = can_consume


class PooledTasks(Tasks):  # type: ignore[misc]  # Celery ships no type hints
    """Celery's ``Tasks`` consumer step for a pooled worker: the task consumer is
    :class:`LaneConsumers`. Keeps Tasks' name, so the steps that require Tasks (Control,
    ``RestoreDropped``) start after this one; stop, shutdown and info are Tasks' own."""

    name = Tasks.name

    def start(self, c: Any) -> None:
        from common.settings import accounts

        c.update_strategies()
        # Per-channel QoS: Celery's worker-wide prefetch reduction after a reconnect does not apply
        # (LaneConsumers counts the carried requests per lane instead).
        c.qos_global = False
        consumer = LaneConsumers(c.connection, c.app, lane_prefetch(accounts()), on_decode_error=c.on_decode_error)
        for queue in c.app.amqp.queues.consume_from.values():
            consumer.add_queue(queue)
        c.task_consumer = consumer
        total = sum(consumer.prefetch(q) for q in consumer.lanes)
        c.qos = QoS(consumer.qos, total)
        log.info("pooled worker: %d lanes, %d prefetch in all", len(consumer.lanes), total)


class PooledConsumer(Consumer):  # type: ignore[misc]
    """The connection-loss tolerant consumer whose blueprint runs :class:`PooledTasks` where
    Celery's runs ``Tasks`` (``worker_consumer`` of a pooled worker, workers/app.py)."""

    class Blueprint(Consumer.Blueprint):  # type: ignore[misc]
        def _finalize_steps(self, steps: Any) -> Sequence[Any]:
            order = super()._finalize_steps(steps)
            return [PooledTasks if step is Tasks else step for step in order]
