"""Durable writes while the primary has no replica (#22): WAIT can acknowledge nothing then, so
a durable write skips it (counted, not slowed by the WAIT timeout); once a replica is back,
durable writes wait again.

Before common/lua's replica gate, every durable write waited the full WAIT timeout after a
failover until the old primary came back (place_order 0.3-0.4 s; one TLS chaos run sent 16
orders in 13 s, 92 expiring)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from common import keys
from common.lua import LuaScript
from common.redis import get_redis
from devtools.redisha import HOST, RedisHA
from devtools.waiting import wait_for

pytestmark = pytest.mark.slow
WRITE = LuaScript("return redis.call('INCR', KEYS[1])", durable=True)
N = 20


def _stats(ha: RedisHA) -> tuple[int, int, int]:
    """(wait_short, wait_skipped, WAIT calls) on the primary."""
    c = ha.primary.client(2.0)
    try:
        short, skipped = c.hmget(keys.REDIS_STATS, ["wait_short", "wait_skipped"])
        calls = int(c.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))
        return int(short or 0), int(skipped or 0), calls
    finally:
        c.close()


def _replicas_online(ha: RedisHA) -> int:
    c = ha.primary.client(2.0)
    try:
        info = c.info("replication")
        return sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online")
    finally:
        c.close()


@pytest.mark.timeout(90)
def test_durable_writes_skip_wait_while_no_replica_is_connected_and_wait_again_once_one_is(
        make_redis_ha: Callable[..., RedisHA]) -> None:  # fmt: skip
    ha = make_redis_ha()
    r = get_redis()
    # Given durable writes acknowledged by the replica
    assert WRITE(r, ["bg:ha:durable"], []) == 1
    assert _stats(ha)[:2] == (0, 0)
    # When the replica is killed (as the old primary is gone after a failover)
    ha.replica.kill()
    wait_for(lambda: _replicas_online(ha) == 0, 10, 0.05, what="the primary without its replica")
    _, _, calls_before = _stats(ha)
    for _ in range(N):
        WRITE(r, ["bg:ha:durable"], [])
    # Then the first write's WAIT answers 0 and the others skip WAIT: counted, not waited for
    short, skipped, calls = _stats(ha)
    assert (short, skipped, calls - calls_before) == (1, N - 1, 1), (short, skipped, calls - calls_before)
    assert int(ha.primary.client(2.0).get("bg:ha:durable") or 0) == N + 1  # every write stands
    # When the replica is back
    ha.replica.spawn([f"replicaof {HOST} {ha.primary.port}"])
    ha.replica.wait_up()
    wait_for(lambda: _replicas_online(ha) == 1, 20, 0.05, what="the replica back in sync")

    # Then durable writes wait again (within a re-check, at most a second), and are acknowledged
    def waited() -> bool:
        before = _stats(ha)[2]
        WRITE(r, ["bg:ha:durable"], [])
        return _stats(ha)[2] > before

    wait_for(waited, 5, 0.05, what="a durable write waiting again")
    short_then, _, calls_then = _stats(ha)
    WRITE(r, ["bg:ha:durable"], [])
    assert _stats(ha)[0] == short_then and _stats(ha)[2] == calls_then + 1
