"""Many accounts on few processes (issue #21): pooled workers (``brokergate worker --pooled``,
as many shards as ``brokergate.launch.worker_plan`` gives) beside today's dedicated per-account
workers (one ``brokergate worker ACCOUNT`` each), measured side by side in one run on one private
stack: a cost curve of bursts at 1, 10, 50 and 100 accounts, then the fan-out of one signal over
the 100 accounts. What a row and the fan-out measure, and how, is docs/architecture.md § Targets
("Many accounts"), the one description; bench/scalerecords.py turns them into records and the
picture bench/results/scale_cost.png.

The waits poll Redis (the order store), never the paper broker, whose CPU is measured; its
request log is read once after each burst.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.procstat import ProcTree
from bench.report import Progress, max_in_window, noop
from bench.scalestats import account_burst, fanout_signal, merge_repeats, order_class, row_summary
from bench.stack import Stack
from common.orderstate import TERMINAL_STATES, OrderState
from devtools.workerprocs import WorkerProc

NS = 1_000_000_000

CAP = 10
BURST = 20
# BENCH_SCALE_SIZES="1,5" for a quick look while changing the suite; make bench runs these.
SIZES = tuple(int(x) for x in os.environ.get("BENCH_SCALE_SIZES", "1,10,50,100").split(","))
# Bursts per row: three where a burst is cheap (a row's figures are their medians), one at 50 and
# 100 accounts, where one burst takes 10-30 s on this machine.
REPEATS = {1: 3, 10: 3}
MAX_CANCELS = 10  # accounts per row with an urgent cancel behind their burst
SETTLE_TIMEOUT_S = 120.0
FANOUT_SIGNALS = 20
ANCHOR_FANOUT_SIGNALS = 10  # the dedicated workers' fan-out, beside: ~2 s a signal on this machine
FANOUT_GAP_S = 0.2  # between one signal settling and the next: the cap is never what paces them
RSS_EVERY_S = 0.25
SETTLED = TERMINAL_STATES | {OrderState.OPEN}  # at the broker: done with, or resting there


def _order(account: str, **kw: Any) -> dict[str, Any]:
    return {"account": account, "exchange": "NSE", "symbol": "INFY", "side": "BUY", "quantity": 1, **kw}


# --- workers: the two modes ------------------------------------------------------------------------


def pooled_workers(s: Stack, names: list[str]) -> list[WorkerProc]:
    """Prepared (not started) pooled workers for ``names``, as many shards as
    ``brokergate.launch.worker_plan`` gives (ceil(n / 25)); pooled at every size, even the few
    accounts the plan would give dedicated workers, so the curve has both modes at each."""
    from brokergate.launch import worker_plan
    from common.settings import accounts

    configured = accounts()
    plan = worker_plan({n: configured[n] for n in names}, pooled_above=0)
    shards = sum(1 for layout in plan if layout.pooled)
    if shards == 1:
        return [s.workers.prepare_pooled(names)]
    return [s.workers.prepare_pooled(names, shard=f"{i}/{shards}") for i in range(shards)]


def dedicated_worker(s: Stack, name: str) -> WorkerProc:
    """Today's worker of one account: ``brokergate worker NAME`` (the launch's own command line)."""
    from brokergate.launch import worker_argv, worker_layout
    from common.settings import accounts

    layout = worker_layout(name, accounts=accounts())
    w = WorkerProc(layout.node, list(layout.queues), worker_argv(layout),
                   {**os.environ, "PYTHONUNBUFFERED": "1"}, s.workdir / f"{layout.node}.log")
    s.workers.procs.append(w)  # stopped with the others
    return w


def _start(workers: list[WorkerProc], timeout_s: float = 180.0) -> float:
    """Start at once (startup dominates) and wait for all; the seconds it took."""
    t = time.monotonic()
    for w in workers:
        w.spawn()
    for w in workers:
        w.wait_ready(max(5.0, timeout_s - (time.monotonic() - t)))
    return time.monotonic() - t


def _stop(workers: list[WorkerProc]) -> None:
    """SIGTERM every one first (a warm shutdown takes about a second: one after another, a hundred
    would take minutes), then reap each."""
    for w in workers:
        if w.alive:
            w._signal_group(signal.SIGTERM)
    for w in workers:
        w.stop(5)


# --- one burst ---------------------------------------------------------------------------------------


@dataclass
class Burst:
    """What the bench enqueued in one burst, with the times it took them."""

    t0_ns: int = 0
    enqueued: dict[str, dict[str, int]] = field(default_factory=dict)  # account -> coid -> ns
    cancels: dict[str, tuple[str, int]] = field(default_factory=dict)  # account -> (resting coid, ns)
    enqueue_s: float = 0.0
    enqueue_cpu_s: float = 0.0  # this thread's CPU in the enqueue calls (place_order, cancel_order)

    def ids(self) -> list[str]:
        return [c for per in self.enqueued.values() for c in per] + [c for c, _ in self.cancels.values()]


def _cancel_accounts(names: list[str]) -> list[str]:
    """Up to MAX_CANCELS accounts spread evenly over the row."""
    step = max(1, len(names) // MAX_CANCELS)
    return names[::step][:MAX_CANCELS]


def _resting(names: list[str]) -> dict[str, str]:
    """A LIMIT buy far below the market on each account, open at the broker."""
    from common.client import place_order

    handles = {n: place_order(_order(n, order_type="LIMIT", price="1.00")) for n in names}
    for n, h in handles.items():
        if h.wait(30)["state"] != "OPEN":
            raise RuntimeError(f"the resting order of {n} did not open")
    return {n: h.id for n, h in handles.items()}


def _send(names: list[str], resting: dict[str, str]) -> Burst:
    from common.client import cancel_order, place_order

    b = Burst(t0_ns=time.monotonic_ns())
    cpu0 = time.thread_time()
    for n in names:
        per: dict[str, int] = {}
        for _ in range(BURST):
            t = time.monotonic_ns()
            per[place_order(_order(n, deadline_s=60)).id] = t
        b.enqueued[n] = per
        if n in resting:
            t = time.monotonic_ns()
            cancel_order(resting[n])
            b.cancels[n] = (resting[n], t)
    b.enqueue_s = (time.monotonic_ns() - b.t0_ns) / NS
    b.enqueue_cpu_s = time.thread_time() - cpu0
    return b


def _wait_settled(ids: list[str], timeout_s: float) -> list[str]:
    """Poll the order store until every order is settled at the broker; the ones that were not."""
    from common import keys
    from common.redis import get_redis

    r = get_redis()
    pending = list(ids)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        pipe = r.pipeline(transaction=False)
        for coid in pending:
            pipe.hget(keys.order(coid), "state")
        states = pipe.execute()
        pending = [c for c, st in zip(pending, states, strict=True) if st not in SETTLED]
        if pending:
            time.sleep(0.1)
    return pending


class PeakRss(threading.Thread):
    """Samples a process tree's RSS until stopped: the peak (kB)."""

    def __init__(self, tree: ProcTree) -> None:
        super().__init__(name="peak-rss", daemon=True)
        self.tree = tree
        self.peak_kb = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak_kb = max(self.peak_kb, self.tree.sample().rss_kb)
            self.done.wait(RSS_EVERY_S)

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak_kb


def _others(s: Stack) -> dict[str, ProcTree]:
    """The rest of the pipeline whose CPU a burst also costs: Redis and the paper broker (the
    producer's, every place_order of the burst, is its thread's CPU: :class:`Burst`)."""
    assert s.paper_proc is not None and s.redis.proc is not None
    return {"redis": ProcTree([s.redis.proc.pid]), "paper": ProcTree([s.paper_proc.pid])}


def measure_row(s: Stack, mode: str, names: list[str], workers: list[WorkerProc],
                progress: Progress = noop) -> dict[str, Any]:
    """One burst over ``names`` served by ``workers`` (already started): the row of the curve."""
    resting = _resting(_cancel_accounts(names))
    time.sleep(1.1)  # the resting placements out of every sliding second of the burst
    tree = ProcTree([w.proc.pid for w in workers if w.proc is not None])
    others = _others(s)
    idle = tree.sample()
    before = {k: t.sample().cpu_s for k, t in others.items()}
    peak = PeakRss(tree)
    peak.start()
    burst = _send(names, resting)
    left = _wait_settled(burst.ids(), SETTLE_TIMEOUT_S)
    wall_s = (time.monotonic_ns() - burst.t0_ns) / NS
    end = tree.sample()
    cpu_s = end.cpu_s - idle.cpu_s
    cpu = {k: round(t.sample().cpu_s - before[k], 2) for k, t in others.items()}
    peak_kb = max(peak.stop(), end.rss_kb)
    log = s.requests(since_ns=burst.t0_ns)
    per_account = {n: account_burst(order_class(log, s.user_id(n)), burst.enqueued[n], cap=CAP,
                                    cancel_enqueued_ns=burst.cancels.get(n, (None, None))[1])
                   for n in names}  # fmt: skip
    orders = sum(len(v) for v in burst.enqueued.values()) + len(burst.cancels)
    row = {"mode": mode, "processes": idle.processes, "rss_mb_peak": round(peak_kb / 1024, 1),
           "rss_mb_idle": round(idle.rss_kb / 1024, 1), "cpu_s": round(cpu_s, 2),
           "cpu_ms_per_order": round(1000 * cpu_s / orders, 2),
           # A pooled process is one interpreter: near 100% here it is the bottleneck (the GIL).
           "worker_core_pct": round(100 * cpu_s / wall_s, 1),
           "burst_wall_s": round(wall_s, 2), "enqueue_s": round(burst.enqueue_s, 2), "unsettled": len(left),
           "paper_cpu_s": cpu["paper"], "paper_core_pct": round(100 * cpu["paper"] / wall_s, 1),
           "redis_cpu_s": cpu["redis"], "producer_cpu_s": round(burst.enqueue_cpu_s, 2),
           "producer_cpu_ms_per_order": round(1000 * burst.enqueue_cpu_s / orders, 2),
           "loadavg_1m": round(os.getloadavg()[0], 1),  # other work on the machine during the row
           "per_account": {n: [round(100 * b["cap_use"], 1), b["cap_use_details"].get("span_s"), b["max_in_1s"],
                               b["slots_behind"]] for n, b in per_account.items()},
           **row_summary(per_account)}  # fmt: skip
    progress(f"{mode} x{len(names)}: {_brief(row)}")
    return row


def measure_rows(s: Stack, mode: str, names: list[str], workers: list[WorkerProc],
                 progress: Progress = noop) -> dict[str, Any]:
    """The row of ``names``: REPEATS bursts of :func:`measure_row`, merged (medians)."""
    runs = [measure_row(s, mode, names, workers, progress) for _ in range(REPEATS.get(len(names), 1))]
    return merge_repeats(runs)


def _brief(row: dict[str, Any]) -> str:
    lat = row["latency_first_window_ms"]
    return (f"{row['processes']} proc, RSS {row['rss_mb_peak']:.0f} MB, CPU {row['cpu_s']} s over "
            f"{row['burst_wall_s']} s ({row['cpu_ms_per_order']} ms an order; enqueue {row['enqueue_s']} s), max/1s {row['max_in_1s']}, cap use min {row['cap_use_min_pct']}% "
            f"median {row['cap_use_median_pct']}%, behind {row['slots_behind']}, p50/p99 {lat['p50']}/"
            f"{lat['p99']} ms, paper {row['paper_core_pct']}% of a core, Redis {row['redis_cpu_s']} s, producer "
            f"{row['producer_cpu_s']} s, load {row['loadavg_1m']}, refused {row['refused']}, "
            f"unsettled {row['unsettled']}")


# --- fan-out -------------------------------------------------------------------------------------------


def measure_fanout(s: Stack, mode: str, names: list[str], signals_n: int,
                   progress: Progress = noop) -> dict[str, Any]:
    from brokergate import place_order_group

    template = {k: v for k, v in _order(names[0]).items() if k != "account"}
    fan_t0 = time.monotonic_ns()
    signals: list[tuple[int, dict[str, str]]] = []
    call_ms: list[float] = []
    for _ in range(signals_n):
        t0 = time.monotonic_ns()
        children = {a: h.id for a, h in place_order_group(names, template).placed.items()}  # refused: left out
        call_ms.append((time.monotonic_ns() - t0) / 1e6)
        signals.append((t0, children))
        left = _wait_settled(list(children.values()), 30)
        if left:
            progress(f"fan-out {mode}: {len(left)} children not settled in 30 s")
        time.sleep(FANOUT_GAP_S)
    log = s.requests(since_ns=fan_t0)
    per_user = {n: order_class(log, s.user_id(n)) for n in names}
    arrivals: dict[str, int] = {}
    for reqs in per_user.values():
        for e in reqs:
            if e["method"] == "POST" and e.get("tag"):
                arrivals.setdefault(e["tag"], int(e["arrival_ns"]))
    got = [fanout_signal(t0, ch, arrivals) for t0, ch in signals]
    wanted = {c for _, ch in signals for c in ch.values()}
    assert s.paper is not None
    placed = Counter(o.get("tag") for o in s.paper.orders())
    out = {"mode": mode, "signals": got, "call_ms": call_ms,
           "children": sum(len(ch) for _, ch in signals), "expected": signals_n * len(names),
           "placed_once": sum(1 for c in wanted if placed[c] == 1),
           "placed_twice_or_more": sum(1 for c in wanted if placed[c] > 1),
           "max_in_1s": max(max_in_window([int(e["arrival_ns"]) for e in r], NS) for r in per_user.values()),
           "refused": sum(1 for r in per_user.values() for e in r if int(e["status"]) != 200)}  # fmt: skip
    progress(f"fan-out {mode}: last child ms {[g['last_ms'] for g in got]}, placed once {out['placed_once']}"
             f"/{out['expected']}, max/1s {out['max_in_1s']}, refused {out['refused']}")
    return out


# --- the suite ------------------------------------------------------------------------------------------


def run(progress: Progress = noop) -> Iterator[Any]:
    """The cost curve (pooled rows, then dedicated rows), the fan-out after each mode's
    100-account row; the records once everything is measured (bench/scalerecords.py)."""
    from bench.scalerecords import records

    rows: list[dict[str, Any]] = []
    fans: list[dict[str, Any]] = []
    with Stack() as s:
        accts = s.accounts(kite=max(SIZES), angel=0, caps={"orders": [f"{CAP}/s"]})
        names = sorted(accts, key=lambda n: int(n.removeprefix("kite")))
        s.login(accts)
        progress(f"{len(names)} accounts logged in")
        for n in SIZES:
            ws = pooled_workers(s, names[:n])
            took = _start(ws)
            progress(f"pooled x{n}: {len(ws)} worker(s) ready in {took:.1f} s")
            rows.append({**measure_rows(s, "pooled", names[:n], ws, progress), "start_s": round(took, 1)})
            if n == max(SIZES):
                fans.append(measure_fanout(s, "pooled", names[:n], FANOUT_SIGNALS, progress))
            _stop(ws)
        dedicated: list[WorkerProc] = []
        for n in SIZES:
            new = [dedicated_worker(s, a) for a in names[len(dedicated):n]]
            try:
                took = _start(new)
            except RuntimeError as e:
                progress(f"dedicated x{n}: could not start {len(new)} workers: {e}")
                rows.append({"mode": "dedicated", "accounts": n, "failed": str(e)[:300]})
                break
            dedicated += new
            progress(f"dedicated x{n}: {len(new)} more worker(s) ready in {took:.1f} s")
            rows.append({**measure_rows(s, "dedicated", names[:n], dedicated, progress), "start_s": round(took, 1)})
            if n == max(SIZES):
                fans.append(measure_fanout(s, "dedicated", names[:n], ANCHOR_FANOUT_SIGNALS, progress))
        _stop(dedicated)
    yield from records(rows, fans)


if __name__ == "__main__":
    for rec in run(progress=lambda m: print(m, flush=True)):
        print(rec)
