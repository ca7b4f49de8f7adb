"""Worker liveness in Redis, so the sweeper can tell a slow worker from a dead host.

Each order worker (its main process) renews ``bg:worker:alive:<name>`` every :data:`RENEW_S`
with a TTL of :data:`TTL_S`, where ``<name>`` is the name it claims orders under
(``worker:<celery hostname>/<instance>``, :func:`claimer`), and lists in ``bg:worker:held:<name>`` the orders whose place
message it has received and not finished (prefetched, waiting in its rate-limit bucket, or
running: a running order is claimed, or about to be, and a claim names its worker).
When the whole host dies, kombu gives its messages back only after the visibility timeout,
past the orders' deadlines; with these marks the sweeper sends them again at once: orders the
dead worker claimed but never sent, and NEW orders whose message it held. Nothing here is on an
order's path: the marks are written by a background thread.

What an order costs here: the id is added to the process's held list when the message arrives
and dropped when its task ends. Arrivals are written as one ``SADD`` of the new ids (however
many arrived since the last write); the whole mark (alive, registration, the held set rewritten
without the finished ones) once every :data:`RENEW_S`. Before, every arrival rewrote the whole
set, and ids left it only after :data:`HELD_FOR_S`: at 1,000 orders/s a process rewrote a set of
~120,000 ids on every message.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import redis
from celery.signals import task_postrun, task_received, worker_ready, worker_shutdown

from common import keys
from common.queued import place_client_order_id
from common.redis import as_text

__all__ = ["HELD_FOR_S", "INSTANCE", "RENEW_S", "TTL_S", "add_held", "alive", "claimer", "forget", "held_by",
           "mark", "registered", "start"]

log = logging.getLogger(__name__)

RENEW_S = 1.0
TTL_S = 5.0  # several renewals: a GC pause or a Redis blip does not make a live worker look dead
HELD_FOR_S = 120.0  # a received message not finished for this long is no longer listed (acked or gone)

_lock = threading.Lock()
_started: set[str] = set()
_held: dict[str, float] = {}  # client_order_id -> when its message was received (monotonic)
_arrived: set[str] = set()  # held ids not yet written to Redis
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

    renewed = 0.0
    while True:
        _changed.clear()
        wait_s = RENEW_S
        try:
            if time.monotonic() - renewed >= RENEW_S:
                mark(get_redis(), name)
                renewed = time.monotonic()
            else:
                add_held(get_redis(), name)
            wait_s = max(0.0, RENEW_S - (time.monotonic() - renewed))
        except redis.RedisError as e:  # Redis away: the sweeper cannot run either; try again in RENEW_S
            log.debug("liveness marks not renewed: %s", e)
        _changed.wait(wait_s)


def add_held(r: redis.Redis, name: str) -> None:
    """Add the ids that arrived since the last write to the held set (one command, none when
    nothing arrived)."""
    with _lock:
        new = list(_arrived & _held.keys())
        _arrived.clear()
    if new:
        try:
            r.sadd(keys.worker_held(name), *new)
        except redis.RedisError:
            with _lock:
                _arrived.update(new)  # written by the next attempt
            raise


def mark(r: redis.Redis, name: str) -> None:
    """Renew the alive mark and rewrite the held set (one round trip)."""
    cutoff = time.monotonic() - HELD_FOR_S
    with _lock:
        for coid in [c for c, at in _held.items() if at < cutoff]:
            del _held[coid]
        held = list(_held)
        _arrived.clear()
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


def registered(r: redis.Redis) -> set[str]:
    """Every worker that keeps marks (alive or not), by the name it claims under."""
    return {as_text(n) for n in r.smembers(keys.WORKERS)}


def held_by(r: redis.Redis, names: Iterable[str]) -> dict[str, set[str]]:
    """The orders each of ``names`` lists as held (one round trip)."""
    ordered = sorted(set(names))
    if not ordered:
        return {}
    with r.pipeline(transaction=False) as p:
        for n in ordered:
            p.smembers(keys.worker_held(n))
        sets = p.execute()
    return {n: {as_text(c) for c in s} for n, s in zip(ordered, sets, strict=True)}


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
    coid = place_client_order_id(getattr(request, "args", None) or (), getattr(request, "kwargs", None),
                                 getattr(request, "id", None))
    if coid:
        with _lock:
            _held[str(coid)] = time.monotonic()
            _arrived.add(str(coid))
        # Written now, from the writer thread (one pipelined round trip beside the order's own):
        # a host that dies right after taking a burst is the case the held set exists for.
        _changed.set()


@task_postrun.connect
def _on_finished(sender: Any = None, task_id: str | None = None, args: Any = None, kwargs: Any = None,
                 **_kw: Any) -> None:
    """The order's task ended: no longer held (settled, or its message back in the queue). The
    set in Redis loses it at the next renewal: until then it names an order that is no longer NEW,
    which the sweeper's redrive leaves alone."""
    if getattr(sender, "name", None) != keys.PLACE_TASK:
        return
    coid = place_client_order_id(args, kwargs, task_id)
    if coid:
        with _lock:
            _held.pop(coid, None)
            _arrived.discard(coid)


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
