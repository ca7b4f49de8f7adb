"""A task running when the broker connection is lost acks, once done, on the lost connection's
channel: that ack must not stop the worker (workers/connection_loss.py). Found by the failover
test (tests/ha/test_failover.py): both workers exited at the first ack after a Sentinel failover."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from workers.connection_loss import _tolerating_closed_channel


class Message:
    """A kombu message as far as its ack goes: its channel, and kombu's ack of a channel whose
    transport is gone (kombu/transport/redis.py _connparams: ``conninfo.hostname`` of None)."""

    def __init__(self, client: Any) -> None:
        self.delivery_tag = "tag-1"
        self.channel = SimpleNamespace(connection=SimpleNamespace(client=client))

    def ack_log_error(self, logger: Any, errors: Any) -> None:
        if self.channel.connection.client is None:
            raise AttributeError("'NoneType' object has no attribute 'hostname'")
        raise AttributeError("a bug of a live channel")


def test_an_ack_on_the_lost_connections_channel_is_made_on_the_current_one() -> None:
    dead = Message(client=None)
    acked: list[str] = []
    assert _tolerating_closed_channel(dead.ack_log_error, acked.append)(None, ()) is None
    assert acked == ["tag-1"]


def test_when_the_current_channel_fails_too_the_message_is_left_to_the_visibility_timeout(
        caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    def refuse(tag: str) -> None:
        raise ConnectionError("still failing over")

    assert _tolerating_closed_channel(Message(client=None).ack_log_error, refuse)(None, ()) is None
    assert "delivered again after the visibility timeout" in caplog.text


def test_an_attribute_error_on_a_live_channel_still_raises() -> None:
    live = Message(client=SimpleNamespace(hostname="127.0.0.1"))
    with pytest.raises(AttributeError, match="live channel"):
        _tolerating_closed_channel(live.ack_log_error, lambda tag: None)(None, ())


def test_the_consumer_tries_to_reconnect_every_half_second_to_two_seconds() -> None:
    """kombu's default waits (2 s, then 4 s more) made a worker come back 6-9 s after a SIGKILLed
    primary when its attempt at 2 s came just before the promotion (bench/redis_ha.py)."""
    from workers.connection_loss import RECONNECT_INTERVALS, Consumer

    calls: list[dict[str, Any]] = []

    class Conn:
        def ensure_connection(self, errback: Any = None, max_retries: Any = None, **kw: Any) -> Conn:
            calls.append(kw)
            return self

    consumer = Consumer.__new__(Consumer)  # ensure_connected reads only the app's retry settings
    consumer.app = SimpleNamespace(conf=SimpleNamespace(broker_connection_retry_on_startup=True,
                                                        broker_connection_retry=True, broker_connection_max_retries=None))
    consumer.first_connection_attempt = False
    consumer.broker_connection_retry_attempt = 0
    conn = Conn()
    assert consumer.ensure_connected(conn) is conn
    assert calls and {k: calls[0][k] for k in RECONNECT_INTERVALS} == RECONNECT_INTERVALS
    assert RECONNECT_INTERVALS["interval_start"] <= 0.5 and RECONNECT_INTERVALS["interval_max"] <= 2.0
    assert "ensure_connection" not in vars(conn)  # the connection's own method again
