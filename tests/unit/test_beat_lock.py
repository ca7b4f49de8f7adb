"""beat/lock.py's FailoverSafeLock with a stand-in Lock and clock: a failed extend is tried again
while the lock is still ours by the clock, and counts as lost once it may have lapsed."""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import LockNotOwnedError

from beat.lock import FailoverSafeLock, LockLost


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


class FakeLock:
    """Extends fail with ``errors`` (in order) then succeed; acquire answers ``free``."""

    def __init__(self, clock: Clock, errors: list[Exception], free: bool = False, cost_s: float = 0.0) -> None:
        self.clock, self.errors, self.free, self.cost_s = clock, errors, free, cost_s
        self.extends = 0
        self.acquires = 0

    def extend(self, additional_time: int) -> bool:
        self.extends += 1
        self.clock.t += self.cost_s
        if self.errors:
            raise self.errors.pop(0)
        return True

    def acquire(self, blocking: bool = True) -> bool:
        self.acquires += 1
        return self.free


def test_an_extend_failing_during_a_failover_is_retried_while_the_lock_is_ours() -> None:
    clock = Clock()
    lock = FakeLock(clock, [redis.ConnectionError("no master"), redis.TimeoutError("slow")], cost_s=2.0)
    guard = FailoverSafeLock(lock, 15.0, held=True, clock=clock, sleep=clock.sleep)
    clock.t += 5
    assert guard.extend(15) is True
    assert lock.extends == 3 and lock.acquires == 0
    assert guard.held_until == pytest.approx(clock.t - 2.0 + 15.0)  # from when the good one was sent


def test_an_extend_still_failing_when_the_lock_may_have_lapsed_fires_nothing() -> None:
    clock = Clock()
    lock = FakeLock(clock, [redis.ConnectionError("no master")] * 100, cost_s=3.0)
    guard = FailoverSafeLock(lock, 15.0, held=True, clock=clock, sleep=clock.sleep)
    clock.t += 5
    with pytest.raises(LockLost):
        guard.extend(15)
    assert not guard.held and clock.t <= 100 + 15 + 3  # gave up by the lock's own timeout
    assert lock.acquires == 1  # and tried to take it again at once (someone else may have it)


def test_a_lock_found_not_ours_is_taken_again_only_when_free() -> None:
    clock = Clock()
    taken: list[bool] = []
    lock = FakeLock(clock, [LockNotOwnedError("lost")], free=False)
    guard = FailoverSafeLock(lock, 15.0, held=True, clock=clock, sleep=clock.sleep,
                             on_acquired=lambda: taken.append(True))  # fmt: skip
    assert guard.keep() is False and lock.extends == 1 and lock.acquires == 1 and taken == []
    assert guard.keep() is False and lock.extends == 1  # standby: no extend of a lock it lacks
    lock.free = True
    assert guard.keep() is True and taken == [True] and guard.held
    assert guard.keep() is True and lock.extends == 2  # held again: extended as before
