"""Redis that fails over (#22), measured: ``python -m bench --only redis_ha``.

- The replica's acknowledgement on enqueue -> request at broker (p50 / p99): one order in
  flight, a solo worker each, on three Redis setups in the same run, interleaved in blocks:
  the plain single Redis (the anchor), the HA set (primary, replica, three sentinels:
  devtools/redisha.py) reached through the sentinels with durable writes waiting for one replica
  (``WAIT 1``), and the same HA set without the wait (``BROKERGATE_REDIS_WAIT_REPLICAS=0``), which
  separates the wait from the Sentinel client. Every server without the append-only file, as in
  the other suites (bench/stack.py: the disk is not what is measured).
- The failover gap, over ``FAILOVERS`` failovers: a strategy placing an order every 50 ms on an
  account at 20/s with a 4-thread worker, the primary SIGKILLed; the time from the kill to the
  first order request at the broker after the sentinels promoted the replica, and to the
  promotion itself. The old primary rejoins as a replica before the next kill. Checked: no
  order reached the broker twice.
"""

from __future__ import annotations

import collections
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from bench.orders import _stop, one_order_ms, place
from bench.report import Progress, Record, ms_summary, noop, timed_steps
from bench.stack import Stack, order_requests
from devtools.environ import reset_process_caches
from devtools.redisha import RedisHA
from devtools.workerprocs import start_all

BLOCKS = 4
PER_BLOCK = 40
WARMUP = 5
FAILOVERS = 10
REDIS_VARS = ("BROKERGATE_REDIS_URL", "BROKERGATE_REDIS_SENTINELS", "BROKERGATE_REDIS_MASTER",
              "BROKERGATE_REDIS_WAIT_REPLICAS")  # fmt: skip


@dataclass
class Setup:
    """One Redis setup: its variables for this process and its worker, and the account on it."""

    name: str
    env: dict[str, str]
    account: str = ""
    samples_ms: list[float] = field(default_factory=list)


def _use(s: Stack, env: dict[str, str]) -> None:
    """Point this process at ``env``'s Redis (every variable set: "" is unset)."""
    from common import tokens

    for k in REDIS_VARS:
        s.setenv(k, env.get(k, ""))
    reset_process_caches()
    tokens._reset_for_tests()  # the in-process token cache belongs to the other Redis


def _setups(s: Stack, ha: RedisHA) -> list[Setup]:
    return [
        Setup("single Redis", {"BROKERGATE_REDIS_URL": s.redis.url, "BROKERGATE_REDIS_WAIT_REPLICAS": "0"}),
        Setup("HA, WAIT 1", ha.env()),
        Setup("HA, no WAIT", {**ha.env(), "BROKERGATE_REDIS_WAIT_REPLICAS": "0"}),
    ]


def bench_wait_cost(s: Stack, ha: RedisHA, progress: Progress = noop) -> list[Record]:
    setups = _setups(s, ha)
    accts = s.accounts(kite=len(setups), angel=0, caps={"orders": ["1000/s"]}, registered_algo=True)
    workers = []
    for setup, name in zip(setups, list(accts)[-len(setups):], strict=True):
        setup.account = name
        _use(s, setup.env)
        s.login({name: accts[name]})
        workers.append(s.workers.prepare(s.queues(name), pool="solo", concurrency=1, env=setup.env))
    progress("starting a solo worker on each of: " + ", ".join(x.name for x in setups))
    start_all(workers)
    for setup in setups:
        _use(s, setup.env)
        for _ in range(WARMUP):
            one_order_ms(s, setup.account)
    for block in range(BLOCKS):
        order = setups if block % 2 == 0 else setups[::-1]
        for setup in order:
            _use(s, setup.env)
            setup.samples_ms += [one_order_ms(s, setup.account) for _ in range(PER_BLOCK)]
        progress(f"block {block + 1}/{BLOCKS}: " + ", ".join(
            f"{x.name} p50 {statistics.median(x.samples_ms):.2f} ms" for x in setups))
    _stop(workers)
    return _wait_records(setups)


def _wait_records(setups: list[Setup]) -> list[Record]:
    single, wait, nowait = setups
    stats = {x.name: ms_summary(x.samples_ms) for x in setups}
    n = len(wait.samples_ms)
    note = (f"{n} orders on each setup, one in flight, interleaved in {BLOCKS} blocks, solo workers, replica on the "
            f"same host; {nowait.name}: p50 {stats[nowait.name]['p50']} / p99 {stats[nowait.name]['p99']} ms")
    out = []
    for q, target in ((50, "<= 1.5x single Redis"), (99, "<= 15 ms")):
        value, anchor = stats[wait.name][f"p{q}"], stats[single.name][f"p{q}"]
        out.append(Record(
            name=f"enqueue -> request at broker with a replica's ack (WAIT 1), p{q}",
            value=round(value, 2), unit="ms", target=target,
            passed=value <= 1.5 * anchor if q == 50 else value <= 15,
            anchor="single Redis, no replica", anchor_value=round(anchor, 2), ratio=round(value / anchor, 2),
            spread=f"no WAIT {stats[nowait.name][f'p{q}']} ms", repeats=n, notes=note, extra={"ms": stats},
        ))  # fmt: skip
    return out


class Placer(threading.Thread):
    """A strategy placing one order every ``every_s`` (what place_order refused is counted)."""

    def __init__(self, account: str, every_s: float) -> None:
        super().__init__(name="bench-ha-placer", daemon=True)
        self.account, self.every_s = account, every_s
        self.ids: list[str] = []
        self.done_ns: list[int] = []  # when each place_order returned
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.ids.append(place(self.account, deadline_s=20).id)
                self.done_ns.append(time.monotonic_ns())
            except Exception:  # during the failover: the strategy is told, and goes on
                self.refused += 1
            self.stop.wait(self.every_s)


def _first_order_after(s: Stack, user: str, after_ns: int, timeout_s: float) -> int:
    """arrival_ns of the first order accepted at the broker after ``after_ns``."""
    got = s.wait(lambda: [e["arrival_ns"] for e in order_requests(s.requests(user, since_ns=after_ns), user)
                          if e["status"] == 200], timeout_s, 0.01, "an order at the broker after the promotion")
    return int(min(got))


def bench_failover_gap(s: Stack, ha: RedisHA, progress: Progress = noop) -> list[Record]:
    _use(s, ha.env())
    accts = s.accounts(kite=1, angel=0, caps={"orders": ["20/s"]}, registered_algo=True)
    name = list(accts)[-1]
    s.login({name: accts[name]})
    user = s.user_id(name)
    env = {**ha.env(), "BROKERGATE_VISIBILITY_TIMEOUT_S": "5"}
    s.workers.start(s.queues(name), concurrency=4, env=env)
    placer = Placer(name, 0.05)
    placer.start()
    promotions, gaps, clients = [], [], []
    try:
        for i in range(FAILOVERS):
            s.wait(lambda: order_requests(s.requests(user, since_ns=time.monotonic_ns() - 500_000_000), user), 20,
                   what="orders flowing")  # fmt: skip
            killed_ns = time.monotonic_ns()
            ha.kill_primary()
            ha.wait_failover(timeout_s=30)
            promoted_ns = time.monotonic_ns()
            first = _first_order_after(s, user, promoted_ns, 30)
            promotions.append((promoted_ns - killed_ns) / 1e9)
            gaps.append((first - killed_ns) / 1e9)
            placed = next((t for t in list(placer.done_ns) if t > promoted_ns), first)
            clients.append((placed - killed_ns) / 1e9)
            progress(f"failover {i + 1}/{FAILOVERS}: promoted after {promotions[-1]:.2f} s, the strategy's first "
                     f"place_order back {clients[-1]:.2f} s and the first order at the broker {gaps[-1]:.2f} s "
                     "after the kill")
            ha.restart_old_primary_as_replica()
    finally:
        placer.stop.set()
        placer.join(30)
    return _gap_records(s, user, placer, promotions, gaps, clients)


def _gap_records(s: Stack, user: str, placer: Placer, promotions: list[float], gaps: list[float],
                 clients: list[float]) -> list[Record]:  # fmt: skip
    sent = collections.Counter(e["tag"] for e in order_requests(s.requests(user), user) if e["status"] == 200)
    twice = [t for t, k in sent.items() if k > 1]
    placed = set(placer.ids)
    note = (f"{len(placed)} orders placed by the strategy ({placer.refused} refused during failovers), "
            f"{sum(1 for t in placed if sent[t])} of them at the broker, {len(twice)} twice; promotion (kill -> the "
            f"replica answering as master) median {statistics.median(promotions):.2f} s, max {max(promotions):.2f} s; "
            f"the strategy's first place_order back median {statistics.median(clients):.2f} s, max {max(clients):.2f} s; "
            "down-after 1 s, failover-timeout 2 s")
    extra = {"gaps_s": [round(g, 3) for g in gaps], "promotions_s": [round(p, 3) for p in promotions],
             "client_back_s": [round(c, 3) for c in clients],
             "duplicates": len(twice), "refused": placer.refused}  # fmt: skip
    return [
        Record(name=f"failover gap: SIGKILL of the primary -> first order at the broker, median of {len(gaps)}",
               value=round(statistics.median(gaps), 2), unit="s", target="<= 10 s, no order twice",
               passed=statistics.median(gaps) <= 10 and not twice, anchor="promotion alone (median)",
               anchor_value=round(statistics.median(promotions), 2),
               spread=f"min {min(gaps):.2f} / max {max(gaps):.2f} over {len(gaps)}", repeats=len(gaps),
               notes=note, extra=extra),
        Record(name=f"failover gap: SIGKILL of the primary -> first order at the broker, max of {len(gaps)}",
               value=round(max(gaps), 2), unit="s", target="<= 10 s", passed=max(gaps) <= 10 and not twice,
               anchor="promotion alone (max)", anchor_value=round(max(promotions), 2), repeats=len(gaps),
               notes=note, extra=extra),
    ]  # fmt: skip


def run(progress: Progress = noop) -> Iterator[Record]:
    """A private stack (single Redis, paper broker) and an HA set beside it."""
    with Stack() as s, RedisHA(s.workdir / "ha", appendonly=False) as ha:
        yield from timed_steps((bench_wait_cost, bench_failover_gap), progress, s, ha)


if __name__ == "__main__":
    for rec in run(progress=lambda m: print(m, flush=True)):
        print(rec)
