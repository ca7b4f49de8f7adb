"""A whole private brokergate stack for one benchmark: Redis, the paper broker, paper accounts
and Celery worker subprocesses, all in a temp dir, all stopped at the end.

Reuses the harness the tests use rather than copying it: :class:`devtools.redisserver.RedisServer`,
``paper.launch.start_paper_process``, :class:`devtools.paperbroker.PaperBroker`,
:class:`devtools.accounts.AccountsWriter` (the accounts TOML and its secret variables) and
:class:`devtools.workerprocs.Workers` (real ``celery -A workers.app worker`` processes, SIGKILL,
restart)::

    with Stack() as s:
        accts = s.accounts(kite=1, angel=0, caps={"orders": ["3/s"]})
        s.login(accts)
        s.workers.start_many([(s.queues("kite1"), {}) for _ in range(3)])
        s.plain_worker(rate="3/s")          # the anchor: bench.plain_app, same Redis, same broker
        ...

The stack sets ``BROKERGATE_REDIS_URL`` / ``BROKERGATE_ACCOUNTS`` and the accounts' secret
variables in ``os.environ`` (workers inherit them) and puts the old values back on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from common import keys
from devtools.accounts import AccountsWriter, logged_in, paper_user_of
from devtools.environ import reset_process_caches, restore
from devtools.paperbroker import PaperBroker
from devtools.processes import stop_process
from devtools.redisserver import RedisServer, free_port
from devtools.waiting import wait_for
from devtools.workerprocs import WorkerProc, Workers, start_all
from paper.launch import start_paper_process

__all__ = ["Listener", "Stack", "order_requests", "private_redis"]

REPO = Path(__file__).resolve().parents[1]


def order_requests(log: list[dict[str, Any]], user_id: str, method: str | None = "POST") -> list[dict[str, Any]]:
    """The order-class requests of one user at the paper broker (place = POST), in arrival order."""
    return [e for e in log if e["endpoint_class"] == "orders" and e["user_id"] == user_id
            and (method is None or e["method"] == method)]


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of our own in a temp dir, without the append-only file (see :class:`Stack`);
    yields its URL, removes everything after."""
    workdir = Path(tempfile.mkdtemp(prefix="bg-bench-redis-"))
    server = RedisServer(port=free_port(), workdir=workdir, appendonly=False)
    try:
        server.start()
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


class Listener(threading.Thread):
    """Hands every message on ``channel`` to ``heard(clock(), data)`` the moment it arrives, from a
    thread of its own; subscribed once the constructor returns."""

    def __init__(self, r: redis.Redis, channel: str, clock: Callable[[], Any],
                 heard: Callable[[Any, Any], None]) -> None:  # fmt: skip
        super().__init__(daemon=True, name=f"bench-listener-{channel}")
        self.clock, self.heard = clock, heard
        self.pubsub = r.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(channel)
        while not self.pubsub.subscribed:
            self.pubsub.get_message(timeout=1.0)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            msg = self.pubsub.get_message(timeout=0.2)
            if msg and msg["type"] == "message":
                self.heard(self.clock(), msg["data"])

    def close(self) -> None:
        self.stop.set()
        self.join(2)
        self.pubsub.close()


class Stack:
    """Redis + paper broker + accounts + workers in a temp dir (a context manager)."""

    def __init__(self) -> None:
        # Production runs Redis with appendfsync everysec (docker-compose): no fsync per write.
        # RedisServer's append-only mode fsyncs every write (what tests of a restart need), which
        # would measure the disk, so benchmarks run without it.
        self.workdir = Path(tempfile.mkdtemp(prefix="bg-bench-"))
        self.redis = RedisServer(port=free_port(), workdir=self.workdir / "redis", appendonly=False)
        self.paper_proc: subprocess.Popen[str] | None = None
        self.paper: PaperBroker | None = None
        self.workers = Workers(self.workdir)
        self._writer: AccountsWriter | None = None
        self._saved_env: dict[str, str | None] = {}
        self._plain: list[WorkerProc] = []
        self._undo = contextlib.ExitStack()

    # --- environment ----------------------------------------------------------------------------

    def setenv(self, name: str, value: str) -> None:
        self._saved_env.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    # --- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        undo = self._undo
        try:
            undo.callback(shutil.rmtree, self.workdir, ignore_errors=True)
            undo.callback(reset_process_caches)
            undo.callback(restore, self._saved_env)
            undo.callback(self.redis.stop)
            self.redis.start()
            self.setenv("BROKERGATE_REDIS_URL", self.redis.url)
            # No accounts yet: point at a file that will exist once accounts() is called.
            self.setenv("BROKERGATE_ACCOUNTS", str(self.workdir / "accounts.toml"))
            reset_process_caches()
            self.paper_proc, url = start_paper_process(seed=7)
            undo.callback(stop_process, self.paper_proc)
            self.paper = PaperBroker(url)
            undo.callback(self.paper.http.close)
            undo.callback(self.workers.stop_all)
            self._writer = AccountsWriter(self.paper, self.workdir / "accounts.toml", self.setenv)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Everything started, stopped in the reverse order (workers first, the temp dir last)."""
        self._undo.close()

    # --- accounts, logins, queues ---------------------------------------------------------------

    def accounts(self, **kw: Any) -> dict[str, Any]:
        """``make_accounts`` of the tests: paper users + accounts TOML (every call adds accounts)."""
        assert self._writer is not None
        got = self._writer.make(**kw)
        reset_process_caches()
        return got

    @staticmethod
    def login(accts: dict[str, Any]) -> dict[str, Any]:
        """Log every account in with the real login flow; tokens in Redis."""
        return logged_in(accts)

    @staticmethod
    def user_id(account_name: str) -> str:
        return paper_user_of(account_name).user_id

    @staticmethod
    def queues(account_name: str) -> list[str]:
        """What an order worker of the account consumes: urgent lane first."""
        return [keys.urgent_queue(account_name), keys.orders_queue(account_name)]

    def requests(self, user_id: str | None = None, since_ns: int | None = None) -> list[dict[str, Any]]:
        """The paper broker's request log (filtered on the server)."""
        assert self.paper is not None
        return self.paper.requests(user_id, since_ns)

    # --- the anchor: plain Celery workers (bench/plain_app.py) -----------------------------------

    def plain_worker(self, *, rate: str | None, concurrency: int = 1, pool: str = "prefork",
                     queue: str = "plain", start: bool = True) -> WorkerProc:
        """A ``celery -A bench.plain_app worker`` with ``rate_limit=rate`` (None: no limit)."""
        w = self.workers.prepare([queue], app="bench.plain_app", name=f"plain{len(self._plain) + 1}", pool=pool,
                                 concurrency=concurrency, env={"BENCH_PLAIN_RATE": rate or ""})  # fmt: skip
        self._plain.append(w)
        if start:
            start_all([w])
        return w

    def wait(self, predicate: Any, timeout_s: float, interval_s: float = 0.1, what: str = "condition") -> Any:
        return wait_for(predicate, timeout_s, interval_s, what, error=TimeoutError)
