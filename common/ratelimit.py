"""The limiter: one atomic reservation across every window of an endpoint class, in Redis.

Policy (pure arithmetic, :func:`earliest_slot`) is apart from storage (``common/lua/
ratelimit_reserve.lua``, which runs the same arithmetic atomically on Redis time). The
reservation waits in the worker (:meth:`Limiter.acquire` sleeps until its slot); nothing is
re-queued, so a message never leaves the worker while it waits.

Scope: the broker counts requests per user (across that user's API keys) or per app, and some
brokers count every endpoint against one budget (``BrokerSpec.caps_counted_per`` and
``shared_caps``). So the state is keyed by :meth:`Account.limit_scope`, not by account: accounts
the broker counts as one share one state (settings refuses them when their caps disagree), and a
request counts in its class's budget and, where the broker has one, in the shared budget too.
:meth:`Limiter.for_account` is the one constructor that knows this; every caller uses it.

Algorithm: a sliding-window log of reserved slots (one sorted set per scope and class, covering
all its windows; one more for a shared budget). Slots are handed out at or after the latest recorded one, so a slot ``t`` keeps
a window of ``count`` requests per ``period`` within its cap exactly when the ``count``-th
latest slot is at or before ``t - period``. Every window is checked in the same script, so
3/s + 200/min + 5000/day is one step, and so is a class's budget plus the shared one (the slot
is the latest of what each allows, :func:`earliest_slot_in`, recorded in both). The broker counts the most requests in ANY sliding
window of each length at arrival, so three sources of error are covered:

* jitter: slots that share a window are spaced ``period + SAFETY_MARGIN_MS`` apart, so a
  request that arrives a little late still lands inside its window;
* a request that left late, or sat in the network or the broker's queue: once its answer is
  back, its slot is moved to that moment (:meth:`Limiter.used`, Redis time), an upper bound
  of when the broker counted it; the slots reserved after that count from there, with only
  ``CONFIRMED_MARGIN_MS`` for rounding, since the next request leaves after its slot on the
  same clock. The full margin only spaces slots from one still in flight (or whose worker
  died), and from one whose request got no answer (a timeout: it may still be on its way, so
  it counts from the failure plus the margin);
* a sender that wakes too late (a stalled process) does not use a slot more than
  ``LATE_TOLERANCE_MS`` after its time (checked on Redis time at the point of no return,
  ``orderstore.mark_sent``) and reserves a new one (the old one stays counted, which only
  costs capacity).

Urgent requests (cancels, modifies, exits) take the earliest slot however far. Ordinary requests
reserve a future slot only when it is within ``horizon`` (one slot interval) of now and no other
future reservation is pending; otherwise they wait and ask again. So at most one ordinary
reservation is ever ahead of an urgent request, which therefore reaches the broker within two
slots of asking, at any number of workers.

A slot after the order's deadline is refused: :class:`DeadlineExceeded`, never sent late.
After the broker's own rate-limit answer, :func:`note_rate_limited` makes the class wait out
the window that was exceeded (the one our slot log shows full, else 1 s) and counts the event
in ``bg:stats:<account>``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass
from functools import cache

import redis

from common import keys
from common.brokers import SHARED_BUDGET
from common.errors import Ambiguous, BrokerGateError, BrokerUnavailable, DeadlineExceeded
from common.lua import LuaScript, script_text
from common.settings import Account, Cap

__all__ = [
    "CONFIRMED_MARGIN_MS",
    "LATE_TOLERANCE_MS",
    "SAFETY_MARGIN_MS",
    "Budget",
    "Limiter",
    "Reservation",
    "budgets_for",
    "confirm",
    "confirm_in",
    "earliest_slot",
    "earliest_slot_in",
    "horizon_us",
    "max_in_window",
    "note_rate_limited",
    "release_in",
    "reserve_in",
    "usage",
]

# Measured on the 2-core test box, three worker processes, the paper broker, and other test
# suites running beside them (load average 4-6): a request leaves 3-5 ms after its slot
# (median, up to 18 ms), and between leaving and being counted by the broker another 1-40 ms
# pass. Counting slots from their send time with a 30 ms margin, the broker saw 4 requests in
# one second about once per 60 orders; counting from the answer (confirm) with 40 ms it has
# not. 40 ms costs 4% of a 1 s window, so it is kept for slots whose request is still in flight.
SAFETY_MARGIN_MS = 40
# After a confirmed slot (its answer is back, so the broker has counted it by then on Redis time),
# only clock rounding and a half-open window edge are left to cover.
CONFIRMED_MARGIN_MS = 2
# A sender that wakes later than this after its slot does not use it (see module docstring).
LATE_TOLERANCE_MS = 15


# --- policy: pure arithmetic ------------------------------------------------------------------


def earliest_slot(slots_us: Sequence[int], now_us: int, caps: Sequence[Cap], margin_us: int,
                  backoff_until_us: int = 0, confirmed: Container[int] = (),
                  confirmed_margin_us: int = CONFIRMED_MARGIN_MS * 1000) -> int:
    """The earliest slot >= now (and after the last reserved one) that keeps every window of
    ``caps`` within its count. ``slots_us`` are the times the reserved slots count from,
    ascending; those in ``confirmed`` had their answer back (``confirmed_margin_us`` after them
    instead of ``margin_us``). The Lua script computes exactly this; the tests hold the two to
    each other."""
    t = max(now_us, backoff_until_us)
    if slots_us:
        t = max(t, slots_us[-1] + 1)
    for cap in caps:
        if len(slots_us) >= cap.count:
            nth = slots_us[-cap.count]
            t = max(t, nth + cap.period_s * 1_000_000 + (confirmed_margin_us if nth in confirmed else margin_us))
    return t


def earliest_slot_in(budgets: Sequence[tuple[Sequence[int], Sequence[Cap]]], now_us: int, margin_us: int,
                     backoff_until_us: int = 0, confirmed: Container[int] = (),
                     confirmed_margin_us: int = CONFIRMED_MARGIN_MS * 1000) -> int:
    """The earliest slot that keeps every budget a request counts in within its caps (its
    class's, and a shared one): each budget is ``(slots_us, caps)``, and the slot is the latest
    of what each allows alone, since each constraint only pushes the slot later. The Lua script
    computes this over all its budgets in one step."""
    return max((earliest_slot(slots, now_us, caps, margin_us, backoff_until_us, confirmed, confirmed_margin_us)
                for slots, caps in budgets), default=max(now_us, backoff_until_us))


def horizon_us(caps: Sequence[Cap]) -> int:
    """How far ahead an ordinary request may reserve: one slot interval of the tightest rate."""
    return min((int(c.period_s * 1_000_000 / c.count) for c in caps), default=0)


def max_in_window(times_ns: Sequence[int], window_ns: int) -> int:
    """The most events in any half-open sliding window [t, t + window) (how brokers count)."""
    ts = sorted(times_ns)
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - window_ns:
            j += 1
        best = max(best, i - j + 1)
    return best


# --- storage: Redis ---------------------------------------------------------------------------------


@cache
def _script(name: str) -> LuaScript:
    return LuaScript(script_text(name))


@dataclass(frozen=True, slots=True)
class Reservation:
    verdict: str  # ok | later | deadline
    slot_us: int
    wait_us: int
    now_us: int


def _cap_args(caps: Sequence[Cap]) -> list[int]:
    return [n for c in caps for n in (c.count, c.period_s * 1_000_000)]


@dataclass(frozen=True, slots=True)
class Budget:
    """One sliding-window log and the caps it keeps: an endpoint class of a limit scope, or the
    scope's shared budget (:data:`common.brokers.SHARED_BUDGET`)."""

    log_key: str
    backoff_key: str
    caps: tuple[Cap, ...]


def _budget(scope: str, endpoint_class: str, caps: Sequence[Cap]) -> Budget:
    """The budget of ``endpoint_class`` in ``scope``. The legacy forms pass the account's name as
    the scope: wrong for accounts the broker counts as one."""
    return Budget(keys.limit(scope, endpoint_class), keys.backoff(scope, endpoint_class), tuple(caps))


def budgets_for(acct: Account, endpoint_class: str) -> tuple[Budget, ...]:
    """Every budget a request of ``endpoint_class`` counts in at the broker: its class's caps
    in the account's limit scope, then the scope's shared budget when the broker has one."""
    scope = acct.limit_scope()
    own = _budget(scope, endpoint_class, acct.caps_for(endpoint_class))
    shared = _budget(scope, SHARED_BUDGET, acct.shared_caps() if endpoint_class != SHARED_BUDGET else ())
    return tuple(b for b in (own, shared) if b.caps)


def reserve_in(r: redis.Redis, budgets: Sequence[Budget], *, deadline_us: int = 0, horizon_us_: int = 0,
               margin_ms: int = SAFETY_MARGIN_MS, confirmed_margin_ms: int = CONFIRMED_MARGIN_MS) -> Reservation:
    """One atomic reservation attempt across every budget (see ``ratelimit_reserve.lua``): one
    script call however many budgets, so the hot path costs the same as with one."""
    keys_: list[str] = []
    args: list[int] = [margin_ms * 1000, deadline_us, horizon_us_, confirmed_margin_ms * 1000]
    for b in budgets:
        keys_ += [b.log_key, b.backoff_key]
        args += [len(b.caps), *_cap_args(b.caps)]
    verdict, slot, wait, now = _script("ratelimit_reserve")(r, keys_, args)
    return Reservation(verdict.decode() if isinstance(verdict, bytes) else verdict, int(slot), int(wait), int(now))


def reserve(r: redis.Redis, account: str, endpoint_class: str, caps: Sequence[Cap], *,
            deadline_us: int = 0, horizon_us_: int = 0, margin_ms: int = SAFETY_MARGIN_MS,
            confirmed_margin_ms: int = CONFIRMED_MARGIN_MS) -> Reservation:
    """One atomic reservation attempt in the per-account state of one class (tests, and the
    legacy :class:`Limiter` constructor); :func:`reserve_in` is the general form."""
    return reserve_in(r, [_budget(account, endpoint_class, caps)], deadline_us=deadline_us,
                      horizon_us_=horizon_us_, margin_ms=margin_ms, confirmed_margin_ms=confirmed_margin_ms)


class Limiter:
    """Takes slots for one account's endpoint class; every worker on every host shares them.

    Build it with :meth:`for_account`, which counts where the broker counts (the account's limit
    scope, plus a shared budget). ``Limiter(r, account, endpoint_class, caps)`` still works for
    now but keys its state by account name: two accounts of one broker user get the cap twice."""

    def __init__(self, r: redis.Redis, account: str, endpoint_class: str, caps: Sequence[Cap], *,
                 budgets: Sequence[Budget] | None = None) -> None:
        self.r = r
        self.account = account
        self.endpoint_class = endpoint_class
        if budgets is None:
            budgets = (_budget(account, endpoint_class, caps),) if caps else ()
        self.budgets = tuple(budgets)
        self.horizon_us = horizon_us([c for b in self.budgets for c in b.caps])

    @classmethod
    def for_account(cls, r: redis.Redis, acct: Account, endpoint_class: str) -> Limiter:
        """The limiter of a request of ``endpoint_class`` on ``acct``: state shared with every
        account of the same limit scope, counted in the broker's shared budget too if it has one."""
        return cls(r, acct.name, endpoint_class, acct.caps_for(endpoint_class),
                   budgets=budgets_for(acct, endpoint_class))

    def acquire(self, deadline_ms: int | None = None, *, urgent: bool = False) -> int:
        """Wait (in this thread) until this request's slot; return the slot (Redis time, us).

        Raises DeadlineExceeded when no slot before ``deadline_ms`` (Redis epoch ms) exists."""
        return self.acquire_due(deadline_ms, urgent=urgent)[0]

    def acquire_due(self, deadline_ms: int | None = None, *, urgent: bool = False) -> tuple[int, float]:
        """:meth:`acquire`, and the slot's moment on this process's monotonic clock, reckoned from
        before the reservation was asked for: never later than the slot really is, so a send-by
        moment counted from it is never too lenient (a thread that read the answer late, held up
        by the GIL, would otherwise count its lateness from when it ran again)."""
        if not self.budgets:
            return 0, time.monotonic()
        deadline_us = 0 if deadline_ms is None else deadline_ms * 1000
        while True:
            asked_at = time.monotonic()
            res = reserve_in(self.r, self.budgets, deadline_us=deadline_us,
                             horizon_us_=0 if urgent else self.horizon_us)
            got_at = time.monotonic()
            if res.verdict == "deadline":
                raise DeadlineExceeded(
                    f"{self.account}/{self.endpoint_class}: next slot is {(res.slot_us - deadline_us) / 1000:.0f} ms "
                    "after the deadline")
            if res.verdict == "later":
                # Ask again when the slot comes within reach (someone may take it first).
                time.sleep(max(res.wait_us, 1000) / 1e6)
                continue
            # Woken from the answer's arrival (never before the slot), late counted from the asking.
            delay_s = got_at + res.wait_us / 1e6 - time.monotonic()
            if delay_s > 0:
                time.sleep(delay_s)
            due = asked_at + res.wait_us / 1e6
            if time.monotonic() - due > LATE_TOLERANCE_MS / 1000:
                continue  # woke too late: using this slot could crowd the next window
            return res.slot_us, due

    @contextlib.contextmanager
    def used(self, slot_us: int) -> Iterator[None]:
        """Wraps the request of ``slot_us``: when it is over, its slot counts from then (see the
        module docstring); pessimistically, plus the margin, when no answer came back."""
        answered = False
        never_left = False
        try:
            yield
            answered = True
        except BrokerGateError as e:
            # Every error type but Ambiguous is an answer, or a request that never left.
            answered = not isinstance(e, Ambiguous)
            never_left = isinstance(e, BrokerUnavailable) and not e.reached
            raise
        finally:
            # Unconfirmed, the slot keeps the full margin: safe, so Redis failing here is no error.
            with contextlib.suppress(redis.RedisError):
                if never_left:
                    # No server saw it, so no broker counted it: the slot is free again.
                    release_in(self.r, self.budgets, slot_us)
                else:
                    confirm_in(self.r, self.budgets, slot_us, answered=answered)

    def release(self, slot_us: int) -> None:
        """The request of ``slot_us`` was never sent (its gate refused it: late, halted, cancelled,
        expired): the slot is free again, so it does not spend a window's budget for nothing."""
        with contextlib.suppress(redis.RedisError):
            release_in(self.r, self.budgets, slot_us)

    def note_rate_limited(self, retry_after_s: float | None = None, margin_ms: int = SAFETY_MARGIN_MS) -> int:
        """The broker answered with its rate-limit response (see :func:`note_rate_limited`).
        The budget that backs off is the outermost one the request counted in: the shared
        budget when the broker has one (its answer is about the budget it enforces, and the
        back-off then holds every class), else the class's own. Counted in the account's stats."""
        if not self.budgets:  # nothing here reserves, so there is nothing to hold back
            self.r.hincrby(keys.stats(self.account), "rate_limited", 1)
            return 0
        return _back_off(self.r, self.budgets[-1], self.account, retry_after_s, margin_ms)


def release_in(r: redis.Redis, budgets: Sequence[Budget], slot_us: int) -> None:
    """Forget a slot whose request certainly reached no server (one pipelined round trip)."""
    if not slot_us or not budgets:
        return
    with r.pipeline(transaction=True) as p:
        for b in budgets:
            p.zrem(b.log_key, str(slot_us))
        p.execute()


def confirm_in(r: redis.Redis, budgets: Sequence[Budget], slot_us: int, *, answered: bool = True) -> int:
    """Move a used slot to now (Redis time) in every budget it was reserved in, when its request
    is over (plus the margin when it got no answer); never earlier. One script call. Returns
    the slot's time, or 0 when it is no longer recorded."""
    if not slot_us or not budgets:
        return 0
    extra_us = 0 if answered else SAFETY_MARGIN_MS * 1000
    return int(_script("ratelimit_confirm")(r, [b.log_key for b in budgets], [str(slot_us), extra_us]))


def confirm(r: redis.Redis, account: str, endpoint_class: str, slot_us: int, *, answered: bool = True) -> int:
    """:func:`confirm_in` for the per-account state of one class (see :func:`reserve`)."""
    return confirm_in(r, [_budget(account, endpoint_class, ())], slot_us, answered=answered)


def _back_off(r: redis.Redis, budget: Budget, account: str, retry_after_s: float | None, margin_ms: int) -> int:
    wait_s = retry_after_s if retry_after_s else min((c.period_s for c in budget.caps), default=1)
    return int(_script("ratelimit_backoff")(
        r, [budget.backoff_key, keys.stats(account), budget.log_key],
        [int(wait_s * 1_000_000), "rate_limited", margin_ms * 1000, *_cap_args(budget.caps)],
    ))


def note_rate_limited(r: redis.Redis, account: str, endpoint_class: str, caps: Sequence[Cap],
                      retry_after_s: float | None = None, margin_ms: int = SAFETY_MARGIN_MS) -> int:
    """The broker answered with its rate-limit response: make every worker of this class wait
    out the window that was exceeded, and count it. That window is the one our own slot log
    shows full (e.g. the minute: back off until the minute window frees, plus the margin);
    when none is, the broker's hint, or the shortest window. Returns the end of the back-off
    (Redis time, us). This form works on the per-account state (see :func:`reserve`); callers
    use :meth:`Limiter.note_rate_limited` of :meth:`Limiter.for_account`."""
    return _back_off(r, _budget(account, endpoint_class, caps), account, retry_after_s, margin_ms)


def usage(account: str, endpoint_class: str, *, r: redis.Redis, caps: Sequence[Cap],
          scope: str | None = None) -> list[tuple[Cap, int]]:
    """For ``brokergate status``: each cap of the class with the requests in its window now.

    The state read is that of ``scope`` (:meth:`Account.limit_scope`: shared by every account
    the broker counts as one, so each of them shows the same, true, usage); with no ``scope``,
    the per-account state (the legacy ``Limiter`` constructor's)."""
    sec, usec = r.time()
    now_us = int(sec) * 1_000_000 + int(usec)
    key = keys.limit(scope or account, endpoint_class)
    return [(c, int(r.zcount(key, f"({now_us - c.period_s * 1_000_000}", now_us))) for c in caps]
