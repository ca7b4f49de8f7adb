"""The failover harness itself (devtools/redisha.py): a real primary, replica and three sentinels;
a SIGKILLed primary is replaced by the replica with what was acknowledged; the TLS variant lets
nobody in without TLS and the ACL user."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from devtools.redisha import RedisHA

pytestmark = pytest.mark.slow


def test_a_killed_primary_is_replaced_by_the_replica_with_what_one_replica_acknowledged(
        make_redis_ha: Callable[..., RedisHA]) -> None:  # fmt: skip
    ha = make_redis_ha(point=False)
    # Given a write one replica acknowledged (WAIT), and the sentinels agreeing on the primary
    c = ha.primary_client()
    c.set("bg:ha:probe", "kept")
    assert c.execute_command("WAIT", 1, 2000) == 1
    c.close()
    old = ha.primary
    assert {ha.sentinel_master(s) for s in ha.sentinels} == {old.address}
    # and the processes' environment naming the sentinels, not a fixed primary
    env = ha.env()
    assert env["BROKERGATE_REDIS_SENTINELS"] == ",".join(f"127.0.0.1:{s.port}" for s in ha.sentinels)
    assert env["BROKERGATE_REDIS_MASTER"] == ha.master_name and env["BROKERGATE_REDIS_WAIT_REPLICAS"] == "1"
    assert not {"BROKERGATE_REDIS_PASSWORD", "BROKERGATE_REDIS_TLS_CA"} & set(env)
    assert redis.Sentinel(ha.sentinel_addresses, socket_timeout=1).discover_master(ha.master_name) == old.address
    # When the primary is SIGKILLed
    killed_at = ha.kill_primary()
    new = ha.wait_failover(timeout_s=20)
    gap = time.monotonic() - killed_at
    # Then the replica answers as the master, the sentinels name it, and the write is there
    assert new is not old and new.role() == "master" and ha.primary is new and ha.replica is old
    assert any(ha.sentinel_master(s) == new.address for s in ha.sentinels)
    c = ha.primary_client()
    assert c.get("bg:ha:probe") == "kept"
    c.close()
    print(f"failover in {gap:.2f} s")
    # And the old primary comes back as a replica of the new one, ready for another failover
    ha.restart_old_primary_as_replica()
    assert old.role() == "slave" and ha.replica is old
    assert {ha.sentinel_master(s) for s in ha.sentinels} == {new.address}


def _refused(call: Callable[[], object]) -> str:
    try:
        call()
    except (redis.RedisError, OSError) as e:
        return type(e).__name__
    raise AssertionError("connected without the required credentials")


def test_tls_variant_admits_only_the_acl_user_over_tls_and_fails_over(make_redis_ha: Callable[..., RedisHA]) -> None:
    ha = make_redis_ha(tls=True, point=False)
    env = ha.env()
    assert env["BROKERGATE_REDIS_USERNAME"] == "brokergate" and env["BROKERGATE_REDIS_PASSWORD"] == ha.password
    assert {"BROKERGATE_REDIS_TLS_CA", "BROKERGATE_REDIS_TLS_CERT", "BROKERGATE_REDIS_TLS_KEY"} <= set(env)
    assert env["BROKERGATE_REDIS_URL"].startswith("rediss://") and ha.password not in env["BROKERGATE_REDIS_URL"]
    kw = ha.client_kwargs()
    tls_only = {k: v for k, v in kw.items() if k not in ("username", "password")}
    for node in (ha.primary, ha.replica, *ha.sentinels):
        # Plain TCP: the port speaks TLS only
        assert _refused(lambda n=node: _ping(n.port)) == "ConnectionError"
        # TLS without the user: the default user is off
        assert _refused(lambda n=node: _ping(n.port, **tls_only)) == "AuthenticationError"
        # TLS with the user and a wrong password
        assert _refused(lambda n=node: _ping(n.port, **{**kw, "password": "wrong"})) == "AuthenticationError"
        # TLS without a client certificate
        _refused(lambda n=node: _tls_handshake_without_client_cert(n.port, kw["ssl_ca_certs"]))
        assert node.ping()
    # Replication and the sentinels work over TLS with the user: a failover happens
    ha.kill_primary()
    new = ha.wait_failover(timeout_s=20)
    assert new.role() == "master"


def _ping(port: int, **kw: object) -> object:
    """One attempt (redis-py retries a refused connection three times by default: seconds each)."""
    client = redis.Redis(port=port, socket_timeout=1, retry=Retry(NoBackoff(), 0), **kw)  # type: ignore[arg-type]
    try:
        return client.ping()
    finally:
        client.close()


def _tls_handshake_without_client_cert(port: int, ca: str) -> None:
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:  # fmt: skip
        s.sendall(b"PING\r\n")
        if not s.recv(64):  # TLS 1.3 reports the refused certificate on the first read
            raise ConnectionError("closed")
