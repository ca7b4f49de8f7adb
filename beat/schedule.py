"""The Beat schedule, on RedBeat, built from the accounts file.

``configure(app)`` makes ``celery -A workers.app beat`` run RedBeat with:

- per account, ``brokergate.login`` at its ``login_time`` in its ``timezone`` (a crontab),
  on the ``auth`` queue; a fresh daily login then enqueues ``brokergate.refresh_instruments``;
- per account, an instrument refresh ``REFRESH_AFTER_MIN`` minutes after the login, a safety
  net should the chained one be lost (it downloads nothing when the master is under an
  hour old);
- per account, ``brokergate.refresh_account_state`` every ``BROKERGATE_ACCOUNT_STATE_EVERY_S``
  (60 s): positions, holdings, funds and trades read from the broker (expiring if not picked up);
- ``brokergate.sweep_orders`` every ``SWEEP_EVERY_S`` seconds (expiring if not picked up,
  so a stopped worker never finds a pile of sweeps).

Lock: RedBeat holds ``<prefix>lock`` while it runs and a second Beat blocks on it at start.
The lock timeout is ``LOCK_TIMEOUT_S`` (15 s: three ticks of ``MAX_LOOP_INTERVAL_S`` = 5 s)
instead of RedBeat's 25 minutes, so when a Beat dies its successor takes over within
about 20 s (the lock lapses after 15 s; a waiting Beat retries it every max interval).
Shorter would risk a healthy but slow Beat (a long Redis pause) losing its lock between
ticks, and two Beats firing. Entries' ``last_run_at`` live in Redis too, so the successor
does not run a slot again. Across a Redis failover (beat/lock.py) a failed extend is retried
while the lock is still ours, a lost lock is taken again at a later tick rather than Beat
exiting, and a tick fires only after its extend succeeded.

Catch-up: RedBeat stores a new entry with ``last_run_at = now``, so a Beat started at 09:00
would wait for tomorrow's 08:45. A ``beat_init`` handler, run after RedBeat has taken its
lock, enqueues ``brokergate.login`` for every account whose slot today is past and whose
``bg:login:done:<account>:<day>`` is missing. The task is idempotent per account and day,
so the catch-up and the regular entry can never log in twice.

Heartbeat: each tick of the Beat holding the lock writes ``bg:hb:beat`` (``last_tick_ms``,
``pid``, ``host``; expiring after two lock timeouts) for ``brokergate status``.

Time zones: RedBeat stores a crontab without its ``nowfun``, so entries are expressed in
the app's time zone (Asia/Kolkata): an account in another zone has its login time
converted with today's offset (a zone with daylight saving time shifts by an hour until
Beat restarts; Indian markets have none).
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import redis
from celery.schedules import crontab
from celery.signals import beat_init

from beat.lock import FailoverSafeLock, LockLost, install_client
from common import keys, redisconf
from common.errors import ConfigError
from common.settings import Account, accounts, settings

__all__ = ["LOCK_TIMEOUT_S", "MAX_LOOP_INTERVAL_S", "build_schedule", "catch_up", "configure", "due_logins"]

log = logging.getLogger(__name__)

APP_TIMEZONE = "Asia/Kolkata"
MAX_LOOP_INTERVAL_S = 5
LOCK_TIMEOUT_S = 3 * MAX_LOOP_INTERVAL_S
SWEEP_EVERY_S = 5.0
REFRESH_AFTER_MIN = 2
REFRESH_SKIP_IF_YOUNGER_S = 3600.0


def _daily(acct: Account, minutes_after: int = 0) -> crontab:
    """Every day at the account's login time (+ minutes), in the app's time zone."""
    tz = ZoneInfo(acct.timezone)
    today = datetime.now(tz).date()
    local = datetime.combine(today, acct.login_time, tz) + timedelta(minutes=minutes_after)
    t = local.astimezone(ZoneInfo(APP_TIMEZONE))
    return crontab(minute=t.minute, hour=t.hour)


def build_schedule(accts: dict[str, Account]) -> dict[str, dict[str, Any]]:
    """The beat_schedule for these accounts (pure: no Redis, no app)."""
    sched: dict[str, dict[str, Any]] = {}
    for name, acct in accts.items():
        sched[f"login:{name}"] = {
            "task": keys.LOGIN_TASK,
            "schedule": _daily(acct),
            "args": [name],
            "options": {"queue": keys.AUTH_QUEUE},
        }
        sched[f"instruments:{name}"] = {
            "task": keys.REFRESH_INSTRUMENTS_TASK,
            "schedule": _daily(acct, REFRESH_AFTER_MIN),
            "args": [name],
            # Skipped when the refresh chained after the login already ran.
            "kwargs": {"max_age_s": REFRESH_SKIP_IF_YOUNGER_S},
            "options": {"queue": keys.AUTH_QUEUE},
        }
        sched[f"account_state:{name}"] = {
            "task": keys.ACCOUNT_STATE_TASK,
            "schedule": timedelta(seconds=settings().account_state_every_s),
            "args": [name],
            "options": {"queue": keys.DEFAULT_QUEUE, "expires": settings().account_state_every_s},
        }
    sched["sweep_orders"] = {
        "task": keys.SWEEP_TASK,
        "schedule": timedelta(seconds=SWEEP_EVERY_S),
        "options": {"expires": SWEEP_EVERY_S * 2},
    }
    return sched


def due_logins(accts: dict[str, Account], now: datetime, r: Any) -> list[str]:
    """Accounts whose login slot today (their time zone) is past at ``now`` and whose
    daily login mark is missing: the logins a starting Beat must run at once."""
    due = []
    for name, acct in accts.items():
        local = now.astimezone(ZoneInfo(acct.timezone))
        slot = datetime.combine(local.date(), acct.login_time, local.tzinfo)
        if local >= slot and not r.exists(keys.login_done(name, local.date().isoformat())):
            due.append(name)
    return due


def catch_up(app: Any, now: datetime | None = None, r: Any = None) -> list[str]:
    """Enqueue the logins a Beat started after the slot has missed; returns the accounts."""
    from common.redis import get_redis, server_time_ms

    r = r or get_redis()
    if now is None:
        now = datetime.fromtimestamp(server_time_ms(r) / 1000, ZoneInfo(APP_TIMEZONE))
    names = due_logins(accounts(), now, r)
    for name in names:
        log.info("beat: the %s login slot has passed without a login today: logging in now", name)
        app.send_task(keys.LOGIN_TASK, args=[name], queue=keys.AUTH_QUEUE)
    return names


def _beat_heartbeat(r: Any, lock_timeout_s: float) -> None:
    """``bg:hb:beat``: when this Beat last ticked (``brokergate status`` reads it)."""
    from common.redis import server_time_ms

    with r.pipeline(transaction=True) as p:
        p.hset(keys.BEAT_HEARTBEAT, mapping={
            "last_tick_ms": server_time_ms(r), "pid": os.getpid(), "host": socket.gethostname(),
        })  # fmt: skip
        p.pexpire(keys.BEAT_HEARTBEAT, int(lock_timeout_s * 2 * 1000))
        p.execute()


def _failover_safe_lock(scheduler: Any, app: Any) -> FailoverSafeLock:
    """RedBeat's lock as a :class:`~beat.lock.FailoverSafeLock`: the one RedBeat took, or, when
    its wait for the lock raised (a failover while this Beat was standby), a new one to take."""
    timeout_s = float(getattr(scheduler, "lock_timeout", LOCK_TIMEOUT_S) or LOCK_TIMEOUT_S)

    def taken() -> None:  # a Beat that takes the lock over runs the catch-up, as one starting does
        _beat_catch_up(app)

    lock = scheduler.lock
    if lock is not None:
        return FailoverSafeLock(lock, timeout_s, held=True, on_acquired=taken)
    from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, get_redis

    log.warning("beat: RedBeat could not take its lock (Redis failing over?); trying again at each tick")
    client = get_redis(app)
    lock = client.lock(scheduler.lock_key, timeout=timeout_s, sleep=scheduler.max_interval)
    lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)  # extend *to* the timeout, as RedBeat
    return FailoverSafeLock(lock, timeout_s, held=False, on_acquired=taken)


def _guard_tick(scheduler: Any, lock: FailoverSafeLock) -> None:
    """Each tick fires only while this Beat holds the lock (RedBeat's tick extends it through
    ``lock``), survives a Redis failover instead of exiting Beat, and writes the heartbeat."""
    from common.redis import get_redis

    tick = scheduler.tick
    idle_s = float(getattr(scheduler, "max_interval", MAX_LOOP_INTERVAL_S) or MAX_LOOP_INTERVAL_S)

    def guarded_tick(*args: Any, **kwargs: Any) -> Any:
        try:
            result = tick(*args, **kwargs)
        except LockLost:
            return idle_s  # standby: try to take the lock at the next tick
        except (redis.ConnectionError, redis.TimeoutError) as e:
            # What RedBeat read or wrote after the extend failed for the whole retry budget; the
            # entries due now are due again at the next tick (their last run is kept in Redis).
            log.warning("beat: Redis out of reach during a tick (%s); trying again", type(e).__name__)
            return 1.0
        try:
            _beat_heartbeat(get_redis(), lock.timeout_s)
        except Exception:  # status is informational; scheduling must go on
            log.debug("beat: heartbeat failed", exc_info=True)
        return result

    scheduler.tick = guarded_tick


def _on_beat_init(sender: Any = None, **_: Any) -> None:
    scheduler = getattr(sender, "scheduler", None)
    if scheduler is None:
        return
    app = sender.app
    if not getattr(scheduler, "lock_key", None):
        _beat_catch_up(app)
        return
    # RedBeat's own beat_init handler (connected first) has taken the lock by now, waiting for it
    # as long as another Beat holds it; or its wait raised, and the lock is None.
    lock = _failover_safe_lock(scheduler, app)
    held = lock.held
    scheduler.lock = lock
    _guard_tick(scheduler, lock)
    if held:
        _beat_catch_up(app)


def _beat_catch_up(app: Any) -> None:
    try:
        catch_up(app)
    except Exception:
        log.exception("beat: login catch-up failed")


def configure(app: Any) -> None:
    """Make ``app``'s Beat a RedBeat with the brokergate schedule (called by workers.app)."""
    import redbeat.schedulers  # noqa: F401  # connects RedBeat's lock handler before ours

    app.conf.timezone = APP_TIMEZONE
    app.conf.enable_utc = True
    app.conf.beat_scheduler = "redbeat.RedBeatScheduler"
    from common.redis import redis_conf

    app.conf.update(**redisconf.redbeat_conf(redis_conf()))  # plain, TLS + ACL or Sentinel
    install_client(app, redis_conf().retry_s)
    app.conf.redbeat_key_prefix = keys.REDBEAT_PREFIX
    app.conf.redbeat_lock_timeout = LOCK_TIMEOUT_S
    app.conf.beat_max_loop_interval = MAX_LOOP_INTERVAL_S
    try:
        accts = accounts()
    except ConfigError as e:
        # Workers import the app too, and may run without an accounts file (tests, tools);
        # a Beat started like this says so loudly and still runs the sweeper.
        log.error("beat: no daily logins scheduled: %s", e)
        accts = {}
    app.conf.beat_schedule = build_schedule(accts)
    beat_init.connect(_on_beat_init, weak=False, dispatch_uid="brokergate.beat.catch_up")
