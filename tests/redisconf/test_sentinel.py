"""Every process kind reaches Redis through Sentinel (a real primary, replica and three sentinels:
devtools/redisha.py), plain and over TLS with an ACL user and no default user; a tick subscriber
follows a failover to the new primary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import redis as redis_lib

from common import keys
from devtools.processes import stop_process
from devtools.redisha import RedisHA
from devtools.waiting import wait_for
from tests.brokers import marketable
from tests.fixtures.accounts import logged_in

pytestmark = pytest.mark.slow


def _status(env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "brokergate", "status", "--json", "--timeout-s", "0.3"],
                         env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60)  # fmt: skip
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def _on_primary(ha: RedisHA) -> redis_lib.Redis:
    return ha.primary_client()


def _assert_topology(doc: dict[str, Any], ha: RedisHA) -> None:
    topo = doc["snapshot"]["redis"]["topology"]
    assert topo["mode"] == "sentinel" and topo["master_name"] == ha.master_name
    assert topo["primary"] == f"127.0.0.1:{ha.primary.port}" and topo["role"] == "master"
    (replica,) = topo["replicas"]
    assert replica["address"] == f"127.0.0.1:{ha.replica.port}" and replica["state"] == "online"
    assert [s["up"] for s in topo["sentinels"]] == [True, True, True]
    assert all(s["primary"] == topo["primary"] for s in topo["sentinels"])
    assert not [p for p in doc["problems"] if p["component"] == "redis:topology"], doc["problems"]


def test_workers_client_cli_and_beat_all_go_through_the_sentinels(
    make_accounts: Callable[..., Any], celery_workers: Any, paper: Any, redis_ha: RedisHA
) -> None:
    """Given brokergate pointed at a primary + replica only through BROKERGATE_REDIS_SENTINELS,
    When a strategy places an order that a worker sends, Beat starts and the CLI asks for status,
    Then the order is stored on the primary and replicated (durable writes waited for the replica:
    none fell short), Beat holds its RedBeat lock there, and status shows the topology."""
    from common.client import place_order
    from common.redis import get_redis

    accts = make_accounts(kite=1, angel=0)
    assert get_redis().connection_pool.get_master_address() == redis_ha.primary.address  # type: ignore[attr-defined]
    logged_in(accts)
    celery_workers.start([keys.urgent_queue("kite1"), keys.orders_queue("kite1")])
    beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "workers.app", "beat", "-S",
                             "redbeat.RedBeatScheduler", "--loglevel", "INFO", "--pidfile="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        h = place_order(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1, **marketable("kite"))
        assert h.wait(20)["state"] in ("OPEN", "COMPLETE")
        primary, replica = _on_primary(redis_ha), redis_ha.replica.client(2.0)
        assert primary.hget(keys.order(h.id), "broker_order_id")
        wait_for(lambda: replica.hget(keys.order(h.id), "state") == primary.hget(keys.order(h.id), "state"), 5,
                 what="the order on the replica")  # fmt: skip
        assert int(primary.hget(keys.REDIS_STATS, "wait_short") or 0) == 0
        wait_for(lambda: primary.exists(keys.BEAT_HEARTBEAT) and primary.exists(f"{keys.REDBEAT_PREFIX}:lock"), 20,
                 what="Beat's heartbeat and RedBeat lock on the primary")  # fmt: skip
        _assert_topology(_status(), redis_ha)
    finally:
        stop_process(beat)


def test_tls_with_an_acl_user_and_no_default_user(make_redis_ha: Callable[..., RedisHA],
                                                 make_accounts: Callable[..., Any]) -> None:  # fmt: skip
    """Given data nodes and sentinels that speak only TLS and know only an ACL user,
    When the client enqueues a task, a durable write runs, Beat's RedBeat client connects and the CLI
    asks for status, Then each does, through the sentinels; the password is never printed."""
    from celery import Celery

    from beat.schedule import configure
    from common import orderstore
    from common.client import send_task_by_name
    from common.models import Order
    from common.redis import get_redis

    make_accounts(kite=1, angel=0)  # for the CLI
    ha = make_redis_ha(tls=True)
    assert ha.password
    # the sentinels admit the same ACL user: ha.env() sets BROKERGATE_REDIS_SENTINEL_USERNAME/_PASSWORD
    assert ha.env()["BROKERGATE_REDIS_SENTINEL_PASSWORD"] == ha.password
    with pytest.raises(redis_lib.RedisError):  # nobody gets in without TLS and the user
        redis_lib.Redis(host="127.0.0.1", port=ha.primary.port, socket_timeout=1).ping()

    r = get_redis()
    order = Order(account="acct1", exchange="NSE", symbol="INFY", side="BUY", quantity=1)
    orderstore.create(r, order)  # a durable write: the script and WAIT 1 over TLS
    primary = _on_primary(ha)
    assert primary.hget(keys.order(order.client_order_id), "state") == "NEW"
    assert int(primary.hget(keys.REDIS_STATS, "wait_short") or 0) == 0

    send_task_by_name("brokergate.sweep_orders", args=[], queue="default")  # the client's Celery producer
    wait_for(lambda: primary.llen("default") == 1, 10, what="the task on the primary's queue")

    app = Celery("tls-beat", set_as_current=False)
    configure(app)
    from redbeat.schedulers import get_redis as redbeat_redis

    assert redbeat_redis(app).set("bg:tls-probe", "1") and primary.get("bg:tls-probe") == "1"

    out = subprocess.run([sys.executable, "-m", "brokergate", "status", "--json", "--timeout-s", "0.3"],
                         env=dict(os.environ), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ha.password not in out.stdout + out.stderr
    _assert_topology(json.loads(out.stdout), ha)


def test_a_tick_subscriber_follows_a_failover_to_the_new_primary(redis_ha: RedisHA) -> None:
    """Given a TickSubscription through the sentinels, When the primary is SIGKILLed and the
    replica promoted, Then the subscription reconnects to the new primary, subscribes again, and
    gets the next tick published there; without a restart."""
    from common.models import Tick
    from common.redis import get_redis
    from common.ticks import TickSubscription
    from feed.publisher import Publisher

    sub = TickSubscription(["NSE:INFY"])
    pub = Publisher(get_redis(decode=False))
    tick = Tick("NSE", "INFY", "408065", "ltp", 100, 150000)
    wait_for(lambda: pub.publish([tick]) and sub.get(0.2) is not None, 5, what="the first tick")
    redis_ha.kill_primary()
    new = redis_ha.wait_failover(20)
    got = None

    def ticks_again() -> bool:
        nonlocal got
        pub.publish([tick._replace(last_price=150100)])
        got = sub.get(0.2)
        return got is not None and got.last_price == 150100

    wait_for(ticks_again, 20, what="a tick through the new primary")
    assert get_redis().connection_pool.get_master_address() == new.address  # type: ignore[attr-defined]
    sub.close()
