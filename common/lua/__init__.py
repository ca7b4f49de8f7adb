"""Redis Lua scripts, one ``.lua`` file each; every file's header names its KEYS and ARGV.

:class:`LuaScript` runs a script by SHA and loads it again when the server does not know it
(a restarted or different Redis, a promoted replica), so callers never see ``NOSCRIPT``.

A ``durable`` script's writes must survive a failover (order creation and state moves, tokens,
halts): it is followed by ``WAIT <replicas> <timeout>`` on the same connection, in one
non-transactional pipeline (one round trip), with ``BROKERGATE_REDIS_WAIT_REPLICAS`` and
``BROKERGATE_REDIS_WAIT_TIMEOUT_MS``. Fewer replicas in time leaves the write standing (the
primary has it): counted in ``bg:redis:stats`` and logged once per burst, never an error.

With no replica online (a failover took the old primary away, the replica is down) WAIT can
acknowledge nothing and would only add its timeout to every durable write: learnt from a WAIT
that answered 0 and INFO replication, durable writes then skip WAIT (counted: ``wait_skipped``,
logged once per burst) and look again at most once every ``REPLICA_RECHECK_S``, waiting again
as soon as a replica is online.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis

__all__ = ["LuaScript", "release_lock", "script_text", "wait_settings"]

log = logging.getLogger(__name__)

# A shortfall is logged at most this often per process; the counter counts every one.
_SHORT_LOG_EVERY_S = 10.0
_short_lock = threading.Lock()
_short_logged_at = -_SHORT_LOG_EVERY_S
_short_unlogged = 0


@cache
def script_text(name: str) -> str:
    """The source of ``common/lua/<name>.lua``."""
    return resources.files(__package__).joinpath(f"{name}.lua").read_text()


def wait_settings() -> tuple[int, int]:
    """``(replicas, timeout_ms)`` a durable write waits for (the process's settings)."""
    from common.redis import redis_conf  # not at import: settings' own imports reach Lua users

    conf = redis_conf()
    return conf.wait_replicas, conf.wait_timeout_ms


def _shortfall(r: redis.Redis, wanted: int, acked: int, timeout_ms: int) -> None:
    """Count a durable write fewer replicas acknowledged in time; log once per burst."""
    global _short_logged_at, _short_unlogged
    from common import keys

    try:
        pipe = r.pipeline(transaction=False)
        pipe.hincrby(keys.REDIS_STATS, "wait_short", 1)
        pipe.hset(keys.REDIS_STATS, "wait_short_at_ms", int(time.time() * 1000))
        pipe.execute()
    except redis.RedisError:
        pass  # the count is best effort: the write it describes already stands
    with _short_lock:
        _short_unlogged += 1
        now = time.monotonic()
        if now - _short_logged_at < _SHORT_LOG_EVERY_S:
            return
        n, _short_unlogged, _short_logged_at = _short_unlogged, 0, now
    log.warning("redis: %d durable write(s) acknowledged by fewer replicas than %d within %d ms "
                "(last: %d); they stand on the primary. Is a replica down or lagging?",
                n, wanted, timeout_ms, acked)  # fmt: skip


REPLICA_RECHECK_S = 1.0


def _no_replica_online(r: redis.Redis) -> bool:
    """The primary behind ``r`` has no replica online (INFO replication: a replica still syncing
    cannot acknowledge either). False when unsure: then the write waits, as always."""
    try:
        info = r.info("replication")
    except redis.RedisError:
        return False
    return not any(k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
                   for k, v in info.items())  # fmt: skip


class _ReplicaGate:
    """Per client (its pool follows the master): whether durable writes skip WAIT for now."""

    def __init__(self) -> None:
        self._recheck_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._skipped_unlogged = 0
        self._skipped_logged_at = -_SHORT_LOG_EVERY_S

    def skip(self, r: redis.Redis) -> bool:
        pool = r.connection_pool
        at = self._recheck_at.get(pool)
        if at is None:
            return False
        if time.monotonic() < at:
            return True
        if _no_replica_online(r):
            self._recheck_at[pool] = time.monotonic() + REPLICA_RECHECK_S
            return True
        self._recheck_at.pop(pool, None)
        log.warning("redis: a replica is online again: durable writes wait for it again")
        return False

    def learn(self, r: redis.Redis) -> None:
        """A WAIT answered 0: skip WAIT from now on if no replica is online."""
        if _no_replica_online(r):
            self._recheck_at[r.connection_pool] = time.monotonic() + REPLICA_RECHECK_S

    def skipped(self) -> None:
        with self._lock:
            self._skipped_unlogged += 1
            now = time.monotonic()
            if now - self._skipped_logged_at < _SHORT_LOG_EVERY_S:
                return
            n, self._skipped_unlogged, self._skipped_logged_at = self._skipped_unlogged, 0, now
        log.warning("redis: %d durable write(s) did not wait for a replica: the primary has none online "
                    "(they stand on the primary only). Is the replica down, or not back after a failover?", n)  # fmt: skip


_gate = _ReplicaGate()


def _count_skipped(pipe: Any) -> None:
    """Count a durable write that skipped WAIT, in its own pipeline (no extra round trip)."""
    from common import keys

    pipe.hincrby(keys.REDIS_STATS, "wait_skipped", 1)
    pipe.hset(keys.REDIS_STATS, "wait_skipped_at_ms", int(time.time() * 1000))


class LuaScript:
    """One script, run with EVALSHA; any client, any server. ``durable``: see the module."""

    def __init__(self, source: str, *, durable: bool = False) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self.durable = durable

    def __call__(self, r: redis.Redis, keys: list[str], args: list[Any]) -> Any:
        if self.durable:
            replicas, timeout_ms = wait_settings()
            if replicas > 0 and _gate.skip(r):
                return self._call_skipping_wait(r, keys, args)
            if replicas > 0:
                return self._call_and_wait(r, keys, args, replicas, timeout_ms)
        try:
            return r.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            r.script_load(self.source)
            return r.evalsha(self.sha, len(keys), *keys, *args)

    def _call_and_wait(self, r: redis.Redis, keys: list[str], args: list[Any], replicas: int,
                       timeout_ms: int) -> Any:  # fmt: skip
        # WAIT counts the replicas that have every write this connection made so far, so it
        # must ride the script's connection: a pipeline holds one connection for its commands.
        for attempt in (1, 2):
            pipe = r.pipeline(transaction=False)
            pipe.evalsha(self.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            try:
                result, acked = pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                r.script_load(self.source)
                continue
            if int(acked) < replicas:
                _shortfall(r, replicas, int(acked), timeout_ms)
                if int(acked) == 0:
                    _gate.learn(r)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _call_skipping_wait(self, r: redis.Redis, keys: list[str], args: list[Any]) -> Any:
        for attempt in (1, 2):
            pipe = r.pipeline(transaction=False)
            pipe.evalsha(self.sha, len(keys), *keys, *args)
            _count_skipped(pipe)
            result = pipe.execute(raise_on_error=False)[0]
            if isinstance(result, redis.exceptions.NoScriptError) and attempt == 1:
                r.script_load(self.source)  # counted twice then: once per new server, harmless
                continue
            if isinstance(result, Exception):
                raise result
            _gate.skipped()
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def batch(self, r: redis.Redis, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """The script once per ``(keys, args)``, in one non-transactional pipeline: one round trip
        for many independent calls, each atomic on its own as with a call. Returns each call's
        reply, or the error it met (the others still ran)."""
        got = self._pipelined(r, calls)
        missing = [i for i, g in enumerate(got) if isinstance(g, redis.exceptions.NoScriptError)]
        if missing:  # a NOSCRIPT call did not run: load the script and run those again
            r.script_load(self.source)
            for i, again in zip(missing, self._pipelined(r, [calls[i] for i in missing]), strict=True):
                got[i] = again
        return got

    def _pipelined(self, r: redis.Redis, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        replicas, timeout_ms = wait_settings() if self.durable else (0, 0)
        skip = replicas > 0 and _gate.skip(r)
        with r.pipeline(transaction=False) as p:
            for keys, args in calls:
                p.evalsha(self.sha, len(keys), *keys, *args)
            if skip:
                _count_skipped(p)
            elif replicas > 0:  # one WAIT after the batch covers every write of it (same connection)
                p.execute_command("WAIT", replicas, timeout_ms)
            got = list(p.execute(raise_on_error=False))
        if skip:
            del got[-2:]
            _gate.skipped()
        elif replicas > 0:
            acked = got.pop()
            if isinstance(acked, int) and acked < replicas:
                _shortfall(r, replicas, acked, timeout_ms)
                if acked == 0:
                    _gate.learn(r)
        return got


_RELEASE_LOCK = LuaScript(script_text("lock_release"))


def release_lock(r: redis.Redis, key: str, owner: str) -> bool:
    """Delete the lock ``key`` (taken with SET NX PX) only while ``owner`` holds it, in one step:
    a holder whose lock lapsed and was taken by another must not delete the other's."""
    return bool(_RELEASE_LOCK(r, [key], [owner]))
