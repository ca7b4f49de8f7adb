"""``brokergate worker`` / ``brokergate beat``: one command per process kind, the Celery options
the design asks for, and a real worker that consumes the right queues."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from brokergate import cli, launch
from common import settings as bg_settings
from common.errors import ConfigError
from devtools.waiting import wait_for
from tests.fixtures.accounts import account_toml

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = account_toml("k1", env="LAUNCH_K1", concurrency=3)
OPTIONS = ["-P", "threads", "--prefetch-multiplier", "1", "--without-mingle", "--without-gossip", "-E"]


def accts() -> dict[str, Any]:
    return bg_settings.parse_accounts(ACCOUNTS, cli._LenientEnv(os.environ))


def test_an_accounts_worker_reads_its_urgent_lane_first_with_the_accounts_concurrency() -> None:
    layout = launch.worker_layout("k1", accounts=accts())
    assert layout == launch.WorkerLayout("orders-k1", ("orders.k1.urgent", "orders.k1"), 3)
    argv = launch.worker_argv(layout, python="python")
    assert argv[:6] == ["python", "-m", "celery", "-A", "workers.app", "worker"]
    assert argv[argv.index("-Q") + 1] == "orders.k1.urgent,orders.k1"
    assert argv[argv.index("-n") + 1] == "orders-k1@%h" and argv[argv.index("-c") + 1] == "3"
    for opt in OPTIONS:
        assert opt in argv
    assert argv[argv.index("-P") + 1] == "threads" and argv[argv.index("--prefetch-multiplier") + 1] == "1"


def test_urgent_only_auth_and_overrides() -> None:
    a = accts()
    assert launch.worker_layout("k1", accounts=a, urgent_only=True) == launch.WorkerLayout("urgent-k1", ("orders.k1.urgent",), 1)
    assert launch.worker_layout(auth=True, accounts=a) == launch.WorkerLayout("auth", ("auth", "default"), 2)
    assert launch.worker_layout("k1", accounts=a, concurrency=5, name="orders-k1-b").concurrency == 5
    assert launch.worker_layout(queues=["x", "y"], accounts=a).queues == ("x", "y")
    for bad in ({}, {"account": "k1", "auth": True}, {"urgent_only": True, "auth": True}, {"account": "nope"},
                {"account": "k1", "concurrency": 0}):
        with pytest.raises(ConfigError):
            launch.worker_layout(accounts=a, **bad)  # type: ignore[arg-type]
    assert launch.beat_argv(python="python") == ["python", "-m", "celery", "-A", "workers.app", "beat", "-S",
                                                 "redbeat.RedBeatScheduler", "--loglevel", "INFO"]  # fmt: skip


def test_the_cli_prints_what_it_would_exec(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "accounts.toml"
    p.write_text(ACCOUNTS)
    monkeypatch.setenv("BROKERGATE_ACCOUNTS", str(p))  # no secret set: choosing queues needs none
    bg_settings.settings.cache_clear()
    assert cli.main(["worker", "k1", "--urgent-only", "--print"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[printed.index("-Q") + 1] == "orders.k1.urgent" and printed[printed.index("-c") + 1] == "1"
    assert cli.main(["worker", "--print"]) == cli.EXIT_ERROR  # no kind named: a clear error, not a worker on nothing
    assert cli.main(["worker", "ghost", "--print"]) == cli.EXIT_ERROR
    bg_settings.settings.cache_clear()


@pytest.fixture
def started(tmp_path: Path, redis_url: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)


@pytest.mark.slow
def test_brokergate_worker_becomes_a_real_worker_on_the_right_queues(tmp_path: Path, redis_url: str,
                                                                    started: list[subprocess.Popen[bytes]]) -> None:
    # Given an accounts file with its secrets in the environment (a worker logs in and sends)
    p = tmp_path / "accounts.toml"
    p.write_text(ACCOUNTS)
    env = {**os.environ, "BROKERGATE_ACCOUNTS": str(p), "BROKERGATE_REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1",
           "LAUNCH_K1_PASSWORD": "pw-123456", "LAUNCH_K1_TOTP": "JBSWY3DPEHPK3PXP", "LAUNCH_K1_SECRET": "s-123456"}
    # When an operator starts the account's worker and the auth worker, by their one-line commands
    for args in (["worker", "k1"], ["worker", "--auth"]):
        log = (tmp_path / f"{args[-1]}.log").open("wb")
        started.append(subprocess.Popen([sys.executable, "-m", "brokergate", *args], cwd=REPO, env=env,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True))  # fmt: skip
        log.close()
    probe = Celery("probe", broker=redis_url, set_as_current=False)

    def consumed() -> dict[str, list[str]] | None:
        for proc in started:
            assert proc.poll() is None, (tmp_path / "k1.log").read_text() + (tmp_path / "--auth.log").read_text()
        replies = probe.control.inspect(timeout=0.5).active_queues() or {}
        by_node = {host.split("@")[0]: [q["name"] for q in qs] for host, qs in replies.items()}
        return by_node if {"orders-k1", "auth"} <= set(by_node) else None

    # Then each is a Celery worker named for its job, consuming exactly its queues, urgent lane first
    by_node = wait_for(consumed, timeout_s=60, interval_s=0.1, what="both workers answering")
    assert by_node["orders-k1"] == ["orders.k1.urgent", "orders.k1"]
    assert by_node["auth"] == ["auth", "default"]
    # and the command became the worker (exec: same pid, so signals reach Celery itself)
    stats = probe.control.inspect(timeout=2).stats() or {}
    pids = {host.split("@")[0]: s["pid"] for host, s in stats.items()}
    assert pids["orders-k1"] == started[0].pid and pids["auth"] == started[1].pid
    assert {s["pool"]["max-concurrency"] for h, s in stats.items() if h.startswith("orders-k1@")} == {3}
    assert {s["prefetch_count"] for h, s in stats.items() if h.startswith("orders-k1@")} == {3}  # 1 per thread
    probe.close()


# ----- one part's healthcheck: brokergate status --component ----------------------------------


def test_status_component_judges_one_part_by_its_heartbeat(tmp_path: Path, r: Any, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from common import keys
    from common import redis as bg_redis

    p = tmp_path / "accounts.toml"
    p.write_text(ACCOUNTS)
    monkeypatch.setenv("BROKERGATE_ACCOUNTS", str(p))
    bg_settings.settings.cache_clear()
    bg_redis.reset_clients()
    # Given a feed socket that reports frames now, and no worker, token or Beat at all
    hb = keys.feed_heartbeat("k1", 0)
    r.hset(hb, mapping={"connected": 1, "last_frame_ms": int(r.time()[0]) * 1000, "ticks": 5})
    # Then the feed's own check passes, whatever else is wrong, and asks no worker
    assert cli.main(["status", "--component", "feed"]) == cli.EXIT_OK
    assert "feed: healthy" in capsys.readouterr().out
    # When the socket goes down
    r.hset(hb, "connected", 0)
    # Then the check fails and says why
    assert cli.main(["status", "--component", "feed"]) == cli.EXIT_UNHEALTHY
    assert "feed:k1:0: socket disconnected" in capsys.readouterr().out
    # And Beat's check fails while Beat has never ticked (its heartbeat is missing)
    assert cli.main(["status", "--component", "beat"]) == cli.EXIT_UNHEALTHY
    bg_settings.settings.cache_clear()
