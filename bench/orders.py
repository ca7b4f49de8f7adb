"""Order benchmarks (docs/architecture.md § Targets), each beside its anchor in the same run:

- cap compliance: 3 worker processes on one queue, cap 3/s, a burst of orders: the most order
  requests in any sliding second at the paper broker, and its rate-limit answers; anchor plain
  Celery ``rate_limit="3/s"`` (bench/plain_app.py) with one worker and with three.
- cap utilization: sustained throughput as % of a 10/s cap during a burst, brokergate with one
  worker at concurrency 1, prefork x4 and threads x10; anchor plain Celery rate_limit 10/s
  with the same three.
- urgent lane: a cancel enqueued behind 100 queued orders: order requests that reached the
  broker before it (no anchor, as docs/architecture.md).
- enqueue -> request at broker, under the cap: p50 / p99 of (arrival at the paper broker -
  enqueue), one order in flight, brokergate (``place_order``, solo worker) vs a plain Celery
  task (solo worker) posting the same request, interleaved in blocks.

Everything runs on a private stack (bench/stack.py); arrival times come from the paper
broker's request log (``arrival_ns``, CLOCK_MONOTONIC, the same clock as ``time.monotonic_ns``
in this process on Linux). A picture of the cap-compliance burst goes to bench/results/.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

from bench import report
from bench.pictures import RESULTS_DIR, plot_requests_per_second, sliding_counts
from bench.report import Progress, Record, max_in_window, median_spread, ms_summary, noop, percentile
from bench.stack import Stack, order_requests
from devtools.workerprocs import start_all

NS = 1_000_000_000
PLAIN_TASK = "bench.plain.post"

COMPLIANCE_ORDERS = 30
UTIL_ORDERS = 50
UTIL_OBSERVE_S = 10.0  # a starving anchor is observed this long after its first request
URGENT_REPEATS = 3
LATENCY_BLOCKS = 4
LATENCY_PER_BLOCK = 40
LATENCY_WARMUP = 5


# --- sending -------------------------------------------------------------------------------------


def _order(account: str, **kw: Any) -> dict[str, Any]:
    return {"account": account, "exchange": "NSE", "symbol": "INFY", "side": "BUY", "quantity": 1, **kw}


def place(account: str, **kw: Any) -> Any:
    from common.client import place_order

    return place_order(_order(account, **kw))


class Plain:
    """The anchor's producer: ``bench.plain.post(url, headers, form)`` with the same Kite request
    brokergate's adapter would send, by task name on a plain queue."""

    def __init__(self, account: Any) -> None:
        from celery import Celery

        from common.brokers.kite import translate
        from common.settings import settings
        from common.tokens import read_token

        tok = read_token(account.name)
        assert tok is not None, f"{account.name} is not logged in"
        self.account = account
        self.url = f"{account.rest_url}/orders/{translate.VARIETY}"
        self.headers = {"X-Kite-Version": "3", "Authorization": f"token {account.api_key}:{tok.access_token}"}
        self.app = Celery("bench-plain-producer", broker=settings().redis_url, set_as_current=False)
        self.app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True)

    def send(self, queue: str, coid: str | None = None) -> str:
        from common.brokers.kite import translate
        from common.models import Order

        o = Order.from_dict(_order(self.account.name, **({"client_order_id": coid} if coid else {})))
        self.app.send_task(PLAIN_TASK, args=[self.url, self.headers, translate.order_form(o)], queue=queue)
        return o.client_order_id


def _stop(workers: list[Any]) -> None:
    for w in workers:
        w.stop(2)


def _arrivals(s: Stack, user_id: str, tags: set[str] | None = None, since_ns: int | None = None) -> list[dict[str, Any]]:
    log = order_requests(s.requests(user_id, since_ns=since_ns), user_id)
    return [e for e in log if tags is None or e.get("tag") in tags]


def _wait_arrived(s: Stack, user_id: str, since_ns: int, n: int, timeout_s: float) -> list[dict[str, Any]]:
    """The user's order requests since ``since_ns`` once ``n`` arrived (a request the broker
    refused with its rate limit is logged without a tag, so count requests, not tags), or what
    arrived within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = _arrivals(s, user_id, since_ns=since_ns)
        if len(got) >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.25)


def _refused(log: list[dict[str, Any]]) -> int:
    """Rate-limit answers (Kite 429; Angel 403) and any other refusal."""
    return sum(1 for e in log if e["status"] != 200)


# --- 1. cap compliance ---------------------------------------------------------------------------


def _burst_ours(s: Stack, account: str, n: int, **kw: Any) -> set[str]:
    return {place(account, deadline_s=60, **kw).id for _ in range(n)}


def bench_cap_compliance(s: Stack, progress: Progress = noop) -> Record:
    cap = 3
    accts = s.accounts(kite=1, angel=0, caps={"orders": [f"{cap}/s"]})
    (name,) = accts
    s.login(accts)
    user = s.user_id(name)
    plain = Plain(accts[name])
    ours_w = [s.workers.prepare(s.queues(name)) for _ in range(3)]
    plain1 = [s.plain_worker(rate=f"{cap}/s", queue="plain.c1", start=False)]
    plain3 = [s.plain_worker(rate=f"{cap}/s", queue="plain.c3", start=False) for _ in range(3)]
    progress("starting 3 brokergate workers, 1 + 3 plain Celery workers")
    start_all(ours_w + plain1 + plain3)
    n = COMPLIANCE_ORDERS
    series: dict[str, list[dict[str, Any]]] = {}
    progress(f"brokergate: {n} orders at once, 3 workers, cap {cap}/s")
    t0 = time.monotonic_ns()
    _burst_ours(s, name, n)
    series["brokergate, 3 workers"] = _wait_arrived(s, user, t0, n, n / cap + 15)
    for label, q, ws in (("Celery rate_limit, 1 worker", "plain.c1", plain1),
                         ("Celery rate_limit, 3 workers", "plain.c3", plain3)):
        progress(f"anchor: {label}: {n} tasks at once")
        t0 = time.monotonic_ns()
        for _ in range(n):
            plain.send(q)
        series[label] = _wait_arrived(s, user, t0, n, n / cap * 1.5 + 15)
        _stop(ws)
    _stop(ours_w)
    stats = {}
    for label, log in series.items():
        arr = [e["arrival_ns"] for e in log]
        stats[label] = {
            "arrived": len(log),
            "max_in_1s": max_in_window(arr, NS),
            "rate_limited": _refused(log),
            "distinct_tags": len({e["tag"] for e in log if e["tag"]}),
        }
        progress(f"{label}: {stats[label]}")
    png = plot_requests_per_second({k: [e["arrival_ns"] for e in v] for k, v in series.items()}, cap,
                                   RESULTS_DIR / "cap_compliance.png",
                                   f"{n} orders at once, cap {cap}/s: requests per sliding second at the broker")
    ours, a1, a3 = (stats[k] for k in series)
    return Record(
        name="cap compliance: most order requests in any 1 s (3 workers, cap 3/s)",
        value=ours["max_in_1s"],
        unit="req / 1 s",
        target=f"<= {cap}, 0 rate-limit answers",
        passed=ours["max_in_1s"] <= cap and ours["rate_limited"] == 0 and ours["arrived"] == n,
        anchor=f"Celery rate_limit 3/s x3 workers (x1: {a1['max_in_1s']})",
        anchor_value=a3["max_in_1s"],
        ratio=round(ours["max_in_1s"] / a3["max_in_1s"], 2) if a3["max_in_1s"] else None,
        spread=f"1 burst of {n}",
        notes=(f"rate-limit answers: ours {ours['rate_limited']}, Celery x1 {a1['rate_limited']}, "
               f"x3 {a3['rate_limited']}; picture {png.relative_to(RESULTS_DIR.parent.parent)}"),
        extra={"series": stats, "picture": str(png.name)},
    )


# --- 2. cap utilization --------------------------------------------------------------------------


def _utilization(arrivals_ns: list[int], n: int, cap: float, observe_s: float) -> tuple[float, dict[str, Any]]:
    """Sustained use of the cap: the mean, over the burst, of what the broker counts in its sliding
    second (requests in (t - 1 s, t]) divided by the cap, for t from one second after the first
    request to the last one (or to ``observe_s`` after the first when not all ``n`` arrived by
    then: a starving sender). Unlike (n - 1) / span it neither rewards a sender that bunches its
    requests at the start of each window nor penalizes one that spaces them."""
    ts = sorted(arrivals_ns)
    if len(ts) < 2:
        return 0.0, {"arrived": len(ts)}
    within = [t for t in ts if t - ts[0] <= observe_s * NS]
    complete = len(within) >= n
    end = within[n - 1] if complete else ts[0] + int(observe_s * NS)
    xs, counts = sliding_counts(within, NS, 10_000_000)
    interior = [c for x, c in zip(xs, counts, strict=True) if NS <= x * NS <= end - ts[0]]
    if not interior:  # a burst shorter than one window
        interior = [len(within)]
    mean = statistics.fmean(interior)
    return mean / cap, {"arrived_in_window": len(within), "all_arrived": complete,
                        "span_s": round((within[-1] - ts[0]) / NS, 3), "mean_per_1s": round(mean, 2),
                        "max_in_1s": max_in_window(within, NS)}


def _measure_burst(s: Stack, user_id: str, since_ns: int, n: int, cap: float,
                   timeout_s: float) -> tuple[float, dict[str, Any], list[int]]:
    """Wait for a burst of ``n`` orders at the paper broker: (:func:`_utilization`, its details
    with the refusals counted, the arrival times)."""
    log = _wait_arrived(s, user_id, since_ns, n, timeout_s)
    arrivals = [e["arrival_ns"] for e in log]
    u, d = _utilization(arrivals, n, cap, UTIL_OBSERVE_S)
    d["rate_limited"] = _refused(log)
    return u, d, arrivals


def bench_cap_utilization(s: Stack, progress: Progress = noop) -> Record:
    cap = 10
    configs = [("x1", "threads", 1), ("prefork x4", "prefork", 4), ("threads x10", "threads", 10)]
    accts = s.accounts(kite=len(configs), angel=0, caps={"orders": [f"{cap}/s"]})
    names = list(accts)[-len(configs):]
    # Diagnostic, not part of the verdict: threads x10 with the account's Celery rate_limit set
    # far above the cap, so only the Redis limiter paces (is Celery's bucket what starves it?).
    diag = s.accounts(kite=1, angel=0, caps={"orders": [f"{cap}/s"]}, rate_limit="1000/s")
    diag_name = list(diag)[-1]
    s.login({n: diag[n] for n in [*names, diag_name]})
    ours_w = [s.workers.prepare(s.queues(n), pool=pool, concurrency=c)
              for n, (_, pool, c) in zip(names, configs, strict=True)]
    diag_w = s.workers.prepare(s.queues(diag_name), pool="threads", concurrency=10)
    plain_w = [s.plain_worker(rate=f"{cap}/s", pool=pool, concurrency=c, queue=f"plain.u{i}", start=False)
               for i, (_, pool, c) in enumerate(configs)]
    progress("starting 4 brokergate workers (x1, prefork x4, threads x10 twice) and 3 plain Celery workers")
    start_all([*ours_w, diag_w, *plain_w])
    n = UTIL_ORDERS
    ours: dict[str, float] = {}
    anchor: dict[str, float] = {}
    details: dict[str, Any] = {}
    series: dict[str, list[int]] = {}
    for i, (label, _pool, _c) in enumerate(configs):
        name = names[i]
        user = s.user_id(name)
        t0 = time.monotonic_ns()
        _burst_ours(s, name, n)
        u, d, arrivals = _measure_burst(s, user, t0, n, cap, n / cap + 10)
        ours[label], details[f"brokergate {label}"] = u, d
        series[f"brokergate {label}"] = arrivals
        progress(f"brokergate {label}: {u:.1%} of {cap}/s {d}")
        _stop([ours_w[i]])
        plain = Plain(accts[name])
        t0 = time.monotonic_ns()
        for _ in range(n):
            plain.send(f"plain.u{i}")
        u, d, arrivals = _measure_burst(s, user, t0, n, cap, UTIL_OBSERVE_S + 2)
        anchor[label], details[f"Celery {label}"] = u, d
        series[f"Celery rate_limit {label}"] = arrivals
        progress(f"anchor Celery rate_limit {label}: {u:.1%} of {cap}/s {d}")
        _stop([plain_w[i]])
    user = s.user_id(diag_name)
    t0 = time.monotonic_ns()
    _burst_ours(s, diag_name, n)
    diag_u, d, arrivals = _measure_burst(s, user, t0, n, cap, n / cap + 10)
    details["diagnostic: brokergate threads x10, account rate_limit 1000/s"] = d
    series["brokergate threads x10, Celery rate_limit 1000/s (diagnostic)"] = arrivals
    progress(f"diagnostic: brokergate threads x10 with Celery rate_limit 1000/s: {diag_u:.1%} {d}")
    _stop([diag_w])
    keep = ("brokergate threads x10", "brokergate threads x10, Celery rate_limit 1000/s (diagnostic)",
            "Celery rate_limit threads x10", "Celery rate_limit prefork x4")
    png = plot_requests_per_second({k: series[k] for k in keep if k in series}, cap,
                                   RESULTS_DIR / "cap_utilization.png",
                                   f"{n} orders at once, cap {cap}/s: requests per sliding second at the broker")
    worst = min(ours, key=lambda k: ours[k])
    concurrent = [k for k in anchor if k != "x1"]
    worst_anchor = min(concurrent, key=lambda k: anchor[k])
    return Record(
        name="cap utilization: sustained % of a 10/s cap in a burst (worst worker config)",
        value=round(100 * ours[worst], 1),
        unit="% of cap",
        target=">= 95% at any worker concurrency",
        passed=all(u >= 0.95 for u in ours.values()),
        anchor="Celery rate_limit 10/s, " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in anchor.items()),
        anchor_value=round(100 * anchor[worst_anchor], 1),
        ratio=round(ours[worst] / anchor[worst_anchor], 2) if anchor[worst_anchor] else None,
        spread="ours " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in ours.items()),
        repeats=1,
        notes=(f"{n} orders at once per config; utilization = mean requests in the broker's sliding 1 s over the "
               f"burst / cap; anchor observed {UTIL_OBSERVE_S:.0f} s after its first request; "
               f"worst ours: {worst}, anchor value: {worst_anchor}; diagnostic threads x10 with the account's "
               f"Celery rate_limit at 1000/s (Redis limiter alone): {100 * diag_u:.1f}%"),
        extra={"ours_pct": {k: round(100 * v, 1) for k, v in ours.items()},
               "anchor_pct": {k: round(100 * v, 1) for k, v in anchor.items()},
               "diagnostic_threads10_celery_rate_limit_off_pct": round(100 * diag_u, 1), "details": details,
               "picture": png.name},
    )


# --- 3. urgent lane --------------------------------------------------------------------------------


def bench_urgent_lane(s: Stack, progress: Progress = noop) -> Record:
    from common import orderstore
    from common.client import cancel_order
    from common.redis import get_redis

    accts = s.accounts(kite=1, angel=0, caps={"orders": ["10/s"]})
    name = list(accts)[-1]
    s.login({name: accts[name]})
    user = s.user_id(name)
    both = s.queues(name)
    ws = [s.workers.prepare(both), s.workers.prepare(both), s.workers.prepare([both[0]])]
    progress("starting 2 order workers and 1 urgent-only worker (cap 10/s)")
    start_all(ws)
    r = get_redis()
    ahead_counts: list[int] = []
    for rep in range(URGENT_REPEATS):
        resting = place(name, order_type="LIMIT", price="1.00")
        if resting.wait(10)["state"] != "OPEN":
            raise RuntimeError("the resting order did not open")
        burst = [place(name, deadline_s=3).id for _ in range(100)]
        s.wait(lambda b=burst: len(_arrivals(s, user, set(b))) >= 6, 10, 0.05, "the burst under way")
        before = len(order_requests(s.requests(user), user, method=None))
        cancel_order(resting.id)

        def cancel_seen(before: int = before) -> list[dict[str, Any]]:
            log = order_requests(s.requests(user), user, method=None)[before:]
            return log if any(e["method"] == "DELETE" for e in log) else []

        after = s.wait(cancel_seen, 10, 0.05, "the cancel at the broker")
        cut = next(i for i, e in enumerate(after) if e["method"] == "DELETE")
        ahead = sum(1 for e in after[:cut] if e["method"] == "POST")
        ahead_counts.append(ahead)
        progress(f"urgent lane {rep + 1}/{URGENT_REPEATS}: {ahead} order requests before the cancel")
        s.wait(lambda b=burst: all((orderstore.get(r, i) or {}).get("state") in ("OPEN", "COMPLETE", "EXPIRED")
                                   for i in b), 20, 0.2, "the burst settled")
    _stop(ws)
    worst = max(ahead_counts)
    return Record(
        name="urgent lane: order requests ahead of a cancel enqueued behind 100",
        value=worst,
        unit="slots (worst)",
        target="<= 2",
        passed=worst <= 2,
        anchor="",
        spread=f"{ahead_counts} over {len(ahead_counts)}",
        repeats=len(ahead_counts),
        notes="cap 10/s, 2 workers on both lanes + 1 urgent-only; value is the worst repeat",
        extra={"ahead": ahead_counts},
    )


# --- 4. enqueue -> request at broker ------------------------------------------------------------------


def _seen(s: Stack, user: str, tag: str, since_ns: int, timeout_s: float = 5.0) -> int:
    """arrival_ns of order ``tag`` at the broker."""
    return s.wait(lambda: next((int(e["arrival_ns"]) for e in s.requests(user, since_ns=since_ns)
                                if e.get("tag") == tag and e["endpoint_class"] == "orders"), 0),
                  timeout_s, 0.005, f"order {tag} at the broker")


def one_order_ms(s: Stack, account: str, enqueue_ms: list[float] | None = None) -> float:
    """One order in flight: ms from before ``place_order`` to its request at the broker, once the
    worker has finished with it (the enqueue call's own ms go to ``enqueue_ms``)."""
    t0 = time.monotonic_ns()
    h = place(account, deadline_s=10)
    if enqueue_ms is not None:
        enqueue_ms.append((time.monotonic_ns() - t0) / 1e6)
    time.sleep(0.01)  # let it arrive before asking (asking must not compete with it)
    arrived = _seen(s, s.user_id(account), h.id, t0)
    h.wait(5)  # one in flight: the worker has finished before the next
    return (arrived - t0) / 1e6


def bench_latency(s: Stack, progress: Progress = noop) -> list[Record]:
    # A cap the limiter never paces at: above the 2026 rule's 10/s, so a registered algo (common/algorules.py).
    accts = s.accounts(kite=1, angel=0, caps={"orders": ["1000/s"]}, registered_algo=True)
    name = list(accts)[-1]
    s.login({name: accts[name]})
    user = s.user_id(name)
    ours_w = s.workers.prepare(s.queues(name), pool="solo", concurrency=1)
    plain_w = s.plain_worker(rate=None, pool="solo", queue="plain.lat", start=False)
    progress("starting a solo brokergate worker and a solo plain Celery worker (cap 1000/s)")
    start_all([ours_w, plain_w])
    plain = Plain(accts[name])
    ours_ms: list[float] = []
    plain_ms: list[float] = []
    client_ms: dict[str, list[float]] = {"ours": [], "plain": []}  # enqueue call returned

    def one_ours() -> float:
        return one_order_ms(s, name, client_ms["ours"])

    def one_plain() -> float:
        from common.models import new_client_order_id

        coid = new_client_order_id()
        t0 = time.monotonic_ns()
        plain.send("plain.lat", coid)
        client_ms["plain"].append((time.monotonic_ns() - t0) / 1e6)
        time.sleep(0.01)
        arrived = _seen(s, user, coid, t0)
        time.sleep(0.005)  # its answer is back and the task acked
        return (arrived - t0) / 1e6

    for _ in range(LATENCY_WARMUP):
        one_ours()
        one_plain()
    for block in range(LATENCY_BLOCKS):
        first, second = (one_ours, one_plain) if block % 2 == 0 else (one_plain, one_ours)
        for fn in (first, second):
            out = ours_ms if fn is one_ours else plain_ms
            out += [fn() for _ in range(LATENCY_PER_BLOCK)]
        progress(f"latency block {block + 1}/{LATENCY_BLOCKS}: ours p50 {statistics.median(ours_ms):.2f} ms, "
                 f"plain p50 {statistics.median(plain_ms):.2f} ms")
    _stop([ours_w, plain_w])
    p50, p99 = percentile(ours_ms, 50), percentile(ours_ms, 99)
    a50, a99 = percentile(plain_ms, 50), percentile(plain_ms, 99)
    block_p50 = [statistics.median(ours_ms[i:i + LATENCY_PER_BLOCK]) for i in range(0, len(ours_ms), LATENCY_PER_BLOCK)]
    _, spread50 = median_spread(block_p50)
    n = len(ours_ms)
    common = {"ours_ms": ms_summary(ours_ms), "plain_ms": ms_summary(plain_ms),
              "enqueue_call_p50_ms": {k: round(statistics.median(v[LATENCY_WARMUP:]), 3) for k, v in client_ms.items()}}
    note = (f"{n} orders each, one in flight, interleaved in {LATENCY_BLOCKS} blocks; solo workers; "
            "arrival_ns at the paper broker - time.monotonic_ns() before place_order / send_task")
    return [
        Record(
            name="enqueue -> request at broker, p50 (under the cap)",
            value=round(p50, 2), unit="ms", target="<= 1.2x plain Celery task",
            passed=p50 <= 1.2 * a50,
            anchor="plain Celery task, solo worker", anchor_value=round(a50, 2), ratio=round(p50 / a50, 2),
            spread=f"block p50s {spread50}", repeats=n, extra=common,
            notes=note + (f"; of which the enqueue call (place_order / send_task) p50 "
                          f"{common['enqueue_call_p50_ms']['ours']} / {common['enqueue_call_p50_ms']['plain']} ms"),
        ),
        Record(
            name="enqueue -> request at broker, p99 (under the cap)",
            value=round(p99, 2), unit="ms", target="<= 15 ms",
            passed=p99 <= 15,
            anchor="plain Celery task, solo worker", anchor_value=round(a99, 2), ratio=round(p99 / a99, 2),
            spread=f"max ours {max(ours_ms):.1f} / plain {max(plain_ms):.1f} ms", repeats=n, notes=note, extra=common,
        ),
    ]


# --- the suite -------------------------------------------------------------------------------------


def run(progress: Progress = noop) -> Iterator[Record]:
    """All order benchmarks on one private stack (workers are started and stopped per benchmark)."""
    with Stack() as s:
        steps = (bench_cap_compliance, bench_cap_utilization, bench_urgent_lane, bench_latency)
        yield from report.timed_steps(steps, progress, s)


if __name__ == "__main__":
    for rec in run(progress=lambda m: print(m, flush=True)):
        print(rec)
