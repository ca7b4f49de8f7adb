"""Durable writes (common/lua LuaScript durable): order, token and halt scripts are followed by
WAIT on their own connection; ticks, heartbeats and bg:ltp never wait; too few replicas in time
is counted, never an error; a server that never saw a script (a promoted replica) loads it."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from common import keys, orderstore
from common.lua import LuaScript
from common.models import Order, OrderState, Tick
from devtools.redisserver import RedisServer, free_port


def _order(**kw: Any) -> Order:
    return Order(**{"account": "acct1", "exchange": "NSE", "symbol": "INFY", "side": "BUY", "quantity": 1, **kw})


@pytest.fixture
def waiting_for(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Callable[[int, int], None]:
    """Set BROKERGATE_REDIS_WAIT_REPLICAS / _TIMEOUT_MS for this process. The server here has no
    replica, so durable writes would skip WAIT after the first one answered 0: these tests look at
    the WAIT itself, so the replica gate is told one is online (tests/ha/test_durable_wait.py
    tests the gate on a real replica)."""
    from common import lua
    from common import redis as bg_redis
    from common import settings as bg_settings

    monkeypatch.setattr(lua, "_no_replica_online", lambda r: False)

    def set_(replicas: int, timeout_ms: int) -> None:
        monkeypatch.setenv("BROKERGATE_REDIS_WAIT_REPLICAS", str(replicas))
        monkeypatch.setenv("BROKERGATE_REDIS_WAIT_TIMEOUT_MS", str(timeout_ms))
        bg_settings.settings.cache_clear()
        bg_redis.reset_clients()

    yield set_
    # The environment first, then the caches: a teardown in between (the Redis fixtures') would
    # otherwise cache settings that still wait, for every later test of this process.
    monkeypatch.undo()
    bg_settings.settings.cache_clear()
    bg_redis.reset_clients()


def monitored(url: str, action: Callable[[], None]) -> list[dict[str, Any]]:
    """Every command the server at ``url`` ran while ``action`` ran (MONITOR), in order."""
    marker = f"monitor-end-{free_port()}"
    seen: list[dict[str, Any]] = []
    mon = redis_lib.Redis.from_url(url, decode_responses=True)
    ready = threading.Event()

    def watch() -> None:
        with mon.monitor() as m:
            ready.set()
            for cmd in m.listen():
                if marker in cmd["command"]:
                    return
                seen.append(cmd)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    assert ready.wait(5)
    probe = redis_lib.Redis.from_url(url)
    # MONITOR is on once the server echoes our own command back through it
    from devtools.waiting import wait_for

    wait_for(lambda: probe.echo("monitor-probe") is not None and any("monitor-probe" in c["command"] for c in seen),
             5, what="MONITOR to start")  # fmt: skip
    seen.clear()
    action()
    probe.echo(marker)
    t.join(5)
    probe.close()
    mon.close()
    return seen


def test_durable_scripts_wait_on_their_own_connection_and_ticks_never_do(
    waiting_for: Callable[[int, int], None], redis_url: str
) -> None:
    """Given WAIT_REPLICAS=1 (no replica here, so every wait falls short after 5 ms),
    When an order is created and moved, a token stored and a halt set, and ticks published,
    Then each of those scripts is followed by WAIT 1 5 from the same client, the ticks' PUBLISH
    and HSET of bg:ltp by none, and the shortfall is counted, the writes standing."""
    from common import safety, tokens
    from common.redis import get_redis
    from feed.publisher import Publisher

    waiting_for(1, 5)
    r = get_redis()
    order = _order()

    def act() -> None:
        orderstore.create(r, order)
        assert orderstore.claim(r, order.client_order_id, "a1")
        tokens.store_token("acct1", access_token="tok-durable-123", feed_token="", issued_at_ms=1,
                           expires_at_ms=2**41, r=r)  # fmt: skip
        safety.halt(["acct1"], reason="test", r=r)
        Publisher(get_redis(decode=False)).publish([Tick("NSE", "INFY", "408065", "ltp", 100, 150000)])

    cmds = [c for c in monitored(redis_url, act) if c["client_address"] != "lua"]  # not the scripts' own calls
    names = [(f'{c["client_address"]}:{c["client_port"]}', c["command"].split(" ", 1)[0]) for c in cmds]
    scripts = [i for i, (_, n) in enumerate(names) if n == "EVALSHA"]
    assert len(scripts) >= 4  # create, claim, token_store, halt_set (+ the halt's reads)
    waits = [i for i, (_, n) in enumerate(names) if n == "WAIT"]
    assert len(waits) >= 4
    for i in waits:  # each WAIT comes right after a script on the same connection
        assert names[i - 1][1] == "EVALSHA" and names[i - 1][0] == names[i][0], cmds[i - 1: i + 1]
        assert cmds[i]["command"] == "WAIT 1 5"
    publish = [i for i, (_, n) in enumerate(names) if n == "PUBLISH"]
    assert publish and all(names[i + 1][1] != "WAIT" for i in publish if i + 1 < len(names))
    ltp = [i for i, c in enumerate(cmds) if c["command"].startswith("HSET bg:ltp")]
    assert ltp and all(i + 1 == len(names) or names[i + 1][1] != "WAIT" for i in ltp)
    # the writes stand, the shortfall is counted
    assert orderstore.get(r, order.client_order_id)["state"] == OrderState.SENDING.value  # type: ignore[index]
    assert safety.halted("acct1", r) is not None
    assert int(r.hget(keys.REDIS_STATS, "wait_short") or 0) >= 4


def test_without_replicas_configured_nothing_waits(waiting_for: Callable[[int, int], None], redis_url: str) -> None:
    from common.redis import get_redis

    waiting_for(0, 100)
    r = get_redis()
    cmds = monitored(redis_url, lambda: orderstore.create(r, _order()))
    assert not [c for c in cmds if c["command"].startswith("WAIT")]
    assert r.hget(keys.REDIS_STATS, "wait_short") is None


@pytest.fixture
def second_server() -> Iterator[RedisServer]:
    workdir = Path(tempfile.mkdtemp(prefix="bg-redis2-"))
    server = RedisServer(port=free_port(), workdir=workdir, appendonly=False)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("replicas", [0, 1])
def test_a_server_that_never_saw_the_script_loads_it(
    waiting_for: Callable[[int, int], None], redis_url: str, second_server: RedisServer, replicas: int
) -> None:
    """Given a script run on one server, When the same client code meets a second server whose
    script cache is empty (as a promoted replica's may be), Then it loads the script there and the
    write happens, durable (script + WAIT pipeline) or not."""
    waiting_for(replicas, 5)
    first = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    second = redis_lib.Redis.from_url(second_server.url, decode_responses=True)
    script = LuaScript("redis.call('SET', KEYS[1], ARGV[1]) return ARGV[1]", durable=True)
    assert script(first, ["k"], ["one"]) == "one"
    assert second.script_exists(script.sha) == [False]
    assert script(second, ["k"], ["two"]) == "two"
    assert second.get("k") == "two" and second.script_exists(script.sha) == [True]
    first.close()
    second.close()


def test_a_batch_of_creates_waits_once_after_the_last(waiting_for: Callable[[int, int], None], redis_url: str) -> None:
    """Given WAIT_REPLICAS=1, When a group's orders are created in one pipeline (create_many),
    Then one WAIT follows the last script on that connection, and every order stands."""
    from common.redis import get_redis

    waiting_for(1, 5)
    r = get_redis()
    orders = [_order() for _ in range(3)]
    got: list[Any] = []
    cmds = [c for c in monitored(redis_url, lambda: got.extend(orderstore.create_many(r, orders)))
            if c["client_address"] != "lua"]  # fmt: skip
    names = [n for n in (c["command"].split(" ", 1)[0] for c in cmds) if n in ("EVALSHA", "WAIT")]
    assert names == ["EVALSHA", "EVALSHA", "EVALSHA", "WAIT"], names
    assert int(r.hget(keys.REDIS_STATS, "wait_short") or 0) == 1  # no replica here: counted once
    assert all(isinstance(d, int) for d in got)
    assert all(orderstore.get(r, o.client_order_id) for o in orders)
