"""The Sentinel client of common/redis.py across a SIGKILLed primary (#22): a command in flight
at the kill is retried on the promoted replica, not on the dead address.

redis-py 8.2's SentinelManagedConnection asks the sentinels for the master only in ``connect()``;
a command's retry reconnects through ``connect_check_health``, which reuses the old host, so a
command in flight at the kill spent the whole retry budget (10 s) on the dead primary and raised
ConnectionError (client stalls of 10.5-10.9 s in the failover test and bench)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from common.redis import get_redis
from devtools.redisha import RedisHA
from devtools.waiting import wait_for

pytestmark = pytest.mark.slow
KEY = "bg:ha:client"


def _blocked_in_blpop(ha: RedisHA) -> bool:
    c = ha.primary.client(1.0)
    try:
        return any(e.get("cmd") == "blpop" for e in c.client_list())
    finally:
        c.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls-acl"])
def test_a_command_in_flight_at_the_kill_is_retried_on_the_promoted_replica(
        tls: bool, make_redis_ha: Callable[..., RedisHA]) -> None:  # fmt: skip
    ha = make_redis_ha(tls=tls)
    r = get_redis()
    got: dict[str, Any] = {}

    def call() -> None:
        try:
            got["reply"] = r.blpop([KEY], timeout=20)
        except Exception as e:  # what the caller would have seen
            got["error"] = e
        got["at"] = time.monotonic()

    # Given a command in flight on the primary (a BLPOP waiting for an element)
    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    wait_for(lambda: _blocked_in_blpop(ha), 10, 0.02, what="the BLPOP in flight")
    old = ha.primary
    # When the primary is SIGKILLed and the replica promoted, which then gets the element
    killed = ha.kill_primary()
    new = ha.wait_failover(timeout_s=20)
    promoted = time.monotonic()
    c = new.client(2.0)
    try:
        c.rpush(KEY, "on the new primary")
    finally:
        c.close()
    worker.join(30)
    # Then the command was sent again to the promoted replica and answered there (every retry
    # went to the dead address before, until the budget ran out and it raised ConnectionError)
    assert new is not old
    assert "error" not in got, f"{got['error']!r} {got['at'] - killed:.2f} s after the kill"
    assert tuple(got["reply"]) == (KEY, "on the new primary")
    assert {(c.host, c.port) for c in r.connection_pool._available_connections} <= {new.address}
    print(f"[{'tls' if tls else 'plain'}] promoted {promoted - killed:.2f} s after the kill; the command in "
          f"flight answered {got['at'] - killed:.2f} s after it")
