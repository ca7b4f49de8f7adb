"""Worker liveness in Redis, so the sweeper can tell a slow worker from a dead host.

Each order worker (its main process) renews ``bg:worker:alive:<name>`` every :data:`RENEW_S`
with a TTL of :data:`TTL_S`, where ``<name>`` is the name it claims orders under
(``worker:<celery hostname>/<instance>``, :func:`claimer`), and lists in ``bg:worker:held:<name>`` the orders whose place
message it has received but not started (prefetched, or waiting in its rate-limit bucket).
When the whole host dies, kombu gives its messages back only after the visibility timeout,
past the orders' deadlines; with these marks the sweeper sends them again at once: orders the
dead worker claimed but never sent, and NEW orders whose message it held. Nothing here is on an
order's path: the marks are written by a background thread.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import redis
from celery.signals import task_received, worker_ready, worker_shutdown

from common import keys

__all__ = ["HELD_FOR_S", "INSTANCE", "RENEW_S", "TTL_S", "alive", "claimer", "dead_workers", "forget", "mark", "start"]

log = logging.getLogger(__name__)

RENEW_S = 1.0
TTL_S = 5.0  # several renewals: a GC pause or a Redis blip does not make a live worker look dead
HELD_FOR_S = 120.0  # a received message not started for this long is no longer listed (acked or gone)

_lock = threading.Lock()
_started: set[str] = set()
_held: dict[str, float] = {}  # client_order_id -> when its message was received (monotonic)
_changed = threading.Event()
# One per process start (a prefork child inherits its parent's: they are one worker). A worker
# restarted under its node name (docker's restart policy) is a new claimer: otherwise its marks
# would make the dead process's claims and held messages look alive, and they would wait out
# kombu's visibility timeout, past their deadlines.
INSTANCE = uuid.uuid4().hex[:8]


def start(name: str) -> None:
    """Renew this worker's marks from a daemon thread, once per process and name."""
    with _lock:
        if name in _started:
            return
        _started.add(name)
    threading.Thread(target=_renew, args=(name,), name="bg-liveness", daemon=True).start()


def _renew(name: str) -> None:
    from common.redis import get_redis

    while True:
        _changed.clear()
        try:
            mark(get_redis(), name)
        except redis.RedisError as e:  # Redis away: the sweeper cannot run either; try again
            log.debug("liveness marks not renewed: %s", e)
        _changed.wait(RENEW_S)


def mark(r: redis.Redis, name: str) -> None:
    """Renew the alive mark and rewrite the held set (one round trip)."""
    cutoff = time.monotonic() - HELD_FOR_S
    with _lock:
        for coid in [c for c, at in _held.items() if at < cutoff]:
            del _held[coid]
        held = list(_held)
    with r.pipeline(transaction=True) as p:
        p.set(keys.worker_alive(name), "1", px=int(TTL_S * 1000))
        p.sadd(keys.WORKERS, name)
        p.delete(keys.worker_held(name))
        if held:
            p.sadd(keys.worker_held(name), *held)
        p.execute()


def alive(r: redis.Redis, names: Iterable[str]) -> set[str]:
    """Which of ``names`` have a live mark."""
    ordered = sorted(set(names))
    if not ordered:
        return set()
    marks = r.mget([keys.worker_alive(n) for n in ordered])
    return {n for n, m in zip(ordered, marks, strict=True) if m is not None}


def dead_workers(r: redis.Redis) -> dict[str, set[str]]:
    """Registered workers whose alive mark has gone, with the orders whose message each held."""
    names = {n.decode() if isinstance(n, bytes) else str(n) for n in r.smembers(keys.WORKERS)}
    dead = sorted(names - alive(r, names))
    if not dead:
        return {}
    with r.pipeline(transaction=False) as p:
        for n in dead:
            p.smembers(keys.worker_held(n))
        sets = p.execute()
    return {n: {c.decode() if isinstance(c, bytes) else str(c) for c in s} for n, s in zip(dead, sets, strict=True)}


def forget(r: redis.Redis, name: str) -> None:
    """A dead (or cleanly stopped) worker's marks are handled: drop them."""
    with r.pipeline(transaction=True) as p:
        p.srem(keys.WORKERS, name)
        p.delete(keys.worker_held(name), keys.worker_alive(name))
        p.execute()


# --- hooked into the worker's main process ---------------------------------------------------------


def claimer(hostname: str) -> str:
    """The name this process claims orders under and keeps its liveness marks under."""
    return f"worker:{hostname}/{INSTANCE}"


@worker_ready.connect
def _on_ready(sender: Any = None, **_kw: Any) -> None:
    hostname = getattr(sender, "hostname", None)
    if hostname:
        start(claimer(hostname))


@task_received.connect
def _on_received(request: Any = None, **_kw: Any) -> None:
    if request is None or getattr(request, "name", None) != keys.PLACE_TASK:
        return
    args = getattr(request, "args", None) or ()
    order = args[0] if args else (getattr(request, "kwargs", None) or {}).get("order")
    coid = order.get("client_order_id") if isinstance(order, dict) else None
    if not coid and getattr(request, "id", None):  # enqueued by name without an id: as place_order derives it
        coid = str(request.id).replace("-", "")[:20]
    if coid:
        with _lock:
            _held[str(coid)] = time.monotonic()
        # Written now, from the writer thread (one pipelined round trip beside the order's own):
        # a host that dies right after taking a burst is the case the held set exists for.
        _changed.set()


@worker_shutdown.connect
def _on_shutdown(sender: Any = None, **_kw: Any) -> None:
    hostname = getattr(sender, "hostname", None)
    if not hostname:
        return
    from common.redis import get_redis

    try:
        # A clean stop gives its messages back itself (warm shutdown): nothing is held any more.
        forget(get_redis(), claimer(hostname))
    except redis.RedisError as e:
        log.debug("liveness marks not dropped at shutdown: %s", e)
