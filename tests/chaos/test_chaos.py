"""Chaos: nothing is lost, nothing is sent twice, while workers die, Redis restarts and the broker
misbehaves (docs/architecture.md § Reliability). Real processes throughout: a private redis-server with the
append-only file (tests/fixtures/redis.py), the paper broker, ``celery -A workers.app worker``
subprocesses (tests/fixtures/workers.py) and, where it runs, ``python -m feed``.

``make chaos`` runs the full versions (marker ``chaos``, deselected from ``make test``);
``test_orders_through_two_worker_kills_small`` is the small version kept in the default run.

Every test prints what it did and what it checked (shown even under ``-q``).
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from common import keys, orderstore
from common.client import place_order
from common.models import TERMINAL_STATES, new_client_order_id
from common.redis import get_redis
from devtools.processes import stop_process
from tests.fixtures.accounts import logged_in, paper_user_of

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {s.value for s in TERMINAL_STATES}
NEVER_SENT = {"EXPIRED", "FAILED", "CANCELLED"}


# --- helpers -------------------------------------------------------------------------------------


def _say(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[chaos] {text}", flush=True)


def _states(ids: list[str]) -> dict[str, str]:
    r = get_redis()
    with r.pipeline(transaction=False) as p:
        for i in ids:
            p.hget(keys.order(i), "state")
        got = p.execute()
    return {i: (s or "MISSING") for i, s in zip(ids, got, strict=True)}


def _settle(account: str, ids: list[str], timeout_s: float) -> dict[str, str]:
    """Wait until every order is terminal, doing what Beat's sweeper does every few seconds
    (sweep, and reconcile what is still open against the order book). Returns the states."""
    from workers.sweeper import reconcile, sweep

    deadline = time.monotonic() + timeout_s
    while True:
        states = _states(ids)
        pending = [i for i, s in states.items() if s not in TERMINAL]
        if not pending:
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(pending)} orders not terminal after {timeout_s:.0f} s: "
                                 f"{collections.Counter(states[i] for i in pending)}")
        with contextlib.suppress(Exception):
            sweep()
            reconcile(account, pending)
        time.sleep(0.5)


def _at_broker(paper: Any, user_id: str, ids: set[str]) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """(orders in the broker's book per tag, accepted order POSTs in its request log per tag)."""
    book = collections.Counter(o.get("tag") for o in paper.orders() if o.get("tag") in ids)
    posts = collections.Counter(e["tag"] for e in paper.requests()
                                if e["endpoint_class"] == "orders" and e["user_id"] == user_id
                                and e["method"] == "POST" and e["status"] == 200 and e.get("tag") in ids)
    return book, posts


def _check_exactly_once(paper: Any, user_id: str, ids: list[str], states: dict[str, str]) -> dict[str, int]:
    """Each id at the broker exactly once, or never sent and EXPIRED/FAILED; none missing."""
    book, posts = _at_broker(paper, user_id, set(ids))
    assert all(states[i] != "MISSING" for i in ids), "an order was lost from the store"
    assert all(states[i] in TERMINAL for i in ids)
    dup_book = [t for t, n in book.items() if n > 1]
    dup_posts = [t for t, n in posts.items() if n > 1]
    assert not dup_book and not dup_posts, f"duplicates: book {dup_book[:5]}, requests {dup_posts[:5]}"
    for i in ids:
        if states[i] in NEVER_SENT:
            assert book[i] == 0, f"{i} is {states[i]} but the broker has it"
        else:
            assert book[i] == 1, f"{i} is {states[i]} but the broker does not have it"
    return {"at_broker": sum(book.values()), "never_sent": sum(1 for i in ids if states[i] in NEVER_SENT)}


class Killer(threading.Thread):
    """SIGKILLs a random live worker every ``gap_s`` (random in the range) and restarts it."""

    def __init__(self, workers: list[Any], kills: int, gap_s: tuple[float, float], seed: int) -> None:
        super().__init__(name="chaos-killer", daemon=True)
        self.workers, self.kills, self.gap_s = workers, kills, gap_s
        self.rng = random.Random(seed)
        self.log: list[str] = []
        self.restarts = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            for k in range(self.kills):
                if self.stop.wait(self.rng.uniform(*self.gap_s)):
                    return
                victim = self.rng.choice([w for w in self.workers if w.alive])
                victim.kill()
                self.log.append(f"kill {k + 1}: SIGKILL {victim.name} (pid {victim.proc.pid})")
                victim.restart()
                self.restarts += 1
                self.log.append(f"restart {k + 1}: {victim.name} ready (pid {victim.proc.pid})")
        except BaseException as e:  # surfaced by the test
            self.error = e


def _place_many(account: str, n: int, deadline_s: float) -> list[str]:
    return [place_order(account=account, exchange="NSE", symbol="INFY", side="BUY", quantity=1,
                        deadline_s=deadline_s).id for _ in range(n)]


def _kill_chaos(make_accounts: Any, celery_workers: Any, paper: Any, capsys: Any, *, n: int, kills: int,
                gap_s: tuple[float, float], cap: str, seed: int) -> None:
    # Caps above the 2026 rule's 10/s: a registered algo (common/algorules.py), for the load's sake.
    accts = make_accounts(kite=1, angel=0, caps={"orders": [cap]}, extra={"read_timeout_s": 2}, registered_algo=True)
    logged_in(accts)
    user = paper_user_of(accts["kite1"]).user_id
    both = [keys.urgent_queue("kite1"), keys.orders_queue("kite1")]
    env = {"BROKERGATE_VISIBILITY_TIMEOUT_S": "5"}
    ws = celery_workers.start_many([(both, {"concurrency": 4, "env": env}) for _ in range(3)])
    started = time.monotonic()
    killer = Killer(ws, kills, gap_s, seed)
    killer.start()
    ids = _place_many("kite1", n, deadline_s=60)
    enqueued_s = time.monotonic() - started
    killer.join(120)
    assert killer.error is None, killer.error
    states = _settle("kite1", ids, 120)
    took = time.monotonic() - started
    checked = _check_exactly_once(paper, user, ids, states)
    stats = get_redis().hgetall(keys.stats("kite1"))
    _say(capsys, "\n[chaos] ".join([
        f"{n} orders (cap {cap}) over 3 workers x4 threads, visibility timeout 5 s; enqueued in {enqueued_s:.1f} s",
        *killer.log,
        f"kills {kills}, restarts {killer.restarts}; all terminal after {took:.1f} s: {dict(collections.Counter(states.values()))}",
        f"checked: {n} stored, {n} terminal, {checked['at_broker']} at the broker exactly once, "
        f"{checked['never_sent']} never sent (EXPIRED/FAILED) and absent at the broker, 0 duplicates",
        f"worker stats: {stats}",
    ]))


# --- workers SIGKILLed -------------------------------------------------------------------------------


@pytest.mark.chaos
@pytest.mark.timeout(400)
def test_1000_orders_while_workers_are_sigkilled_at_random(make_accounts, celery_workers, paper, capsys) -> None:
    """Given 3 workers on one account at 100/s, When 1,000 orders are placed while workers are
    SIGKILLed at random and restarted, Then each client_order_id reaches the broker exactly once
    (or never, and is EXPIRED/FAILED), every order ends terminal, none is lost."""
    _kill_chaos(make_accounts, celery_workers, paper, capsys, n=1000, kills=6, gap_s=(1.0, 2.5), cap="100/s",
                seed=int(os.environ.get("BG_CHAOS_SEED", "1")))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_orders_through_two_worker_kills_small(make_accounts, celery_workers, paper, capsys) -> None:
    """The small version in the default run: 100 orders at 20/s, two SIGKILLs."""
    _kill_chaos(make_accounts, celery_workers, paper, capsys, n=100, kills=2, gap_s=(0.8, 1.5), cap="20/s", seed=2)


# --- the feed, when it runs ------------------------------------------------------------------------


@contextlib.contextmanager
def _feed_process(account: Any, paper: Any, workdir: Path) -> Iterator[Callable[[float], bool] | None]:
    """``python -m feed`` for ``account`` with INFY and SBIN subscribed (ticks every 50 ms);
    yields ``ticking(within_s) -> bool`` (a tick published within that time, fresh subscription),
    or None when the feed does not start."""
    from common import instruments as master
    from common.models import Instrument
    from common.ticks import TickSubscription, subscribe
    from paper.universe import build_universe

    r = get_redis()
    wanted = {"INFY", "SBIN"}
    insts = [Instrument(p.exchange, p.symbol, str(p.kite_token)) for p in build_universe() if p.symbol in wanted]
    master.store(account.name, insts, r)
    paper.http.post(f"{paper.url}/_paper/ticks", json={"interval_ms": 50, "paused": False}, timeout=10)
    subscribe([f"NSE:{s}" for s in sorted(wanted)], "ltp", account=account.name, r=r)
    log_path = workdir / "feed.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "feed", "--account", account.name], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                start_new_session=True)

    def ticking(within_s: float) -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            try:
                with TickSubscription([f"NSE:{s}" for s in sorted(wanted)], r=r) as sub:
                    if sub.get(min(2.0, max(0.1, deadline - time.monotonic()))) is not None:
                        return True
            except Exception:  # Redis down right now: try again
                time.sleep(0.2)
        return False

    try:
        yield ticking if ticking(10) and proc.poll() is None else None
    finally:
        stop_process(proc, grace_s=5)
        paper.http.post(f"{paper.url}/_paper/ticks", json={"interval_ms": 250, "paused": False}, timeout=10)


# --- Redis restarted ---------------------------------------------------------------------------------


@pytest.mark.chaos
@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_redis_restarted_mid_run_loses_nothing(how, redis_server, make_accounts, celery_workers, paper, capsys,
                                               tmp_path) -> None:
    """Given Redis with its append-only file, 2 workers, a client placing orders faster than the
    10/s cap (so a backlog sits in Redis) and the feed, When Redis is stopped for 2 s and started
    again mid-run (a clean stop, or a crash: SIGKILL; the append-only file is fsynced on every
    write), Then workers, client and feed reconnect by themselves, every order the client
    enqueued reaches the broker exactly once, none is lost."""
    accts = make_accounts(kite=1, angel=0, caps={"orders": ["10/s"]}, extra={"read_timeout_s": 2})
    logged_in(accts)
    user = paper_user_of(accts["kite1"]).user_id
    both = [keys.urgent_queue("kite1"), keys.orders_queue("kite1")]
    env = {"BROKERGATE_VISIBILITY_TIMEOUT_S": "5"}
    celery_workers.start_many([(both, {"concurrency": 4, "env": env}) for _ in range(2)])
    notes: list[str] = []
    with _feed_process(accts["kite1"], paper, tmp_path) as ticking:
        notes.append("feed: python -m feed publishing" if ticking else "feed: python -m feed did not start: not checked")
        accepted: list[str] = []
        refused: list[tuple[str, str]] = []
        after_restart: list[str] = []
        restarted = threading.Event()
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                coid = new_client_order_id()
                try:
                    place_order(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1,
                                deadline_s=40, client_order_id=coid)
                    accepted.append(coid)
                    if restarted.is_set():
                        after_restart.append(coid)
                except Exception as e:  # the caller is told: not enqueued
                    refused.append((coid, type(e).__name__))
                time.sleep(0.04)

        t = threading.Thread(target=client, name="chaos-client", daemon=True)
        t.start()
        time.sleep(4)
        before = len(accepted)
        backlog = get_redis().llen(keys.orders_queue("kite1"))
        redis_server.stop() if how == "sigterm" else redis_server.kill()
        notes.append(f"Redis {'stopped' if how == 'sigterm' else 'crashed'} ({how.upper()}) after {before} orders accepted, {backlog} of them still queued")
        time.sleep(2)
        redis_server.start()
        restarted.set()
        notes.append("Redis started again on the same port and append-only file (down ~2 s)")
        time.sleep(3)
        stop.set()
        t.join(30)
        feed_ok = ticking(15) if ticking else None
        states = _settle("kite1", accepted, 150)
        checked = _check_exactly_once(paper, user, accepted, states)
        # Refused ones: never enqueued as far as the caller knows; at most once if they were.
        book, _ = _at_broker(paper, user, {c for c, _ in refused})
        assert all(n <= 1 for n in book.values())
        lost = [i for i in accepted if states[i] in NEVER_SENT]
        alive = [w for w in celery_workers.procs if w.alive]
        _say(capsys, "\n[chaos] ".join([
            *notes,
            f"client: {len(accepted)} accepted ({len(after_restart)} after the restart, same process and pools), "
            f"{len(refused)} refused while Redis was down ({dict(collections.Counter(k for _, k in refused))})",
            f"states: {dict(collections.Counter(states.values()))}; {checked['at_broker']} at the broker exactly once, "
            f"0 duplicates; refused ids at the broker: {sum(book.values())}",
            f"workers alive at the end: {len(alive)}/2 (no restart by the test)",
            f"feed after the restart: {'ticks published' if feed_ok else 'NO ticks' if feed_ok is False else 'n/a'}",
        ]))
        assert after_restart, "the client did not reconnect by itself"
        assert len(alive) == 2, "a worker died with Redis"
        if lost:  # what the store knows of them, and whether any worker ever logged them
            r = get_redis()
            for i in lost[:3]:
                seen_by = [w.name for w in celery_workers.procs if i in w.log()]
                _say(capsys, f"LOST {i}: {orderstore.get(r, i)}; in worker logs: {seen_by or 'none'}")
        assert not lost, f"{len(lost)} enqueued orders never reached the broker: {collections.Counter(states[i] for i in lost)}"
        if ticking is not None:
            assert feed_ok, "the feed did not publish ticks after Redis came back"


# --- the broker misbehaves ---------------------------------------------------------------------------


@pytest.mark.chaos
@pytest.mark.timeout(300)
def test_broker_drops_errors_and_stalls_at_random_no_duplicate(make_accounts, celery_workers, paper, capsys,
                                                               tmp_path) -> None:
    """Given 2 workers at 50/s and the feed, When the paper broker at random drops connections
    after accepting, answers 5xx, delays answers past the read timeout, and drops and stalls the
    feed socket, Then no order is duplicated, every order ends terminal, and ticks keep publishing."""
    accts = make_accounts(kite=1, angel=0, caps={"orders": ["50/s"]}, extra={"read_timeout_s": 1},
                          registered_algo=True)  # above the 2026 rule's 10/s (common/algorules.py)
    logged_in(accts)
    user = paper_user_of(accts["kite1"]).user_id
    both = [keys.urgent_queue("kite1"), keys.orders_queue("kite1")]
    env = {"BROKERGATE_VISIBILITY_TIMEOUT_S": "5"}
    celery_workers.start_many([(both, {"concurrency": 4, "env": env}) for _ in range(2)])
    rng = random.Random(int(os.environ.get("BG_CHAOS_SEED", "3")))
    faults: collections.Counter[str] = collections.Counter()
    rest_kinds: list[dict[str, Any]] = [
        {"kind": "accept_then_drop", "count": 2},
        {"kind": "error_5xx", "count": 3},
        {"kind": "delay", "count": 2, "delay_s": 1.5},  # past the 1 s read timeout: ambiguous
    ]
    with _feed_process(accts["kite1"], paper, tmp_path) as ticking:
        ws_kinds: list[dict[str, Any]] = [{"kind": "drop_socket"}, {"kind": "stall_socket", "duration_s": 2}] \
            if ticking else []
        ids: list[str] = []
        stop = threading.Event()

        def chaos() -> None:
            while not stop.wait(rng.uniform(0.2, 0.6)):
                f = dict(rng.choice(rest_kinds + ws_kinds))
                with contextlib.suppress(Exception):
                    paper.fault(broker="kite", user_id=user, **f)
                    faults[f["kind"]] += 1

        t = threading.Thread(target=chaos, name="chaos-faults", daemon=True)
        t.start()
        for _ in range(10):
            ids += _place_many("kite1", 30, deadline_s=30)
            time.sleep(0.6)
        time.sleep(2)
        stop.set()
        t.join(5)
        feed_ok = ticking(15) if ticking else None
        states = _settle("kite1", ids, 150)
        checked = _check_exactly_once(paper, user, ids, states)
        stats = get_redis().hgetall(keys.stats("kite1"))
        _say(capsys, "\n[chaos] ".join([
            f"{len(ids)} orders (cap 50/s, read timeout 1 s) over 2 workers x4 threads",
            f"faults injected: {dict(faults)}",
            f"states: {dict(collections.Counter(states.values()))}; {checked['at_broker']} at the broker exactly once, "
            f"{checked['never_sent']} never sent, 0 duplicates",
            f"worker stats: {stats}",
            "feed: " + ("python -m feed kept publishing after the last fault" if feed_ok else
                        "NO ticks after the faults" if feed_ok is False else "python -m feed did not start: not checked"),
        ]))
        if ticking is not None:
            assert feed_ok, "the feed stopped publishing"
