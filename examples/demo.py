"""``make demo``: the whole stack on the paper broker, one command, nothing left running after.

    python -m examples.demo [--headless] [--duration-s N] [--workdir .demo] [--private-redis]

What it does, in order:

1. Redis: uses ``BROKERGATE_REDIS_URL`` when a Redis answers there, else starts a private
   ``redis-server`` (append-only, ``noeviction``) on a free port under the work dir.
2. Secrets: writes ``<workdir>/.env`` (mode 600) with a generated password, TOTP secret and
   API secret for every ``env:`` reference in the accounts file (``accounts.example.toml``)
   and the Flower credentials; values already in that file are kept across runs.
3. The paper broker (``python -m paper``) with one user per account (``<workdir>/paper.toml``)
   and the postback URL of the receiver; then ``<workdir>/accounts.toml``, the accounts
   file pointed at it.
4. Workers for every queue, as ``brokergate.launch.worker_plan`` lays them out (up to 4
   accounts, per account ``brokergate worker <a>`` on its urgent + orders queues and
   ``brokergate worker <a> --urgent-only``; more, pooled workers ``brokergate worker --pooled
   --shard I/N``; ``brokergate worker --auth`` on ``auth`` + ``default``), Beat (``brokergate beat``), the feed, the postback receiver and
   Flower on 127.0.0.1 behind the generated credentials, and the metrics exporter
   (``brokergate metrics serve``).
5. Logs every account in at once (the daily 08:45 login, run now), then the example
   strategy (``python -m examples.strategy``), whose output is shown prefixed.

Ctrl-C or SIGTERM stops every process it started: each runs in its own process group,
gets SIGTERM, and SIGKILL after a grace period. ``--headless`` (for tests and CI) prints no
prompt, stops when the strategy finishes or after ``--duration-s``, runs
``brokergate status --json`` first (saved as ``<workdir>/status.json``), and exits non-zero
unless the strategy succeeded and the stack was healthy.

Helper modes for docker-compose: ``--write-env PATH`` (generate the secrets file and
exit) and ``--write-paper-config PATH`` (the paper broker's users for the accounts file,
secrets from the environment; the compose paper service runs it before the broker).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brokergate.launch import WorkerLayout, worker_layout, worker_plan
from common import keys
from devtools.accounts import toml_value
from devtools.environ import reset_process_caches
from devtools.redisserver import RedisServer, ask, die_with_parent, free_port, reachable

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ACCOUNTS = REPO / "accounts.example.toml"
PAPER_PLACEHOLDER = "127.0.0.1:8700"  # the address the example accounts file names
RUN_MARK = "BROKERGATE_DEMO_RUN"  # set in every child's environment: finds strays in /proc
GRACE_S = 10.0
PY = sys.executable

# --------------------------------------------------------------------------------------------
# Plan: what runs, as data (tests read it without starting anything)
# --------------------------------------------------------------------------------------------


@dataclass
class ProcSpec:
    name: str
    argv: list[str]
    queues: list[str] = field(default_factory=list)  # the Celery queues it consumes, if a worker
    echo: bool = False  # show its output on the terminal (prefixed), not only in its log
    node: str = ""  # a worker's Celery node name before "@host"


def worker_layouts(accounts: dict[str, Any], app: Any = None) -> list[WorkerLayout]:
    """The ``brokergate worker`` processes (``WorkerLayout.args`` run each) and what each consumes:
    the default plan (``brokergate.launch.worker_plan``), and one more for any other queue the app
    declares."""
    from common.health import expected_queues

    layouts = worker_plan(accounts)
    covered = {q for w in layouts for q in w.queues}
    extra = [q for q in expected_queues(accounts, app) if q not in covered]
    return [*layouts, worker_layout(queues=extra, accounts=accounts)] if extra else layouts


def brokergate_argv(*args: str) -> list[str]:
    """A ``brokergate`` command (``brokergate/cli.py``) run by this interpreter: the console script
    need not be on PATH. docker-compose runs the same with ``python``."""
    return [PY, "-m", "brokergate", *args]


def plan(accounts: dict[str, Any], *, paper_port: int, postback_port: int, flower_port: int, app: Any = None,
         strategy: bool = True, strategy_args: list[str] | None = None, metrics_port: int = 9108) -> list[ProcSpec]:  # fmt: skip
    """Every process the demo starts after Redis, in start order."""
    specs = [
        ProcSpec("paper", [PY, "-m", "paper", "--host", "127.0.0.1", "--port", str(paper_port), "--config", "{workdir}/paper.toml", "--seed", "1"]),
        *(ProcSpec(f"worker-{w.node}", brokergate_argv("worker", *w.args), queues=list(w.queues), node=w.node)
          for w in worker_layouts(accounts, app)),
        ProcSpec("beat", brokergate_argv("beat")),
        ProcSpec("postback", [PY, "-m", "feed.postback", "--host", "127.0.0.1", "--port", str(postback_port)]),
        ProcSpec("feed", [PY, "-m", "feed"]),
        ProcSpec("flower", [PY, "-m", "brokergate.flower", "--address", "127.0.0.1", "--port", str(flower_port)]),
        ProcSpec("metrics", brokergate_argv("metrics", "serve", "--host", "127.0.0.1", "--port", str(metrics_port))),
    ]
    if strategy:
        specs.append(ProcSpec("strategy", [PY, "-m", "examples.strategy", *(strategy_args or [])], echo=True))
    return specs


# --------------------------------------------------------------------------------------------
# Secrets and files
# --------------------------------------------------------------------------------------------


def secret_refs(accounts_doc: dict[str, Any]) -> dict[str, str]:
    """Every ``env:VARIABLE`` in an accounts document -> the field it fills."""
    refs: dict[str, str] = {}
    for table in (accounts_doc.get("accounts") or {}).values():
        for key, value in table.items():
            if isinstance(value, str) and value.startswith("env:"):
                refs[value[4:]] = key
    return refs


def generate_secret(kind: str) -> str:
    if kind == "totp_secret":
        import pyotp

        return pyotp.random_base32()
    if kind == "password":
        return secrets.token_urlsafe(12)
    return secrets.token_urlsafe(24)


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of a ``.env`` file (none when it does not exist)."""
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path, interpolate=False).items() if v is not None}


def demo_env(accounts_doc: dict[str, Any], existing: dict[str, str]) -> dict[str, str]:
    """Generated secrets for every reference, plus Flower's credentials; existing values win."""
    env = dict(existing)
    for var, kind in sorted(secret_refs(accounts_doc).items()):
        env.setdefault(var, generate_secret(kind))
    env.setdefault("BROKERGATE_FLOWER_USER", "admin")
    env.setdefault("BROKERGATE_FLOWER_PASSWORD", secrets.token_urlsafe(18))
    return env


def write_secret_file(path: Path, text: str) -> None:
    """``text`` into ``path``, readable by its owner only (never readable by others, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def write_env_file(path: Path, env: dict[str, str]) -> None:
    body = "# Generated by `python -m examples.demo`: paper-broker secrets. Never commit.\n"
    write_secret_file(path, body + "".join(f"{k}={v}\n" for k, v in sorted(env.items())))


def paper_users(accounts_doc: dict[str, Any], env: dict[str, str], postback_base: str) -> list[dict[str, Any]]:
    """The paper broker's users: one per account, with the account's secrets and caps and
    the receiver's postback URL. The same bodies ``POST /_paper/users`` takes."""
    users = []
    for name, t in (accounts_doc.get("accounts") or {}).items():

        def val(key: str, t: dict[str, Any] = t) -> str:
            v = t.get(key, "")
            return env.get(v[4:], "") if isinstance(v, str) and v.startswith("env:") else str(v)

        u: dict[str, Any] = {
            "broker": t["broker"], "user_id": t["user_id"], "api_key": t["api_key"],
            "password": val("password"), "totp_secret": val("totp_secret"), "api_secret": val("api_secret"),
            "postback_url": f"{postback_base.rstrip('/')}/postback/{name}",
        }  # fmt: skip
        if t.get("caps"):
            u["caps"] = {k: ([v] if isinstance(v, str) else list(v)) for k, v in t["caps"].items()}
        users.append(u)
    return users


def paper_config(users: list[dict[str, Any]]) -> str:
    out = ["# Generated by `python -m examples.demo`: the demo's paper-broker users. Holds secrets.\n"]
    for u in users:
        out.append("[[users]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in u.items() if v not in ("", None)) + "\n")
    return "".join(out)


def accounts_for(text: str, paper_address: str) -> str:
    """The accounts file pointed at the paper broker actually started."""
    return text.replace(PAPER_PLACEHOLDER, paper_address)


def port_or_free(preferred: int) -> int:
    """``preferred`` when nothing listens there, else a free port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


class Running:
    """A started process in its own process group, its output going to a log file."""

    def __init__(self, spec: ProcSpec, env: dict[str, str], workdir: Path, say: Callable[[str], None]) -> None:
        self.spec = spec
        self.log_path = workdir / "logs" / f"{spec.name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [a.replace("{workdir}", str(workdir)) for a in spec.argv]
        self._log = self.log_path.open("a", buffering=1)
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, start_new_session=True, preexec_fn=die_with_parent,
        )  # fmt: skip
        self.pgid = self.proc.pid  # start_new_session: the child leads its own group
        self.lines: list[str] = []
        self._say = say
        self._pump = threading.Thread(target=self._read, name=f"pump-{spec.name}", daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.write(line)
            if len(self.lines) < 5000:
                self.lines.append(line)
            if self.spec.echo:
                self._say(f"[{self.spec.name}] " + line.rstrip("\n"))
        self._log.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    def group_alive(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


def stray_pids(run_id: str) -> list[int]:
    """Processes still carrying this run's mark in their environment (a /proc scan)."""
    needle = f"{RUN_MARK}={run_id}".encode()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                stat = (d / "stat").read_text()
                if stat[stat.rfind(")") + 2] != "Z":  # a zombie is already dead
                    found.append(int(d.name))
        except OSError:
            continue
    return found


def stop_all(running: list[Running], grace_s: float = GRACE_S, run_id: str | None = None) -> list[str]:
    """SIGTERM every group (last started first), wait up to ``grace_s``, SIGKILL what is left.
    Returns the names of parts that had to be killed."""
    for p in reversed(running):
        p.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in reversed(running):
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.proc.wait(max(0.0, deadline - time.monotonic()))
    while time.monotonic() < deadline and any(p.group_alive() for p in running):
        time.sleep(0.05)
    killed = []
    for p in running:
        if p.group_alive():
            killed.append(p.spec.name)
            p.signal_group(signal.SIGKILL)
    for p in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.proc.wait(5)
    if run_id:
        for pid in stray_pids(run_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.append(f"pid {pid}")
    return killed


# --------------------------------------------------------------------------------------------
# Waiting for readiness: each a predicate polled until true (events we cannot subscribe to)
# --------------------------------------------------------------------------------------------


class Stopped(Exception):
    """Ctrl-C or SIGTERM arrived while starting."""


class PartDied(RuntimeError):
    """A process of the stack exited on its own."""


def wait_until(what: str, predicate: Callable[[], Any], timeout_s: float, stop: threading.Event,
               interval_s: float = 0.1) -> Any:  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while True:
        if stop.is_set():
            raise Stopped(what)
        try:
            v = predicate()
            if v:
                return v
        except PartDied:
            raise
        except Exception:
            pass  # not ready yet: refused connections and the like
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout_s:g} s")
        stop.wait(interval_s)


def http_status(url: str) -> int:
    """A GET's status code; any code is truthy, so waiting on it waits until the server answers."""
    import requests

    return requests.get(url, timeout=0.5).status_code


# --------------------------------------------------------------------------------------------
# The demo
# --------------------------------------------------------------------------------------------


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(args.workdir).resolve()
        self.run_id = uuid.uuid4().hex[:12]
        self.stop = threading.Event()
        self.running: list[Running] = []
        self.redis_server: Any = None
        self.strategy_done = threading.Event()
        self.echo_lock = threading.RLock()

    # --- output
    def say(self, text: str) -> None:
        with self.echo_lock:
            print(text, flush=True)

    # --- steps
    def start_redis(self, url: str) -> str:
        if not self.args.private_redis and reachable(url):
            self.say(f"redis      {url} (already running; using it)")
            self.warn_about_redis(url)
            return url
        self.redis_server = RedisServer(port=free_port(), workdir=self.workdir / "redis")
        self.redis_server.start()
        self.say(f"redis      {self.redis_server.url} (private: appendonly, noeviction; files in {self.workdir / 'redis'})")
        return str(self.redis_server.url)

    def warn_about_redis(self, url: str) -> None:
        import redis

        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2)
        conf = ask(client, lambda c: {**c.config_get("maxmemory-policy"), **c.config_get("appendonly")}, None)
        if conf is None:
            return  # CONFIG refused: nothing to check
        if conf.get("maxmemory-policy") != "noeviction":
            self.say(f"           warning: maxmemory-policy is {conf.get('maxmemory-policy')}; brokergate wants noeviction")
        if conf.get("appendonly") != "yes":
            self.say("           warning: appendonly is off; a Redis restart would lose queued orders and tokens")

    def launch(self, spec: ProcSpec, env: dict[str, str]) -> Running:
        """Start ``spec`` and list it in ``processes.json`` (what the tests check was stopped)."""
        r = Running(spec, env, self.workdir, self.say)
        self.running.append(r)
        self.write_process_list()
        return r

    def write_process_list(self) -> None:
        doc = {
            "run_id": self.run_id,
            "demo_pid": os.getpid(),
            "redis_pid": self.redis_server.proc.pid if self.redis_server and self.redis_server.proc else None,
            "processes": [
                {"name": p.spec.name, "pid": p.proc.pid, "pgid": p.pgid, "argv": p.spec.argv, "queues": p.spec.queues,
                 "node": p.spec.node, "log": str(p.log_path)}
                for p in self.running
            ],
        }  # fmt: skip
        (self.workdir / "processes.json").write_text(json.dumps(doc, indent=2))

    def check_alive(self) -> None:
        for p in self.running:
            if p.spec.name != "strategy" and not p.alive():
                tail = "".join(p.lines[-15:])
                raise PartDied(f"{p.spec.name} exited with code {p.proc.returncode}; log {p.log_path}:\n{tail}")

    def run(self) -> int:
        a = self.args
        self.workdir.mkdir(parents=True, exist_ok=True)
        accounts_text = Path(a.accounts).read_text()
        accounts_doc = tomllib.loads(accounts_text)
        env_path = self.workdir / ".env"
        secrets_env = demo_env(accounts_doc, read_env_file(env_path))
        write_env_file(env_path, secrets_env)

        from common.settings import load_settings

        base_url = load_settings().redis_url
        redis_url = self.start_redis(base_url)

        paper_port = port_or_free(a.paper_port)
        postback_port = port_or_free(a.postback_port)
        flower_port = port_or_free(a.flower_port)
        metrics_port = port_or_free(a.metrics_port)
        paper_addr = f"127.0.0.1:{paper_port}"
        postback_base = f"http://127.0.0.1:{postback_port}"
        users = paper_users(accounts_doc, secrets_env, postback_base)
        write_secret_file(self.workdir / "paper.toml", paper_config(users))
        accounts_path = self.workdir / "accounts.toml"
        accounts_path.write_text(accounts_for(accounts_text, paper_addr))

        # Our own process reads the same settings as the children (Celery app, status).
        env = {
            **os.environ, **secrets_env,
            "BROKERGATE_REDIS_URL": redis_url, "BROKERGATE_ACCOUNTS": str(accounts_path),
            "BROKERGATE_POSTBACK_HOST": "127.0.0.1", "BROKERGATE_POSTBACK_PORT": str(postback_port),
            "PYTHONUNBUFFERED": "1", RUN_MARK: self.run_id,
        }  # fmt: skip
        os.environ.update(env)
        reset_process_caches()
        from common.redis import get_redis
        from common.settings import accounts as configured
        from workers.app import app  # imported with the settings above

        accounts = configured()
        strategy_args = ["--timeout-s", str(max(10.0, a.duration_s - 5))] if a.duration_s else []
        specs = plan(accounts, paper_port=paper_port, postback_port=postback_port, flower_port=flower_port, app=app,
                     strategy=not a.no_strategy, strategy_args=strategy_args, metrics_port=metrics_port)  # fmt: skip
        by_name = {s.name: s for s in specs}
        t0 = time.monotonic()

        # 1. the paper broker
        self.launch(by_name["paper"], env)
        wait_until("paper broker", lambda: http_status(f"http://{paper_addr}/_paper/orders"), 20, self.stop)
        self.say(f"paper      http://{paper_addr} (control: http://{paper_addr}/_paper)")

        # 2. every service at once but Beat and the strategy; then wait for each
        for s in specs:
            if s.name not in ("paper", "strategy", "beat"):
                self.launch(s, env)
        wait_until("postback receiver", lambda: http_status(f"{postback_base}/healthz") == 200, 30, self.stop)
        self.say(f"postback   {postback_base}/postback/<account> (OpenAPI: {postback_base}/openapi.json)")
        nodes = [s.node for s in specs if s.queues]
        wait_until("workers", lambda: self._workers_up(app, nodes), 60, self.stop, interval_s=0.2)
        for s in specs:
            if s.queues:
                self.say(f"worker     {s.name}: {', '.join(s.queues)}")
        self.check_alive()

        # 3. log every account in now (the 08:45 login, whatever the time of day). Beat starts
        # after: its catch-up then finds today's login done instead of logging in again.
        self.login_all(list(accounts), app)
        self.say(f"logins     {', '.join(accounts)} logged in")
        # The login chains the instrument-master refresh; the feed maps EXCHANGE:SYMBOL with it.
        r = get_redis()
        wait_until("instrument master", lambda: all(r.hlen(keys.instruments(n)) for n in accounts), 60, self.stop,
                   interval_s=0.1)  # fmt: skip
        self.check_alive()
        self.launch(by_name["beat"], env)
        self.check_alive()
        wait_until("flower", lambda: http_status(f"http://127.0.0.1:{flower_port}/healthcheck"), 30, self.stop)
        user, pw = secrets_env["BROKERGATE_FLOWER_USER"], secrets_env["BROKERGATE_FLOWER_PASSWORD"]
        self.say(f"flower     http://127.0.0.1:{flower_port}/  user {user}  password {pw}")
        self.say(f"beat       RedBeat (lock {keys.REDBEAT_PREFIX}:lock)")
        self.say(f"feed       publishing ticks:<EXCHANGE>:<SYMBOL>; logs in {self.workdir / 'logs'}")
        self.say(f"metrics    http://127.0.0.1:{metrics_port}/metrics (Prometheus; ops/grafana/brokergate.json)")
        self.say(f"status     BROKERGATE_REDIS_URL={redis_url} BROKERGATE_ACCOUNTS={accounts_path} brokergate status")
        self.say(f"ready in {time.monotonic() - t0:.1f} s")

        # 4. the strategy
        if not a.no_strategy:
            self.launch(by_name["strategy"], env)
        if not a.headless:
            self.say("Ctrl-C stops everything.")
        return self.wait_and_finish(redis_url, accounts_path)

    def _workers_up(self, app: Any, nodes: list[str]) -> bool:
        self.check_alive()
        replies = app.control.ping(timeout=0.5) or []
        names = {n.split("@")[0] for r in replies for n in r}
        return all(n in names for n in nodes)

    def login_all(self, names: list[str], app: Any) -> None:
        """Send the login task for every account and wait for each token (announced on
        TOKEN_CHANGED; the hash is checked after subscribing, so no announcement is missed)."""
        from common.redis import get_redis

        r = get_redis()
        ps = r.pubsub(ignore_subscribe_messages=True)
        ps.subscribe(keys.TOKEN_CHANGED)
        try:
            for n in names:
                app.send_task(keys.LOGIN_TASK, args=[n], kwargs={"force": True}, queue=keys.AUTH_QUEUE)
            deadline = time.monotonic() + 45
            pending = set(names)
            while pending := {n for n in pending if not r.exists(keys.token(n))}:
                if self.stop.is_set():
                    raise Stopped("logins")
                if time.monotonic() > deadline:
                    errors = {n: r.hgetall(keys.login_error(n)) for n in pending}
                    raise RuntimeError(f"not logged in after 45 s: {sorted(pending)}; last errors: {errors}")
                self.check_alive()
                ps.get_message(timeout=0.5)
        finally:
            ps.close()

    def wait_and_finish(self, redis_url: str, accounts_path: Path) -> int:
        a = self.args
        deadline = time.monotonic() + a.duration_s if a.duration_s else None
        strategy = next((p for p in self.running if p.spec.name == "strategy"), None)
        announced = False
        while not self.stop.is_set():
            if deadline and time.monotonic() >= deadline:
                self.say(f"--duration-s {a.duration_s:g} elapsed")
                break
            if strategy is not None and not strategy.alive() and not announced:
                announced = True
                self.say(f"strategy finished (exit code {strategy.proc.returncode})")
                if a.headless and not a.hold_s:
                    break
                if a.headless:
                    held_until = time.monotonic() + a.hold_s
                    deadline = min(deadline, held_until) if deadline else held_until
                self.say("the stack keeps running: open Flower, try `brokergate status`; Ctrl-C stops everything")
            self.check_alive()
            self.stop.wait(0.2)
        rc = 0
        if strategy is not None:
            if strategy.alive():
                strategy.signal_group(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    strategy.proc.wait(5)
            if strategy.proc.returncode != 0:
                rc = 1
        if a.headless:
            healthy, doc = self.final_status()
            (self.workdir / "status.json").write_text(json.dumps(doc, indent=2))
            self.say(f"status     {'healthy' if healthy else 'UNHEALTHY'} ({self.workdir / 'status.json'})")
            if not healthy:
                for p in doc.get("problems", []):
                    self.say(f"  {p['level']} {p['component']}: {p['message']}")
                rc = 1
        return rc

    def final_status(self, timeout_s: float = 15.0) -> tuple[bool, dict[str, Any]]:
        """``brokergate status --json`` as a user would run it, retried until healthy or the timeout."""
        deadline = time.monotonic() + timeout_s
        doc: dict[str, Any] = {}
        while True:
            exe = Path(PY).with_name("brokergate")
            argv = [str(exe)] if exe.exists() else [PY, "-m", "brokergate"]
            out = subprocess.run(
                [*argv, "status", "--json"], cwd=REPO, env=dict(os.environ),
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            with contextlib.suppress(ValueError):
                doc = json.loads(out.stdout)
            if out.returncode == 0 or time.monotonic() > deadline or self.stop.is_set():
                return out.returncode == 0, doc or {"healthy": False, "problems": [], "stderr": out.stderr[-2000:]}

    def shutdown(self) -> list[str]:
        killed = stop_all(self.running, run_id=self.run_id)
        if self.redis_server is not None:
            self.redis_server.stop()
        return killed


def write_paper_config(path: Path, accounts_path: Path, postback_base: str) -> int:
    """Write the paper broker's users for the accounts file, secrets from the environment
    (docker-compose's paper service runs this before the broker, on every start)."""
    doc = tomllib.loads(accounts_path.read_text())
    missing = sorted(v for v in secret_refs(doc) if not os.environ.get(v))
    if missing:
        print(f"missing secrets in the environment: {', '.join(missing)} (python -m examples.demo --write-env .env)",
              file=sys.stderr)  # fmt: skip
        return 2
    write_secret_file(path, paper_config(paper_users(doc, dict(os.environ), postback_base)))
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m examples.demo", description="Run the whole stack on the paper broker.")
    p.add_argument("--accounts", default=str(DEFAULT_ACCOUNTS), help="accounts file template (default accounts.example.toml)")
    p.add_argument("--workdir", default=str(REPO / ".demo"), help="where logs, .env and generated files go")
    p.add_argument("--headless", action="store_true", help="no prompt; stop when the strategy finishes or after --duration-s")
    p.add_argument("--duration-s", type=float, default=0.0, help="stop after this long (0: until Ctrl-C)")
    p.add_argument("--private-redis", action="store_true", help="always start a private redis-server")
    p.add_argument("--no-strategy", action="store_true", help="start the stack only")
    p.add_argument("--hold-s", type=float, default=0.0,
                   help="with --headless: keep the stack up this long after the strategy finishes (to try the CLI)")
    p.add_argument("--paper-port", type=int, default=8700)
    p.add_argument("--postback-port", type=int, default=8701)
    p.add_argument("--flower-port", type=int, default=5555)
    p.add_argument("--metrics-port", type=int, default=9108)
    p.add_argument("--write-env", metavar="PATH", help="write generated secrets for the accounts file to PATH and exit")
    p.add_argument("--write-paper-config", metavar="PATH", help="write the paper broker's users (secrets from the environment) and exit")
    p.add_argument("--postback-base", default="http://127.0.0.1:8701", help="with --write-paper-config: the receiver's base URL")
    return p


def main(argv: list[str] | None = None) -> int:
    from common.logs import setup_logging
    from common.settings import load_settings

    args = build_parser().parse_args(argv)
    st = load_settings()
    setup_logging(st.log_level, st.log_json)
    if args.write_env:
        path = Path(args.write_env)
        env = demo_env(tomllib.loads(Path(args.accounts).read_text()), read_env_file(path))
        write_env_file(path, env)
        print(f"wrote {path} ({len(env)} variables)")
        return 0
    if args.write_paper_config:
        return write_paper_config(Path(args.write_paper_config), Path(st.accounts_path), args.postback_base)

    demo = Demo(args)

    def on_signal(signum: int, _frame: Any) -> None:
        # Runs in the main thread, perhaps while it holds the print lock: write directly, take no lock.
        if not demo.stop.is_set():
            os.write(sys.stdout.fileno(), f"\n{signal.Signals(signum).name}: stopping everything\n".encode())
        demo.stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    rc = 1
    try:
        rc = demo.run()
    except Stopped:
        rc = 130
    except (RuntimeError, TimeoutError) as e:
        from common.logs import redact

        demo.say(f"demo failed: {redact(str(e))}")
    finally:
        t = time.monotonic()
        killed = demo.shutdown()
        note = f" (killed after the {GRACE_S:g} s grace: {', '.join(killed)})" if killed else ""
        demo.say(f"stopped {len(demo.running)} processes in {time.monotonic() - t:.1f} s{note}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
