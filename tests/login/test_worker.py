"""Logins through a real Celery worker: N accounts at once, each with its new token quickly."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common import keys
from workers.login import login_concurrently

REPO = Path(__file__).resolve().parents[2]


class Proc:
    """A celery subprocess whose output is drained and kept."""

    def __init__(self, *args: str, ready_text: str | None = None, timeout_s: float = 20) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.login.celery_app", *args],
            cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.ready = threading.Event()
        self.ready_text = ready_text
        threading.Thread(target=self._pump, daemon=True).start()
        if ready_text and not self.ready.wait(timeout_s):
            self.stop()
            pytest.fail(f"celery {args[0]} did not start:\n" + self.text()[-4000:])

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if self.ready_text and self.ready_text in line:
                self.ready.set()

    def text(self) -> str:
        return "".join(self.lines)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_worker() -> Proc:
    """``celery worker -Q auth`` (threads, so logins of different accounts overlap)."""
    return Proc("worker", "-Q", keys.AUTH_QUEUE, "-P", "threads", "-c", "8", "--without-gossip",
                "--without-mingle", "--without-heartbeat", "-l", "INFO", ready_text=" ready.")  # fmt: skip


@pytest.fixture
def six_accounts(make_accounts: Any) -> dict[str, Any]:
    return make_accounts(kite=3, angel=3)


@pytest.fixture
def auth_worker(six_accounts: dict[str, Any], redis_url: str) -> Iterator[Proc]:
    """Started after the accounts file exists, so it inherits BROKERGATE_ACCOUNTS and secrets."""
    worker = start_worker()
    yield worker
    worker.stop()


def test_six_accounts_log_in_through_the_worker_within_5s(
    six_accounts: dict[str, Any], auth_worker: Proc, r: Any
) -> None:
    from tests.login.celery_app import app

    accts = six_accounts
    # When the daily login is enqueued for every account at once
    elapsed = login_concurrently(list(accts), force=False, app=app, timeout_s=20)
    print("login latency per account (s):", {k: round(v, 3) for k, v in sorted(elapsed.items())})
    # Then every account has its token within 5 s
    assert set(elapsed) == set(accts) and max(elapsed.values()) < 5.0
    # And each fresh daily login chained the instrument refresh
    deadline = time.monotonic() + 15
    while not all(r.hlen(keys.instruments(n)) for n in accts):
        assert time.monotonic() < deadline, "instrument masters were not refreshed"
        time.sleep(0.05)
    # And today's idempotency mark is set for each account
    for n in accts:
        assert r.exists(keys.login_done(n, time.strftime("%Y-%m-%d", time.gmtime(time.time() + 19800))))
    # And the worker's log holds no secret and no token
    from common.tokens import read_token

    log_text = auth_worker.text()
    assert "brokergate.login" in log_text
    for n, a in accts.items():
        tok = read_token(n)
        assert tok is not None
        for v in (
            a.password.get(),
            a.totp_secret.get(),
            a.api_secret.get(),
            tok.access_token,
            tok.feed_token,
        ):
            assert not v or v not in log_text


def _wait(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_beat_started_after_the_slot_logs_in_at_once_and_a_second_beat_waits(
    make_accounts: Any, paper: Any, r: Any
) -> None:
    from tests.brokers import login_requests

    # Given accounts whose login slot today has passed (00:00) and no login yet
    accts = make_accounts(kite=1, angel=1, login_time="00:00")
    worker = start_worker()
    beats: list[Proc] = []
    try:
        # When two Beats start
        # (--max-interval 1: the standby polls the lock every second instead of every 5 s)
        beats = [Proc("beat", "-l", "INFO", "--pidfile=", "--max-interval", "1") for _ in range(2)]
        # Then the accounts are logged in at once, by one catch-up
        for n in accts:
            _wait(lambda n=n: r.exists(keys.token(n)), 15, f"{n} was not logged in")
        hb = _wait(lambda: r.hgetall(keys.BEAT_HEARTBEAT), 10, "no Beat heartbeat")
        active = next(b for b in beats if b.pid == int(hb["pid"]))
        standby = next(b for b in beats if b is not active)
        assert "Acquired lock" in active.text() and "Acquired lock" not in standby.text()
        # When the active Beat stops, the standby takes over; the day's login is not repeated
        active.stop()
        _wait(lambda: int(r.hget(keys.BEAT_HEARTBEAT, "pid") or 0) == standby.pid, 15, "no takeover")
        _wait(lambda: "Acquired lock" in standby.text(), 5, "standby did not log the lock")
        for acct in accts.values():
            assert len(login_requests(paper, acct)) == 1
    finally:
        for b in beats:
            b.stop()
        worker.stop()
