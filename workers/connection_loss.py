"""Riding out a lost broker connection (Redis restarted, failed over, a network blip): the
worker's consumer keeps going, and the messages it held go back to their queues at once.

Celery reconnects by itself, and tasks running at that moment carry on (each order task runs
its work again while Redis is unreachable, see ``workers/placing.py``) and ack once done. Two
gaps remain, each closed here:

* Messages the worker had reserved but not started (waiting in the rate-limit bucket) are
  dropped from its memory, and kombu's restore at the loss fails while Redis is down, so they
  would sit in the transport's unacked hash until the visibility timeout, past most deadlines:
  :class:`RestoreDropped` puts exactly those back at the head of their queue as soon as the
  connection is back (kombu's own restore, atomic against any other restorer). A copy delivered
  twice anyway is a no-op by the order's state claim.
* Celery's cleanup of the lost connection can raise a non-connection error and stop the worker
  for good (:class:`Consumer`, installed as ``worker_consumer``).
* A task still running at the loss acks, once done, on the lost connection's channel, which
  kombu has closed meanwhile (its pools dropped, its transport gone): the ack raises
  ``AttributeError`` from the event loop and the worker exits. A Sentinel failover does it
  every time (tests/ha/test_failover.py). :class:`Consumer` acks those messages through its
  current channel instead (the unacked entry is the same in Redis, whichever channel removes
  it); should that fail too, the message is delivered again after the visibility timeout, and
  the order's state claim makes that a no-op.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from celery import bootsteps
from celery.worker import state as worker_state
from celery.worker.consumer import Consumer as CeleryConsumer

__all__ = ["Consumer", "RestoreDropped"]

log = logging.getLogger(__name__)

# How often the consumer tries to reconnect (kombu's ensure_connection: first wait, its growth
# and cap). kombu's defaults (2 s, +2 s, 30 s) wait 2 s, then 4 s more after a second refusal:
# a Sentinel failover takes 2-3 s, so the attempt at 2 s often found no master yet and the worker
# came back 6-9 s after the kill (bench/redis_ha.py). Each attempt is cheap (one connect per
# sentinel named in the URL).
RECONNECT_INTERVALS = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 2.0}


class Consumer(CeleryConsumer):  # type: ignore[misc]  # Celery ships no type hints
    """Celery's consumer, whose cleanup after a lost connection never stops the worker.

    Celery 5.7 collects the lost connection under a short socket timeout, then closes it. When
    the loss finds the channel reading a BRPOP reply, the collect's read times out before the
    channel is closed, and the connection's transport is dropped all the same; the close then
    closes that channel, whose restore of its unacked messages needs the dropped transport and
    raises ``AttributeError`` (no connection error, so Celery calls it unrecoverable and the
    worker exits with orders in its queues; tests/orders/test_connection_loss.py stages it).
    Nothing is lost by going on: the restore could not have reached Redis anyway, the held
    messages stay in the unacked hash, and :class:`RestoreDropped` (or the visibility timeout)
    puts them back once reconnected."""

    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        conn = self.connection
        if conn is not None:
            close = conn.close

            def close_tolerant() -> None:
                try:
                    close()
                except AttributeError as e:
                    log.warning("broker connection lost (%r); closing it failed (%r): reconnecting", exc, e)

            # Celery closes it through ignore_errors(connection, connection.close): the instance
            # attribute is what it calls, and the rest of Celery's cleanup runs as it should.
            conn.close = close_tolerant
        super().on_connection_error_after_connected(exc)

    def ensure_connected(self, conn: Any) -> Any:
        """Celery's, retrying every 0.5-2 s (:data:`RECONNECT_INTERVALS`) instead of 2 s, 4 s, ..."""
        conn.ensure_connection = functools.partial(conn.ensure_connection, **RECONNECT_INTERVALS)
        try:
            return super().ensure_connected(conn)
        finally:
            vars(conn).pop("ensure_connection", None)

    def call_soon_ack(self, p: Any, *args: Any, **kwargs: Any) -> Any:
        """Celery's, with an ack on a channel closed at a lost connection made on the current one
        instead of stopping the worker (see the module docstring)."""
        return super().call_soon_ack(_tolerating_closed_channel(p, self._ack_on_current_channel), *args, **kwargs)

    def _ack_on_current_channel(self, delivery_tag: str) -> None:
        """Ack ``delivery_tag`` through the consumer's current channel: what kombu's Redis QoS does
        (drop it from the unacked hash and index), so the visibility timeout does not deliver it
        again."""
        qos = self.task_consumer.channel.qos
        qos._remove_from_indices(delivery_tag).execute()


def _tolerating_closed_channel(ack: Any, ack_elsewhere: Any) -> Any:
    """``ack`` (a message's ``ack_log_error`` or ``reject_log_error``), but when it raises
    AttributeError because its channel is closed, an ack goes through ``ack_elsewhere`` and a
    reject is left to the visibility timeout."""

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return ack(*args, **kwargs)
        except AttributeError as e:
            message = getattr(ack, "__self__", None)
            channel = getattr(message, "channel", None)
            # Closed: the channel lost its transport, or the transport its connection.
            if getattr(getattr(channel, "connection", None), "client", None) is not None:
                raise  # a live channel: not the lost connection's, kombu's bug to see
            tag = getattr(message, "delivery_tag", None)
            reason: BaseException = e
            if getattr(ack, "__name__", "") == "ack_log_error" and tag:
                try:
                    ack_elsewhere(tag)
                    log.info("acked message %s on the new broker connection (its own was lost)", tag)
                    return None
                except Exception as again:
                    reason = again
            log.warning("could not ack message %s after the broker connection was lost (%r): it is delivered "
                        "again after the visibility timeout", tag, reason)  # fmt: skip
            return None

    return run

class RestoreDropped(bootsteps.StartStopStep):
    """Consumer step: after a lost broker connection, put back the messages this worker had
    reserved but not started (see the module docstring), once the new connection is up."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kw: Any) -> None:
        super().__init__(c, **kw)
        self.dropped: list[str] = []  # delivery tags
        on_close = c.on_close

        def on_close_remembering() -> None:
            # Called on a connection loss, just before the consumer forgets the requests it holds
            # but has not started: reserved ones, and those waiting in a rate-limit bucket.
            held = [req for req in tuple(worker_state.reserved_requests) if req not in worker_state.active_requests]
            for bucket in (getattr(c, "task_buckets", None) or {}).values():
                held += [item[0] for item in tuple(getattr(bucket, "contents", ()) or ())]
            for req in held:
                tag = getattr(getattr(req, "message", None), "delivery_tag", None)
                if tag:
                    self.dropped.append(str(tag))
            on_close()

        c.on_close = on_close_remembering

    def start(self, c: Any) -> None:
        if not self.dropped:
            return
        restore = getattr(getattr(getattr(c.task_consumer, "channel", None), "qos", None), "restore_by_tag", None)
        tags, self.dropped = self.dropped, []
        if restore is None:  # not the Redis transport: it redelivers unacked messages itself
            return
        for tag in tags:
            try:
                restore(tag)  # a message acked or restored meanwhile is not in the unacked hash: no-op
            except Exception as e:  # left to the visibility timeout
                log.warning("could not restore message %s after reconnecting: %s", tag, e)
        log.info("restored %d message(s) reserved but not started when the broker connection was lost", len(tags))


