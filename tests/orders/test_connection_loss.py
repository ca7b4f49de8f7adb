"""The worker's consumer survives a lost broker connection whatever state kombu's channel is in
(docs/architecture.md § Reliability).

Seen in CI (tests/orders/test_redis_outage.py, about one run in twenty): Redis restarted while
the worker held messages in its rate-limit bucket. Celery's cleanup
(``Consumer.on_connection_error_after_connected``) collects the connection under a short socket
timeout, which dropped the connection's transport but left a channel open; closing the
connection then closed that channel, whose restore of its unacked messages needed the dropped
transport: ``AttributeError: 'NoneType' object has no attribute 'hostname'``. That is no
connection error, so Celery called it unrecoverable and the worker exited with orders in its
queues. No fault timing reproduces the interleaving reliably, so the state the collect left is
staged directly (white box), on a real Redis.
"""

from __future__ import annotations

import types
from typing import Any

import kombu
import pytest
from celery.worker.consumer import Consumer as CeleryConsumer

from common import keys
from workers.connection_loss import Consumer


def _consumer_after_a_collect_that_left_a_channel_open(cls: type, url: str, queue_name: str) -> Any:
    """A consumer whose connection's channel holds one unacked message, and whose collect drops
    the transport without closing that channel (what the timed-out collect did)."""
    conn = kombu.Connection(url)
    queue = kombu.Queue(queue_name, routing_key=queue_name)
    with conn.Producer() as producer:
        producer.publish({"n": 1}, routing_key=queue.routing_key, declare=[queue])
    assert conn.default_channel.basic_get(queue.name, no_ack=False) is not None
    conn.collect = lambda socket_timeout=None: conn._do_close_transport()
    # Imported here, not at collection: the app binds the broker URL of the moment it is imported.
    from workers.app import app

    consumer = cls.__new__(cls)
    consumer.app, consumer.connection = app, conn
    # What the rest of Celery's cleanup reads, as a one-process worker has them:
    consumer.qos_global, consumer.pool, consumer.prefetch_multiplier = False, types.SimpleNamespace(num_processes=1), 1
    return consumer


def test_a_failed_close_of_the_lost_connection_leaves_the_consumer_ready_to_reconnect(redis_server, r) -> None:
    """Given that state, When the consumer cleans up the lost connection, Then the cleanup returns
    (the consumer goes on to reconnect) instead of raising, and the held message is still in
    kombu's unacked hash, for the reconnected consumer (RestoreDropped) or the visibility
    timeout to put back."""
    consumer = _consumer_after_a_collect_that_left_a_channel_open(Consumer, redis_server.url, "test.loss")
    assert r.hlen(keys.KOMBU_UNACKED) == 1
    consumer.on_connection_error_after_connected(ConnectionError("Connection closed by server."))
    assert consumer.connection is None
    assert r.hlen(keys.KOMBU_UNACKED) == 1


def test_celery_own_cleanup_is_what_fails_there(redis_server, r) -> None:
    """The staging is the failure CI saw: Celery's own handler raises on it (when a Celery release
    fixes this, this test fails and :class:`workers.connection_loss.Consumer` can go)."""
    consumer = _consumer_after_a_collect_that_left_a_channel_open(CeleryConsumer, redis_server.url, "test.loss2")
    with pytest.raises(AttributeError, match="hostname"):
        consumer.on_connection_error_after_connected(ConnectionError("Connection closed by server."))
