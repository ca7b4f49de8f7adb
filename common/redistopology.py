"""Where the process's Redis data lives: the primary, its replicas with their lag, and the
sentinels that watch it (``brokergate status``, component ``redis``).

:func:`read_topology` asks the primary (``INFO replication``) and, with Sentinel configured,
every sentinel (``SENTINEL master`` / ``replicas`` / ``sentinels`` for the master name). Shape::

    {"mode": "sentinel" | "single", "master_name": "mymaster",
     "primary": "10.0.0.1:6379", "role": "master", "master_repl_offset": 1234,
     "replicas": [{"address": "10.0.0.2:6379", "state": "online", "offset_lag": 0, "lag_s": 0}],
     "sentinels": [{"address": "10.0.0.5:26379", "up": true, "primary": "10.0.0.1:6379",
                    "other_sentinels": 2, "replicas": 1, "flags": "master"}],
     "wait_replicas": 1, "wait_short": 0, "wait_skipped": 0}

A reader never raises for a sentinel that does not answer: it is listed with ``up: false`` and
its error (no password in it), and :func:`judge` warns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import redis

from common import keys
from common.redisconf import RedisConf, sentinel_args

__all__ = ["judge", "read_topology"]

REPLICA_LAG_WARN_S = 10  # a replica this far behind would lose that much at a failover


def _replicas(info: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The replicas an ``INFO replication`` reply lists (``slave0``, ``slave1``, ...)."""
    master_offset = int(info.get("master_repl_offset") or 0)
    out = []
    for i in range(int(info.get("connected_slaves") or 0)):
        s = info.get(f"slave{i}")
        if not isinstance(s, Mapping):
            continue
        out.append({
            "address": f"{s.get('ip')}:{s.get('port')}", "state": str(s.get("state", "")),
            "offset_lag": max(0, master_offset - int(s.get("offset") or 0)), "lag_s": int(s.get("lag") or 0),
        })  # fmt: skip
    return out


def _address(r: redis.Redis, conf: RedisConf) -> str:
    pool = r.connection_pool
    get_master = getattr(pool, "get_master_address", None)
    if get_master is not None:  # a Sentinel pool: where the sentinels say the master is
        host, port = get_master()
        return f"{host}:{port}"
    kw = pool.connection_kwargs
    return f"{kw.get('host', conf.host)}:{kw.get('port', conf.port)}"


def _sentinel(conf: RedisConf, host: str, port: int, timeout_s: float) -> dict[str, Any]:
    """What one sentinel says about the master (``up: false`` and the error when it does not answer)."""
    _, sentinel_kwargs, _ = sentinel_args(conf)
    kw = {**sentinel_kwargs, "socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    client = redis.Redis(host=host, port=port, decode_responses=True, **kw)
    row: dict[str, Any] = {"address": f"{host}:{port}", "up": False}
    try:
        info: dict[str, Any] = client.sentinel_master(conf.master)  # type: ignore[assignment]
        replicas: list[Any] = client.sentinel_slaves(conf.master)
        others: list[Any] = client.sentinel_sentinels(conf.master)  # type: ignore[assignment]
        row.update(up=True, primary=f"{info.get('ip')}:{info.get('port')}", flags=str(info.get("flags", "")),
                   replicas=len(replicas or []), other_sentinels=len(others or []))  # fmt: skip
    except redis.RedisError as e:
        row["error"] = f"{type(e).__name__}: {e}"
    finally:
        client.close()
    return row


def read_topology(r: redis.Redis, conf: RedisConf, timeout_s: float = 0.5) -> dict[str, Any]:
    """The topology as the primary (``r``) and the sentinels see it (see the module)."""
    info = r.info("replication")
    out: dict[str, Any] = {
        "mode": "sentinel" if conf.sentinel else "single", "primary": _address(r, conf),
        "role": info.get("role"), "master_repl_offset": int(info.get("master_repl_offset") or 0),
        "replicas": _replicas(info), "sentinels": [], "wait_replicas": conf.wait_replicas,
    }  # fmt: skip
    if conf.sentinel:
        out["master_name"] = conf.master
        out["sentinels"] = [_sentinel(conf, h, p, timeout_s) for h, p in conf.sentinels]
    with contextlib.suppress(redis.RedisError):
        short, skipped = r.hmget(keys.REDIS_STATS, ["wait_short", "wait_skipped"])
        out["wait_short"], out["wait_skipped"] = int(short or 0), int(skipped or 0)
    return out


def judge(topology: Mapping[str, Any]) -> list[str]:
    """Warnings about the topology (empty when none): no replica, a lagging replica, a sentinel
    that does not answer or names another primary."""
    if not topology:
        return []
    warn: list[str] = []
    online = [x for x in topology.get("replicas") or [] if x.get("state") == "online"]
    if not online:
        warn.append("no replica: the primary's loss loses every write since its last save, and nothing can fail over")
    for x in online:
        if x.get("lag_s", 0) > REPLICA_LAG_WARN_S:
            warn.append(f"replica {x['address']} is {x['lag_s']} s behind ({x['offset_lag']} bytes)")
    for s in topology.get("sentinels") or []:
        if not s.get("up"):
            warn.append(f"sentinel {s['address']} does not answer: {s.get('error', '')}")
        elif s.get("primary") != topology.get("primary"):
            warn.append(f"sentinel {s['address']} names {s.get('primary')} as primary, not {topology.get('primary')}")
    if topology.get("wait_replicas", 0) > len(online):
        warn.append(f"durable writes wait for {topology['wait_replicas']} replica(s) and {len(online)} is online: "
                    "each waits its full BROKERGATE_REDIS_WAIT_TIMEOUT_MS")  # fmt: skip
    return warn
