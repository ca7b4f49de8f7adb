"""The limiter: policy arithmetic, the Lua script on real Redis, deadlines, back-off, usage."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import keys, ratelimit
from common.errors import DeadlineExceeded
from common.settings import Cap

US = 1_000_000


def test_earliest_slot_respects_every_window() -> None:
    caps = [Cap(3, 1), Cap(5, 60)]
    slots: list[int] = []
    for _ in range(5):
        slots.append(ratelimit.earliest_slot(slots, 0, caps, margin_us=0))
    # three at once, then the fourth a second later; the fifth too; the sixth waits for the minute
    assert slots == [0, 1, 2, US, US + 1]
    assert ratelimit.earliest_slot(slots, 0, caps, margin_us=0) == 60 * US
    assert ratelimit.earliest_slot(slots, 0, caps, margin_us=7) == 60 * US + 7


def test_max_in_window_is_half_open() -> None:
    assert ratelimit.max_in_window([0, 999, 1000, 1999], 1000) == 2
    assert ratelimit.max_in_window([0, 1, 2, 999], 1000) == 4
    assert ratelimit.max_in_window([], 1000) == 0


@settings(max_examples=25, deadline=None)
@given(caps=st.lists(st.tuples(st.integers(1, 6), st.sampled_from([1, 2, 60])), min_size=1, max_size=3),
       answers=st.lists(st.sampled_from([None, 0, 3_000, 250_000]), min_size=1, max_size=25))
def test_lua_matches_policy_and_never_exceeds_any_window(redis_server, caps, answers) -> None:
    """Given any windows, When slots are reserved on Redis and some are confirmed (their answer
    back some us after the slot, or never), Then each slot is the policy's earliest slot, and no
    window of any cap holds more than its count, counted from when each request counts."""
    import redis as redis_lib

    r = redis_lib.Redis.from_url(redis_server.url)
    key = keys.limit("prop", "orders")
    r.delete(key, keys.backoff("prop", "orders"))
    cs = [Cap(c, p) for c, p in caps]
    margin_us, confirmed_margin_us = 7_000, 1_000
    counts_at: list[int] = []  # when each request counts: its slot, or its answer once confirmed
    confirmed: set[int] = set()
    for answer_us in answers:
        res = ratelimit.reserve(r, "prop", "orders", cs, margin_ms=7, confirmed_margin_ms=1)
        assert res.verdict == "ok"
        assert res.slot_us == ratelimit.earliest_slot(sorted(counts_at), res.now_us, cs, margin_us=margin_us,
                                                      confirmed=confirmed, confirmed_margin_us=confirmed_margin_us)
        if answer_us is None:  # still in flight
            counts_at.append(res.slot_us)
            continue
        # what ratelimit_confirm.lua does when the answer comes answer_us after the slot
        r.zadd(key, {str(res.slot_us): res.slot_us + answer_us + 1}, xx=True)
        counts_at.append(res.slot_us + answer_us + 1)
        confirmed.add(res.slot_us + answer_us + 1)
    for c in cs:
        assert ratelimit.max_in_window(counts_at, c.period_s * US) <= c.count
    r.close()


def test_slot_after_deadline_is_refused_and_not_recorded(r) -> None:
    caps = [Cap(1, 60)]
    first = ratelimit.reserve(r, "a", "orders", caps)
    assert first.verdict == "ok"
    late = ratelimit.reserve(r, "a", "orders", caps, deadline_us=first.now_us + 5 * US)
    assert late.verdict == "deadline"
    assert r.zcard(keys.limit("a", "orders")) == 1
    lim = ratelimit.Limiter(r, "a", "orders", caps)
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        lim.acquire(deadline_ms=first.now_us // 1000 + 5000)
    assert time.monotonic() - t0 < 0.5  # refused at once, not after waiting


def test_ordinary_requests_leave_the_near_slots_to_urgent_ones(r) -> None:
    caps = [Cap(10, 1)]
    h = ratelimit.horizon_us(caps)
    assert h == 100_000
    for _ in range(10):
        assert ratelimit.reserve(r, "a", "orders", caps, horizon_us_=h).verdict == "ok"
    # the window is full: the next slot is a second away, beyond the horizon
    assert ratelimit.reserve(r, "a", "orders", caps, horizon_us_=h).verdict == "later"
    assert ratelimit.reserve(r, "a", "orders", caps).verdict == "ok"  # urgent takes it


def test_one_pending_ordinary_reservation_at_most(r) -> None:
    caps = [Cap(1, 1)]
    h = ratelimit.horizon_us(caps)
    assert ratelimit.reserve(r, "b", "orders", caps, horizon_us_=h).verdict == "ok"  # now
    assert ratelimit.reserve(r, "b", "orders", caps, horizon_us_=h).verdict == "later"  # a second away
    urgent = ratelimit.reserve(r, "b", "orders", caps)
    assert urgent.verdict == "ok" and 900_000 < urgent.wait_us <= 1_100_000


def test_backoff_delays_every_worker_and_is_counted(r) -> None:
    caps = [Cap(100, 1)]
    end = ratelimit.note_rate_limited(r, "a", "orders", caps, retry_after_s=0.3)
    res = ratelimit.reserve(r, "a", "orders", caps)
    assert res.slot_us == end and 250_000 < res.wait_us <= 300_000
    assert r.hget(keys.stats("a"), "rate_limited") == "1"


def test_confirm_counts_a_slot_from_its_answer(r) -> None:
    """Given a used slot, When its answer came back, Then the next slot counts from the answer with
    only the confirmed margin; When no answer came back, from the failure plus the full margin;
    While it is in flight (unconfirmed), the full margin applies."""
    caps = [Cap(1, 1)]
    first = ratelimit.reserve(r, "c", "orders", caps)
    in_flight = ratelimit.reserve(r, "c2", "orders", caps)
    assert ratelimit.reserve(r, "c2", "orders", caps).slot_us == in_flight.slot_us + US + ratelimit.SAFETY_MARGIN_MS * 1000
    moved = ratelimit.confirm(r, "c", "orders", first.slot_us)
    assert moved >= first.slot_us
    nxt = ratelimit.reserve(r, "c", "orders", caps)
    assert nxt.slot_us == moved + US + ratelimit.CONFIRMED_MARGIN_MS * 1000
    timed_out = ratelimit.reserve(r, "c3", "orders", caps)
    unanswered = ratelimit.confirm(r, "c3", "orders", timed_out.slot_us, answered=False)
    assert unanswered >= timed_out.slot_us + ratelimit.SAFETY_MARGIN_MS * 1000
    assert ratelimit.reserve(r, "c3", "orders", caps).slot_us == unanswered + US + ratelimit.CONFIRMED_MARGIN_MS * 1000
    assert ratelimit.confirm(r, "c", "orders", 12345) == 0  # not a recorded slot


def test_used_confirms_by_whether_an_answer_came_back(r) -> None:
    """Limiter.used: an answer (success or a broker error type) confirms from now; Ambiguous or an
    unexpected exception from now plus the full margin."""
    from common.errors import Ambiguous, OrderRejected

    lim = ratelimit.Limiter(r, "u", "orders", [Cap(100, 1)])
    key = keys.limit("u", "orders")
    for exc, extra in ((None, 0), (OrderRejected("no"), 0), (Ambiguous("timeout"), ratelimit.SAFETY_MARGIN_MS * 1000),
                       (RuntimeError("bug"), ratelimit.SAFETY_MARGIN_MS * 1000)):
        slot = lim.acquire(urgent=True)
        sec, usec = r.time()
        before_us = int(sec) * US + int(usec)
        with pytest.raises(type(exc)) if exc else contextlib.nullcontext(), lim.used(slot):
            if exc:
                raise exc
        score = int(r.zscore(key, str(slot)))
        assert before_us + extra <= score < before_us + extra + 200_000


def test_usage_reports_each_window(r) -> None:
    caps = [Cap(5, 1), Cap(50, 60)]
    for _ in range(3):
        ratelimit.reserve(r, "a", "orders", caps)
    used = ratelimit.usage("a", "orders", r=r, caps=caps)
    assert [(c.count, n) for c, n in used] == [(5, 3), (50, 3)]


def test_threads_sharing_the_limiter_stay_within_the_cap(redis_url) -> None:
    """Given 4 threads and a 5/s cap, When 12 requests go through acquire, Then the local send
    times never put more than 5 in a second and the cap is used (it takes ~2 s, not more)."""
    caps = [Cap(5, 1)]
    sent_ns: list[int] = []
    lock = threading.Lock()
    todo = list(range(12))

    def work() -> None:
        import redis as redis_lib

        rr = redis_lib.Redis.from_url(redis_url)
        lim = ratelimit.Limiter(rr, "t", "orders", caps)
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            lim.acquire()
            with lock:
                sent_ns.append(time.monotonic_ns())

    t0 = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(sent_ns) == 12
    assert ratelimit.max_in_window(sent_ns, 1_000_000_000) <= 5
    assert time.monotonic() - t0 < 2.6


def test_backoff_lasts_until_the_window_our_log_shows_full(r) -> None:
    """Given the per-minute window full by our own slot log (3 of 3/min), When the broker answers
    with its rate limit, Then the class backs off until that minute window frees, not for 1 s."""
    caps = [Cap(10, 1), Cap(3, 60)]
    slots = [ratelimit.reserve(r, "m", "orders", caps).slot_us for _ in range(3)]
    time.sleep(0.01)  # all three sent
    end = ratelimit.note_rate_limited(r, "m", "orders", caps, retry_after_s=1.0)
    assert end == slots[0] + 60 * US + ratelimit.SAFETY_MARGIN_MS * 1000
    assert int(r.get(keys.backoff("m", "orders"))) == end


def test_backoff_to_the_end_of_a_full_second_window(r) -> None:
    caps = [Cap(2, 1), Cap(100, 60)]
    slots = [ratelimit.reserve(r, "s", "orders", caps).slot_us for _ in range(2)]
    time.sleep(0.01)
    end = ratelimit.note_rate_limited(r, "s", "orders", caps, retry_after_s=1.0)
    assert end == slots[0] + US + ratelimit.SAFETY_MARGIN_MS * 1000


def test_backoff_is_one_second_when_no_window_is_full_by_our_log(r) -> None:
    caps = [Cap(5, 1), Cap(100, 60)]
    ratelimit.reserve(r, "n", "orders", caps)
    before = ratelimit.reserve(r, "other", "orders", caps).now_us
    end = ratelimit.note_rate_limited(r, "n", "orders", caps, retry_after_s=1.0)
    assert US <= end - before < US + 50_000


def test_a_released_slot_spends_no_budget(r) -> None:
    """A slot whose request never left (its gate refused it: late, halted, ...) goes back: with
    2 per minute, two released slots leave both for the next requests, now."""
    caps = [Cap(2, 60)]
    lim = ratelimit.Limiter(r, "a", "orders", caps)
    now_ms = int(r.time()[0]) * 1000
    for _ in range(2):
        lim.release(lim.acquire(now_ms + 1000))
    first, second = lim.acquire(now_ms + 1000), lim.acquire(now_ms + 1000)
    assert second - first < 1_000_000  # both within the second: neither waited out the minute
