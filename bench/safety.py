"""Kill-switch benchmarks (issue #18): from ``common.safety.halt`` to the last open order cancelled.

One private stack (bench/stack.py): Redis, the paper broker, one Kite account at Kite's own caps
(orders 10/s, 400/min) whose postbacks go to a receiver in this process, its order worker (urgent
lane first, then entries) and an urgent-only worker beside it, as docker-compose runs them (both
set up as bench/account.py sets them up).

- :func:`bench_cancels`: ``RESTING_N`` LIMIT buys far under the market rest OPEN at the paper
  broker; ``halt([account])`` is called; the time from the call (``time.time_ns()``) to the last of
  them CANCELLED in the order store (the history entry's ``at_ms``, Redis time: the same wall clock
  on this machine), each then checked CANCELLED in the paper broker's own book; the last cancel's
  arrival at the broker (its request log, CLOCK_MONOTONIC) beside it. ``REPEATS`` times, fresh
  resting orders each time and ``resume`` between; median and spread.
- :func:`bench_queued`: the same with ``QUEUED_N`` more entries placed just before the halt (most
  still in the account's queue): how many the halt took out of the queue (``report.dropped``),
  how many met the refusal at the worker instead, and the time until every one is settled.

There is no natural anchor: nothing else cancels through brokergate's limiter. Beside the value
stands the floor the cap sets: the cancels ride the urgent lane at the account's order cap, so
``N / cap`` seconds is the least the last of N cancels can take when the halt finds the cap's
window in use, as a runaway leaves it (the resting orders have just been placed at the cap).

    python -m bench --only safety
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import redis

from bench.account import _kite_account_with_postbacks
from bench.orders import place
from bench.report import Progress, Record, max_in_window, median_spread, noop
from bench.stack import Stack

ACCOUNT = "kite1"  # AccountsWriter names a broker's first account <broker>1
# 5 x (30 places + 30 cancels) and the variant's ~80 make ~380 order requests in under a minute:
# under Kite's 400/min, which would otherwise pace the cancels (the record says the peak).
RESTING_N, REPEATS, QUEUED_N = 30, 5, 200
FAR_UNDER = "1.00"  # a LIMIT buy at this price rests OPEN at the paper broker
SLOTS_OVER_FLOOR = 3  # "within a few limiter slots": the pass line is the floor plus this many slots
SETTLE_WAIT_S = 60.0
TERMINAL = {"COMPLETE", "CANCELLED", "REJECTED", "EXPIRED", "FAILED"}


def _cap_per_s(acct: Any) -> float:
    """The account's order cap over its shortest window, as a rate (Kite: 10/s). The longer windows
    (400/min) allow bursts at that rate; the run stays under them (the record says by how much)."""
    c = min(acct.caps_for("orders"), key=lambda c: c.period_s)
    return float(c.count / c.period_s)


def _states(r: redis.Redis, ids: list[str]) -> dict[str, str]:
    from common import keys
    from common.redis import as_text

    with r.pipeline(transaction=False) as p:
        for i in ids:
            p.hget(keys.order(i), "state")
        got = p.execute()
    return {i: as_text(s) if s else "MISSING" for i, s in zip(ids, got, strict=True)}


def _settled_at_ms(r: redis.Redis, coid: str) -> tuple[str, int]:
    """(the order's terminal state, when it was reached: its history entry's at_ms, Redis time)."""
    from common import orderstore

    got = orderstore.get(r, coid) or {}
    when = [int(h["at_ms"]) for h in got.get("history", []) if h.get("state") == got.get("state")]
    return str(got.get("state")), min(when) if when else 0


def _place(n: int) -> list[str]:
    return [place(ACCOUNT, product="INTRADAY", order_type="LIMIT", price=FAR_UNDER, deadline_s=60).id
            for _ in range(n)]


def _resting(s: Stack, r: redis.Redis, n: int) -> list[str]:
    ids = _place(n)
    s.wait(lambda: set(_states(r, ids).values()) == {"OPEN"}, 30, 0.05, what=f"{n} resting orders OPEN")
    return ids


def _cancel_arrivals(s: Stack, user_id: str, since_ns: int) -> list[int]:
    """Arrival times (CLOCK_MONOTONIC ns) of the cancels at the paper broker since ``since_ns``."""
    return [int(e["arrival_ns"]) for e in s.requests(user_id=user_id, since_ns=since_ns)
            if e["endpoint_class"] == "orders" and e["method"] == "DELETE" and 200 <= e["status"] < 300]


def _one_halt(s: Stack, r: redis.Redis, user_id: str, resting: list[str], queued: list[str]) -> dict[str, Any]:
    """Halt the account now; wait until the resting orders are cancelled and every queued entry
    is settled; check the paper broker's book; resume. Times in ms from the call."""
    from common import keys, safety

    waiting = sum(r.llen(lst) for lst in keys.queue_lists(keys.orders_queue(ACCOUNT)))
    mono0, wall0 = time.monotonic_ns(), time.time_ns()
    report = safety.halt([ACCOUNT], "bench: halt -> last cancel", by="bench")
    returned_ms = (time.monotonic_ns() - mono0) / 1e6
    if not set(resting) <= set(report.cancels):
        raise RuntimeError(f"the halt did not cancel every resting order: {len(report.cancels)} cancels")
    watched = [*report.cancels, *queued]
    s.wait(lambda: set(_states(r, watched).values()) <= TERMINAL, SETTLE_WAIT_S, 0.05, what="every order settled")
    settled = {c: _settled_at_ms(r, c) for c in watched}
    not_cancelled = [c for c in report.cancels if settled[c][0] != "CANCELLED"]
    if not_cancelled:
        raise RuntimeError(f"cancelled by the halt but {[settled[c][0] for c in not_cancelled]}")
    assert s.paper is not None
    papers = s.paper.orders()
    book = {o["tag"]: o["status"] for o in papers if o.get("tag") in set(report.cancels)}
    if set(book.values()) != {"CANCELLED"} or len(book) != len(report.cancels):
        raise RuntimeError(f"not cancelled at the paper broker: {book}")
    arrivals = _cancel_arrivals(s, user_id, mono0)
    if len(arrivals) != len(report.cancels):
        raise RuntimeError(f"{len(arrivals)} cancel requests at the broker for {len(report.cancels)} cancels")
    wall0_ms = wall0 / 1e6
    out = {
        "returned_ms": returned_ms,
        "cancels": len(report.cancels),
        "last_cancelled_ms": max(settled[c][1] for c in report.cancels) - wall0_ms,
        "last_at_broker_ms": (max(arrivals) - mono0) / 1e6,
        "first_at_broker_ms": (min(arrivals) - mono0) / 1e6,
        "waiting_in_queue": waiting,
        "dropped": report.dropped,
    }
    if queued:
        states = {c: settled[c][0] for c in queued}
        out |= {"queued_settled_ms": max(settled[c][1] for c in queued) - wall0_ms,
                "refused_settled_ms": max((settled[c][1] for c in queued if settled[c][0] == "REJECTED"),
                                          default=wall0_ms) - wall0_ms,
                "queued_rejected": sum(1 for v in states.values() if v == "REJECTED"),
                "queued_sent": sum(1 for c in queued if c in set(report.cancels)),
                "refused_at_broker": len({o.get("tag") for o in papers} & {c for c, v in states.items()
                                                                           if v == "REJECTED"})}
    safety.resume([ACCOUNT], by="bench")
    return out


def _minute_cap_said(acct: Any, peak: int) -> str:
    minute = [c for c in acct.caps_for("orders") if c.period_s == 60]
    if not minute:
        return "no per-minute cap"
    return f"under the {minute[0]} cap" if peak < minute[0].count else f"the {minute[0]} cap reached: cancels waited on it"


def _minute_peak(s: Stack, user_id: str, since_ns: int) -> int:
    """The most order requests of the account at the broker in any 60 s of the run."""
    log = s.requests(user_id=user_id, since_ns=since_ns)
    return max_in_window([int(e["arrival_ns"]) for e in log if e["endpoint_class"] == "orders"], 60 * 10**9)


def bench_cancels(s: Stack, r: redis.Redis, acct: Any, user_id: str, progress: Progress = noop) -> Record:
    cap = _cap_per_s(acct)
    floor_s = RESTING_N / cap
    runs = []
    for k in range(REPEATS):
        runs.append(_one_halt(s, r, user_id, _resting(s, r, RESTING_N), []))
        progress(f"run {k + 1}: last cancelled {runs[-1]['last_cancelled_ms']:.0f} ms after the halt "
                 f"(last cancel at the broker {runs[-1]['last_at_broker_ms']:.0f} ms)")
    last_s = [x["last_cancelled_ms"] / 1000 for x in runs]
    med, spread = median_spread(last_s)
    at_broker = statistics.median(x["last_at_broker_ms"] for x in runs)
    first = statistics.median(x["first_at_broker_ms"] for x in runs)
    returned = statistics.median(x["returned_ms"] for x in runs)
    line_s = floor_s + SLOTS_OVER_FLOOR / cap
    return Record(
        name=f"halt -> last cancel confirmed ({RESTING_N} resting orders)",
        value=round(med, 3),
        unit="s",
        target="every open order cancelled at the broker within a few limiter slots of the halt",
        passed=med <= line_s,
        anchor=f"no natural anchor; floor {RESTING_N} cancels / cap {cap:g}/s",
        anchor_value=round(floor_s, 3),
        ratio=round(med / floor_s, 2),
        spread=spread,
        repeats=len(runs),
        notes=(f"Kite account at its own caps ({', '.join(str(c) for c in acct.caps_for('orders'))}), postbacks "
               f"to a receiver, an order worker and an urgent-only worker; {RESTING_N} LIMIT buys resting OPEN, "
               f"halt() called right after the last was OPEN (the cap's window in use, as a runaway leaves it); "
               f"from the call to the last CANCELLED in the order store (history at_ms, Redis time), every one "
               f"then CANCELLED in the paper broker's book; {REPEATS} runs, fresh orders and resume between. "
               f"No natural anchor (nothing else cancels through our limiter): beside it the floor the cap "
               f"sets, N / cap = {floor_s:g} s; pass: median <= floor + {SLOTS_OVER_FLOOR} slots "
               f"({line_s:g} s). Medians: halt() returned in {returned:.0f} ms, first cancel at the broker "
               f"{first:.0f} ms, last {at_broker:.0f} ms (its request log)"),
        extra={"runs": [{k: round(v, 1) for k, v in x.items()} for x in runs], "floor_s": floor_s,
               "cap_per_s": cap, "pass_line_s": line_s},
    )


def bench_queued(s: Stack, r: redis.Redis, acct: Any, user_id: str, since_ns: int, progress: Progress = noop) -> Record:
    cap = _cap_per_s(acct)
    resting = _resting(s, r, RESTING_N)
    queued = _place(QUEUED_N)
    x = _one_halt(s, r, user_id, resting, queued)
    at_worker = x["queued_rejected"] - x["dropped"]
    floor_s = x["cancels"] / cap
    peak = _minute_peak(s, user_id, since_ns)
    progress(f"{QUEUED_N} entries placed just before the halt ({x['waiting_in_queue']} in the queue at it): "
             f"{x['dropped']} taken out of the queue, {at_worker} refused at the worker, {x['queued_sent']} sent "
             f"before it; the refused settled {x['refused_settled_ms']:.0f} ms after the halt, every one "
             f"{x['queued_settled_ms']:.0f} ms; last of {x['cancels']} cancels confirmed {x['last_cancelled_ms']:.0f} "
             f"ms; most order requests in any 60 s of the suite {peak}")
    accounted = x["queued_rejected"] + x["queued_sent"] == QUEUED_N
    line_s = floor_s + SLOTS_OVER_FLOOR / cap
    return Record(
        name=f"halt with {QUEUED_N} entries queued -> every entry settled",
        value=round(x["queued_settled_ms"] / 1000, 3),
        unit="s",
        target="entries not sent refused at the halt (REJECTED, never sent); open orders cancelled within a few "
               "limiter slots",
        passed=accounted and not x["refused_at_broker"] and x["last_cancelled_ms"] / 1000 <= line_s,
        anchor="no natural anchor; queued entries refused by the halt (report.dropped)",
        anchor_value=x["dropped"],
        spread=(f"1 run; refused settled {x['refused_settled_ms']:.0f} ms, last of {x['cancels']} cancels "
                f"{x['last_cancelled_ms'] / 1000:.2f} s (floor {floor_s:g} s)"),
        notes=(f"{RESTING_N} LIMIT buys resting OPEN, then {QUEUED_N} more placed as fast as the client goes and "
               f"halt() called at once ({x['waiting_in_queue']} still in the account's queue): report.dropped "
               f"{x['dropped']} (taken out of the queue, REJECTED inside halt() after it enqueued the cancels; "
               f"it returned in {x['returned_ms']:.0f} ms), {at_worker} refused at the worker's claim or send gate, "
               f"{x['queued_sent']} sent before the halt and cancelled with the resting ones. Every refused entry "
               f"settled {x['refused_settled_ms']:.0f} ms after the call, every one of the {QUEUED_N} "
               f"{x['queued_settled_ms']:.0f} ms (the ones sent settle when their cancel is confirmed); last of the "
               f"{x['cancels']} cancels confirmed {x['last_cancelled_ms']:.0f} ms after it (floor {floor_s:g} s). "
               f"Pass: all {QUEUED_N} accounted for, none of the refused in the paper broker's book "
               f"({x['refused_at_broker']}), the last cancel within floor + {SLOTS_OVER_FLOOR} slots "
               f"({line_s:g} s). No natural anchor. Most order requests in any 60 s of the suite: {peak} "
               f"({_minute_cap_said(acct, peak)})"),
        extra={**{k: round(v, 1) for k, v in x.items()}, "minute_peak": peak},
    )


def run(progress: Progress = noop) -> Iterator[Record]:
    from common import keys
    from common.redis import get_redis

    with Stack() as s, _kite_account_with_postbacks(s) as acct:
        s.workers.start([keys.urgent_queue(ACCOUNT)])  # the urgent-only worker docker-compose runs beside
        r = get_redis()
        user_id = s.user_id(ACCOUNT)
        since_ns = time.monotonic_ns()
        progress(f"{REPEATS} halts of {RESTING_N} resting orders")
        yield bench_cancels(s, r, acct, user_id, progress)
        progress(f"a halt with {QUEUED_N} entries queued")
        yield bench_queued(s, r, acct, user_id, since_ns, progress)


if __name__ == "__main__":
    for rec in run(progress=print):
        print(rec)
