"""The processes of the failover scenario (tests/ha/test_failover.py), every one pointed at the
sentinels of a :class:`~devtools.redisha.RedisHA` and none restarted by the test:

- an order worker of ``kite1`` (both lanes, 4 threads) and an auth worker (``auth``, ``default``);
- two Beats (``celery beat`` with RedBeat): one holds the lock, the other waits on it;
- the feed (``python -m feed --account kite1``) publishing INFY and SBIN from the paper broker;
- a strategy in this process (:class:`Strategy`) placing ``kite1`` orders faster than its cap.

``angel1`` is the account whose login is in progress at the kill: its paper broker delays the
login (fault ``delay``), and Angel is not the orders' broker, so orders are not slowed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from brokergate.launch import beat_argv
from common import keys
from common.client import place_order
from common.models import new_client_order_id
from common.redis import get_redis
from devtools.processes import stop_process
from devtools.redisha import RedisHA
from devtools.waiting import wait_for
from devtools.workerprocs import REPO, Workers
from tests.fixtures.accounts import logged_in, paper_user_of

ORDERS, LOGIN = "kite1", "angel1"
FEED_SYMBOLS = ("INFY", "SBIN")
WORKER_ENV = {"BROKERGATE_VISIBILITY_TIMEOUT_S": "5"}


class Strategy:
    """``threads`` loops placing ``ORDERS`` orders every ``every_s`` until stopped, as a strategy
    would: what ``place_order`` returned is acknowledged (``acked``: id and monotonic time), what
    raised was refused (``refused``: time and error type) and the strategy goes on."""

    def __init__(self, every_s: float, deadline_s: float, threads: int = 2) -> None:
        self.every_s, self.deadline_s = every_s, deadline_s
        self.acked: list[tuple[str, float]] = []
        self.refused: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, name=f"ha-strategy-{i}", daemon=True)
                        for i in range(threads)]  # fmt: skip

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, timeout_s: float) -> None:
        for t in self.threads:
            t.join(timeout_s)

    def _loop(self) -> None:
        while not self.stop.is_set():
            coid = new_client_order_id()
            try:
                place_order(account=ORDERS, exchange="NSE", symbol="INFY", side="BUY", quantity=1,
                            deadline_s=self.deadline_s, client_order_id=coid)  # fmt: skip
                self.acked.append((coid, time.monotonic()))
            except Exception as e:  # told to the strategy: not acknowledged
                self.refused.append((time.monotonic(), type(e).__name__))
            self.stop.wait(self.every_s)

    def acked_after(self, t: float) -> list[str]:
        return [i for i, at in self.acked if at > t]


@dataclass
class Stack:
    ha: RedisHA
    paper: Any
    accts: dict[str, Any]
    workers: Workers
    workdir: Path
    beats: list[subprocess.Popen[bytes]] = field(default_factory=list)
    feed: subprocess.Popen[bytes] | None = None

    @property
    def orders_user(self) -> str:
        return str(paper_user_of(self.accts[ORDERS]).user_id)

    def beat_log(self, i: int) -> str:
        return (self.workdir / f"beat{i}.log").read_text(errors="replace")

    def auth_log(self) -> str:
        return self.workers.procs[1].log()

    def logs(self) -> str:
        """The tail of every process's log, for a failure message."""
        parts = [f"--- {w.name} ---\n{w.log()[-2000:]}" for w in self.workers.procs]
        for p in sorted(self.workdir.glob("*.log")):
            parts.append(f"--- {p.name} ---\n{p.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)  # fmt: skip


def _mark_logins_done(accts: dict[str, Any]) -> None:
    """Today's logins happened: a starting Beat's catch-up enqueues none (the test starts the one
    login it wants in progress, forced)."""
    r = get_redis()
    for name, acct in accts.items():
        day = datetime.now(ZoneInfo(acct.timezone)).date().isoformat()
        r.set(keys.login_done(name, day), "1", ex=3600)


def _feed_ready(stack: Stack) -> None:
    from common import instruments as master
    from common.models import Instrument
    from common.ticks import subscribe
    from paper.universe import build_universe

    r = get_redis()
    insts = [Instrument(p.exchange, p.symbol, str(p.kite_token)) for p in build_universe() if p.symbol in FEED_SYMBOLS]
    master.store(ORDERS, insts, r)
    stack.paper.http.post(f"{stack.paper.url}/_paper/ticks", json={"interval_ms": 50, "paused": False}, timeout=10)
    subscribe([f"NSE:{s}" for s in FEED_SYMBOLS], "ltp", account=ORDERS, r=r)
    stack.feed = _spawn([sys.executable, "-m", "feed", "--account", ORDERS], stack.workdir / "feed.log")


def start_stack(ha: RedisHA, paper: Any, make_accounts: Any, workers: Workers, workdir: Path,
                cap: str) -> Stack:  # fmt: skip
    """Accounts, tokens, workers, Beats and feed, all on ``ha`` (the environment already points at
    it); returns once each is working: a worker ready, a Beat ticking, the feed publishing."""
    accts = make_accounts(kite=1, angel=1, caps={"orders": [cap]}, extra={"read_timeout_s": 2})
    stack = Stack(ha, paper, accts, workers, workdir)
    logged_in({ORDERS: accts[ORDERS]})
    _mark_logins_done(accts)
    workers.start_many([
        ([keys.urgent_queue(ORDERS), keys.orders_queue(ORDERS)], {"concurrency": 4, "env": WORKER_ENV}),
        ([keys.AUTH_QUEUE, keys.DEFAULT_QUEUE], {"concurrency": 4, "env": WORKER_ENV}),
    ])  # fmt: skip
    stack.beats = [_spawn(beat_argv(), workdir / f"beat{i}.log") for i in range(2)]
    _feed_ready(stack)
    r = get_redis()
    wait_for(lambda: r.exists(keys.BEAT_HEARTBEAT), 20, 0.1, what="a Beat ticking")
    wait_for(lambda: ticks_within(5.0), 20, 0.1, what="the feed publishing")
    return stack


def stop_stack(stack: Stack) -> None:
    for p in [*stack.beats, *([stack.feed] if stack.feed else [])]:
        stop_process(p, grace_s=3)
    with contextlib.suppress(Exception):
        stack.paper.http.post(f"{stack.paper.url}/_paper/ticks", json={"interval_ms": 250, "paused": False},
                              timeout=10)  # fmt: skip


def ticks_within(within_s: float) -> bool:
    """A tick published within ``within_s`` to a fresh subscription (this process's client, so
    through the sentinels too)."""
    from common.ticks import TickSubscription

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with TickSubscription([f"NSE:{s}" for s in FEED_SYMBOLS], r=get_redis()) as sub:
                if sub.get(min(1.0, max(0.1, deadline - time.monotonic()))) is not None:
                    return True
        except Exception:  # Redis failing over right now: ask again
            time.sleep(0.1)
    return False
