"""``make demo`` end to end: the whole stack headless on the paper broker, then nothing left running."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from examples.demo import RUN_MARK, read_env_file, stray_pids
from tests.fixtures.redis import free_port

REPO = Path(__file__).resolve().parents[2]
PARTS = ["paper", "workers.app", "workers.orders", "workers.login", "feed", "feed.postback", "common.client", "common.ticks"]


def missing_parts() -> list[str]:
    return [m for m in PARTS if importlib.util.find_spec(m) is None]


def clean_env(tmp_path: Path) -> dict[str, str]:
    """No BROKERGATE_* or Flower settings of the developer's or the test session's, and an
    unreachable Redis URL, so the demo proves it starts its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKERGATE_", "FLOWER_"))}
    env.update(BROKERGATE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", PYTHONUNBUFFERED="1", HOME=str(tmp_path))
    return env


class DemoRun:
    """``python -m examples.demo`` as a child, its output collected line by line."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.workdir = tmp_path / "demo"
        argv = [sys.executable, "-m", "examples.demo", "--workdir", str(self.workdir), "--paper-port", str(free_port()),
                "--postback-port", str(free_port()), "--flower-port", str(free_port()), *args]  # fmt: skip
        self.proc = subprocess.Popen(argv, cwd=REPO, env=clean_env(tmp_path), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, pattern: str, timeout_s: float) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if m := rx.search(line):
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and seen == len(self.lines)):
                    raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.lines[-60:]))
                self._cond.wait(min(left, 0.5))

    def output(self) -> str:
        return "\n".join(self.lines)

    def run_id(self) -> str:
        return str(json.loads((self.workdir / "processes.json").read_text())["run_id"])

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)


def accounts_of(workdir: Path) -> dict[str, Any]:
    from brokergate.cli import _LenientEnv
    from common.settings import parse_accounts

    return parse_accounts((workdir / "accounts.toml").read_text(), _LenientEnv(os.environ))


def assert_nothing_left(run_id: str, processes: dict[str, Any]) -> None:
    # by the run's mark in /proc/<pid>/environ (grandchildren included) ...
    assert stray_pids(run_id) == [], f"processes of demo run {run_id} still running"
    # ... and by process group
    for p in processes["processes"]:
        with pytest.raises(ProcessLookupError):
            os.killpg(p["pgid"], 0)
    if processes.get("redis_pid"):
        assert not Path(f"/proc/{processes['redis_pid']}").exists() or "Z" in Path(f"/proc/{processes['redis_pid']}/stat").read_text().split()[2]


def brokergate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The console script as a user types it (``python -m brokergate`` is the same entry point)."""
    return subprocess.run([sys.executable, "-m", "brokergate", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def readme_cli_lines_work(env: dict[str, str]) -> None:
    """README § Operating it: status, login, feed subscribe and orders against the running demo."""
    status = brokergate(env, "status", "--json")
    doc = json.loads(status.stdout)
    assert set(doc) >= {"healthy", "problems", "snapshot"} and "kite1" in doc["snapshot"]["accounts"], status.stderr
    login = brokergate(env, "login", "kite1")
    assert login.returncode == 0, login.stdout + login.stderr
    sub = brokergate(env, "feed", "subscribe", "NSE:INFY", "--account", "kite1")
    assert sub.returncode == 0 and "subscribed" in sub.stdout, sub.stdout + sub.stderr
    unknown = brokergate(env, "feed", "subscribe", "NSE:NOSUCHSYMBOL", "--account", "kite1")
    assert unknown.returncode != 0 and "symbol" in unknown.stdout + unknown.stderr, unknown.stdout + unknown.stderr
    orders = brokergate(env, "orders", "--account", "kite1", "--limit", "50")
    assert orders.returncode == 0, orders.stdout + orders.stderr


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_demo_runs_the_whole_stack_headless_and_leaves_nothing_running(tmp_path: Path) -> None:
    if missing_parts():
        pytest.skip(f"not in the tree yet: {', '.join(missing_parts())}")
    # Given a clean environment with no Redis at BROKERGATE_REDIS_URL
    # (held up after the strategy, so the README's CLI lines below meet a running stack)
    demo = DemoRun(tmp_path, "--headless", "--duration-s", "90", "--hold-s", "60")
    try:
        # When the stack is up: Flower is behind the generated credentials and sees every worker
        m = demo.wait_line(r"^flower\s+(http://127\.0\.0\.1:\d+)/\s+user (\S+)\s+password (\S+)", 60)
        base, user, password = m.group(1), m.group(2), m.group(3)
        env_file = read_env_file(demo.workdir / ".env")
        assert (env_file["BROKERGATE_FLOWER_USER"], env_file["BROKERGATE_FLOWER_PASSWORD"]) == (user, password)
        assert requests.get(f"{base}/api/workers", timeout=5).status_code == 401
        plan = json.loads((demo.workdir / "processes.json").read_text())
        consumed = {q for p in plan["processes"] for q in p["queues"]}
        from workers.app import declared_queues

        assert set(declared_queues(accounts_of(demo.workdir))) <= consumed, "a declared queue has no worker in the demo"
        assert oct((demo.workdir / ".env").stat().st_mode & 0o777) == "0o600"
        nodes = {p["node"] for p in plan["processes"] if p["queues"]}
        deadline = time.monotonic() + 20
        listed: set[str] = set()
        while time.monotonic() < deadline and not nodes <= listed:
            r = requests.get(f"{base}/api/workers?refresh=1", auth=(user, password), timeout=10)
            assert r.status_code == 200
            listed = {w.split("@")[0] for w in r.json()}
        assert nodes <= listed, f"Flower lists {listed}, the demo runs {nodes}"

        # And a newcomer's next steps, the README's CLI lines, do what the README says
        st = demo.wait_line(r"^status\s+BROKERGATE_REDIS_URL=(\S+) BROKERGATE_ACCOUNTS=(\S+) brokergate status", 5)
        cli_env = {**clean_env(tmp_path), **env_file, "BROKERGATE_REDIS_URL": st.group(1),
                   "BROKERGATE_ACCOUNTS": st.group(2)}
        readme_cli_lines_work(cli_env)
        demo.wait_line(r"strategy finished", 60)
        demo.proc.send_signal(signal.SIGINT)  # done with the held stack: stop it as a user would

        # Then the strategy saw ticks and fills pushed back, and status is healthy
        rc = demo.proc.wait(120)
    finally:
        demo.kill()
    out = demo.output()
    result_line = demo.wait_line(r"\[strategy\] RESULT (\{.*\})", 1)
    result = json.loads(result_line.group(1))
    assert "logins     kite1, angel1, fyers1, shoonya1 logged in" in out
    assert len(result["ticks"]) >= 2, out
    for account in ("kite1", "angel1", "fyers1", "shoonya1"):
        acct = result["accounts"][account]
        assert acct["filled"] and acct["filled"]["state"] == "COMPLETE", f"{account}: no fill pushed\n{out}"
        assert acct["filled"]["source"] in ("postback", "socket"), acct
        assert acct["rested"]["open"] and acct["rested"]["cancelled"], acct
        # The same code bought the NIFTY ATM call on every broker, found by its generic key.
        option = acct["option"]
        assert option["instrument"].startswith("NFO:NIFTY:") and option["instrument"].endswith(":CE"), option
        assert option["filled"] and option["filled"]["state"] == "COMPLETE", f"{account}: {option}\n{out}"
    assert result["ok"]
    status = json.loads((demo.workdir / "status.json").read_text())
    assert status["healthy"], status["problems"]
    assert {a["token"]["present"] for a in status["snapshot"]["accounts"].values()} == {True}
    assert all(f["ticks"] > 0 for f in status["snapshot"]["feed"])
    assert rc == 0, out[-4000:]
    # And nothing it started is still running
    assert_nothing_left(demo.run_id(), plan)
    assert re.search(r"stopped \d+ processes in [\d.]+ s$", out), out[-500:]
    assert "killed after" not in out


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_sigint_while_starting_stops_everything_started_so_far(tmp_path: Path) -> None:
    if missing_parts():
        pytest.skip(f"not in the tree yet: {', '.join(missing_parts())}")
    # Given the demo part-way through starting (workers launched, not yet answering)
    demo = DemoRun(tmp_path, "--no-strategy")
    try:
        demo.wait_line(r"^postback\s+http://", 60)
        run_id = demo.run_id()
        plan = json.loads((demo.workdir / "processes.json").read_text())
        assert stray_pids(run_id), "the demo's children carry the run mark"
        # When Ctrl-C reaches the demo
        os.kill(demo.proc.pid, signal.SIGINT)
        rc = demo.proc.wait(30)
    finally:
        demo.kill()
    # Then it stops every process within the grace period, and says so
    assert rc == 130, demo.output()
    assert "SIGINT: stopping everything" in demo.output()
    assert "killed after" not in demo.output()
    assert_nothing_left(run_id, plan)
    assert RUN_MARK == "BROKERGATE_DEMO_RUN"
