"""RedBeat's lock across a Redis failover (#22).

RedBeat takes ``<prefix>lock`` (a redis-py Lock) at start and extends it at every tick; an
extend or an acquire that meets a failover raised (MasterNotFoundError, ConnectionError) and
Beat exited: the one holding the lock at its next tick, the standby from inside its wait. Here:

- RedBeat's client is the process's own (:func:`common.redis.get_redis`: it follows the master
  on every reconnect and retries a command for ``BROKERGATE_REDIS_RETRY_S``), behind RedBeat's
  own retrying wrapper (:func:`install_client`);
- :class:`FailoverSafeLock` stands in for RedBeat's Lock: a failed extend is tried again as long
  as the lock is still ours by the clock (the last extend sent + the lock's timeout); once it
  may have lapsed the lock counts as lost and the Beat fires nothing, and at each tick it tries
  to take the lock again without waiting (another Beat may hold it by then: it stays standby).

A tick fires only after an extend succeeded in it, and an extend succeeds only if the key still
holds this Beat's token: two Beats never fire the same slot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import LockNotOwnedError

__all__ = ["FailoverSafeLock", "LockLost", "install_client"]

log = logging.getLogger(__name__)

# Redis errors a failover produces (MasterNotFoundError is a ConnectionError)
_TRANSIENT = (redis.ConnectionError, redis.TimeoutError)
RETRY_EVERY_S = 0.25


class LockLost(Exception):
    """This Beat does not hold the lock (now): its tick must fire nothing."""


class _ProcessClient:
    """The process's shared client, looked up at each use (so it follows settings changes)."""

    def __getattr__(self, name: str) -> Any:
        from common.redis import get_redis

        return getattr(get_redis(), name)


def install_client(app: Any, retry_s: float) -> None:
    """Make RedBeat use the process's Redis client: RedBeat keeps its client in
    ``app.redbeat_redis`` and builds one (a redis-py Sentinel client whose connections retry the
    dead primary's address) only when that is unset."""
    from redbeat.schedulers import REDBEAT_REDIS_KEY, RetryingConnection

    setattr(app, REDBEAT_REDIS_KEY, RetryingConnection(retry_s, _ProcessClient()))


class FailoverSafeLock:
    """RedBeat's redis-py Lock, kept across a failover (see the module). ``extend`` is what
    RedBeat's tick calls; it raises :class:`LockLost` when this Beat must not fire."""

    def __init__(self, lock: Any, timeout_s: float, *, held: bool, on_acquired: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        self._lock = lock
        self.timeout_s = timeout_s
        self._clock, self._sleep = clock, sleep
        self._on_acquired = on_acquired
        # Ours until then at least (by this process's clock; the server expires it later still)
        self.held_until = clock() + timeout_s if held else 0.0

    @property
    def held(self) -> bool:
        return self.held_until > 0.0

    def extend(self, additional_time: float | None = None, replace_ttl: bool = False) -> bool:
        if not self.keep():
            raise LockLost("beat: another Beat holds the lock, or Redis is out of reach")
        return True

    def keep(self) -> bool:
        """Extend the lock, or take it again if it was lost; True when this Beat holds it now."""
        if self.held and self._extend():
            return True
        return self._take()

    def _extend(self) -> bool:
        while True:
            sent = self._clock()
            try:
                self._lock.extend(int(self.timeout_s))
            except LockNotOwnedError:
                log.warning("beat: the lock is no longer ours (it lapsed or was lost at a failover); "
                            "firing nothing until this Beat takes it again")  # fmt: skip
                break
            except _TRANSIENT as e:
                if self._clock() + RETRY_EVERY_S >= self.held_until:
                    log.warning("beat: could not extend the lock before it may have lapsed (%s): "
                                "firing nothing until this Beat takes it again", type(e).__name__)  # fmt: skip
                    break
                self._sleep(RETRY_EVERY_S)
                continue
            self.held_until = sent + self.timeout_s
            return True
        self.held_until = 0.0
        return False

    def _take(self) -> bool:
        sent = self._clock()
        try:
            got = bool(self._lock.acquire(blocking=False))
        except _TRANSIENT:
            return False
        if not got:
            return False
        self.held_until = sent + self.timeout_s
        log.info("beat: took the lock again")
        if self._on_acquired is not None:
            self._on_acquired()
        return True

    def owned(self) -> bool:
        try:
            return bool(self._lock.owned())
        except _TRANSIENT:
            return False

    def release(self) -> None:
        self._lock.release()
        self.held_until = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lock, name)
