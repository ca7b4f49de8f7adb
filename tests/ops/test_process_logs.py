"""Every long-running process logs as BROKERGATE_LOG_LEVEL and BROKERGATE_LOG_JSON say, and no
secret reaches its log file, even at DEBUG with the HTTP and WebSocket libraries' own lines.

Celery's worker and Beat set up logging themselves unless told otherwise (``workers/app.py``
takes it over through Celery's ``setup_logging`` signal); the feed sets it up in its main."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from common import keys
from common.client import place_order
from devtools.waiting import wait_for
from tests.brokers import E2E_BROKERS, marketable
from tests.fixtures.accounts import paper_user_of
from tests.fixtures.workers import REPO

pytestmark = pytest.mark.slow

DEBUG_JSON = {"BROKERGATE_LOG_LEVEL": "DEBUG", "BROKERGATE_LOG_JSON": "1", "PYTHONUNBUFFERED": "1"}


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(args, cwd=REPO, env={**os.environ, **DEBUG_JSON}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _json_records(text: str) -> list[dict[str, Any]]:
    """The log's records; Celery's start-up banner is printed, not logged, so it is skipped."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_worker_beat_and_feed_log_json_at_debug_and_no_secret_reaches_a_log_file(
        make_accounts, celery_workers, r, tmp_path: Path) -> None:
    # Given an account of every broker, and a worker, Beat and the feed at DEBUG as JSON
    # (the worker is started with Celery's own `-l INFO`: our setting wins)
    accts = make_accounts(**dict.fromkeys(E2E_BROKERS, 1))
    queues = [keys.AUTH_QUEUE, keys.DEFAULT_QUEUE]
    for name in accts:
        queues += [keys.urgent_queue(name), keys.orders_queue(name)]
    worker = celery_workers.prepare(queues, concurrency=4, env=DEBUG_JSON)
    worker.spawn()
    beat = _spawn([sys.executable, "-m", "celery", "-A", "workers.app", "beat", "-S", "redbeat.RedBeatScheduler",
                   "-l", "INFO", "--schedule", str(tmp_path / "beat-schedule")], tmp_path / "beat.log")
    feed: subprocess.Popen[bytes] | None = None
    try:
        worker.wait_ready()
        # When every account logs in through the worker (the daily login task) and places an order
        producer = Celery("test-producer", broker=os.environ["BROKERGATE_REDIS_URL"], set_as_current=False)
        for name in accts:
            producer.send_task("brokergate.login", args=[name], queue=keys.AUTH_QUEUE)
        wait_for(lambda: all(r.exists(keys.token(n)) for n in accts), 20, interval_s=0.05, what="every login")
        # The login enqueues the instrument master's refresh; an order needs it (its symbol token).
        wait_for(lambda: all(r.exists(keys.instruments_meta(n)) for n in accts), 20, interval_s=0.05,
                 what="every instrument master")
        handles = [place_order(account=name, exchange="NSE", symbol="SBIN", side="BUY", quantity=1,
                               **marketable(accts[name].broker)) for name in accts]
        for h in handles:
            assert h.wait(20)["state"] in ("OPEN", "COMPLETE")
        # ... and the feed connects every account's socket with those tokens
        feed = _spawn([sys.executable, "-m", "feed"], tmp_path / "feed.log")
        wait_for(lambda: all(r.hget(keys.feed_heartbeat(n, 0), "connected") == "1" for n in accts), 20,
                 what="every feed socket connected")
        wait_for(lambda: r.exists(keys.BEAT_HEARTBEAT), 20, what="Beat ticking")
    finally:
        for p in (feed, beat):
            if p is not None:
                _stop(p)
        worker.stop()

    logs = {"worker": worker.log(), "beat": (tmp_path / "beat.log").read_text(), "feed": (tmp_path / "feed.log").read_text()}
    # Then every process logged JSON records at DEBUG, the HTTP library's included ...
    records = {part: _json_records(text) for part, text in logs.items()}
    for part, recs in records.items():
        assert any(rec["level"] == "DEBUG" for rec in recs), f"{part}: no DEBUG record\n{logs[part][-3000:]}"
    assert any(rec["logger"].startswith("urllib3") and rec["level"] == "DEBUG" for rec in records["worker"])
    assert any(rec["msg"].endswith(" ready.") for rec in records["worker"])
    # ... and no password, TOTP secret, API secret or token value is in any log file
    secrets: dict[str, str] = {}
    for name, acct in accts.items():
        user = paper_user_of(acct)
        secrets |= {f"{name} password": user.password, f"{name} totp_secret": user.totp_secret,
                    f"{name} api_secret": user.api_secret}
        for field, value in r.hgetall(keys.token(name)).items():
            if field.endswith("token") and value:
                secrets[f"{name} {field}"] = value
    for part, text in logs.items():
        leaked = sorted(what for what, value in secrets.items() if value in text)
        assert not leaked, f"{part} log holds {', '.join(leaked)}"
