"""A private redis-server process: for the demo when no Redis is reachable, for tests and benchmarks.

Started with the settings production uses (append-only file, ``noeviction``), so a
restart keeps what was enqueued and a full Redis refuses writes instead of silently
evicting a queue or a token.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import redis

from devtools.processes import stop_process
from devtools.waiting import until

T = TypeVar("T")


def die_with_parent() -> None:
    """For ``preexec_fn``: the child gets SIGTERM when its parent dies, even by SIGKILL (Linux),
    so a killed demo or test run leaves no server behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ask(client: redis.Redis, command: Callable[[redis.Redis], T], silent: T) -> T:
    """``command(client)``, or ``silent`` when the server does not answer; the client closed after."""
    try:
        return command(client)
    except redis.RedisError:
        return silent
    finally:
        client.close()


def reachable(url: str, timeout_s: float = 0.5) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    return ask(client, lambda c: bool(c.ping()), False)


def spawn_redis(args: list[str]) -> subprocess.Popen[bytes]:
    """``redis-server *args``, dying with its creator."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (`make test` or `make demo` installs it)")
    return subprocess.Popen(
        [binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C meant for a parent is handled by the parent, which stops us
        preexec_fn=die_with_parent,
    )  # fmt: skip


def wait_answering(proc: subprocess.Popen[bytes], answers: Callable[[], bool], log: Path, who: str,
                   timeout_s: float) -> None:  # fmt: skip
    """Return once ``answers()``; RuntimeError with the tail of ``log`` when ``proc`` exits or
    ``timeout_s`` passes first."""
    if not until(lambda: answers() or proc.poll() is not None, timeout_s) or proc.poll() is not None:
        text = log.read_text(errors="replace") if log.exists() else ""
        raise RuntimeError(f"{who} did not start:\n{text[-3000:]}")


@dataclass
class RedisServer:
    """A redis-server process owned by its creator, on ``port``, keeping its files in ``workdir``."""

    port: int
    workdir: Path
    appendonly: bool = True
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / "redis.log"
        self.proc = spawn_redis([
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
            "--maxmemory-policy", "noeviction", "--dir", str(self.workdir), "--logfile", str(log),
        ])  # fmt: skip
        wait_answering(self.proc, lambda: reachable(self.url, 0.2), log, "redis-server", timeout_s)

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc, grace_s=10)
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        """Stop and start on the same port and files (the append-only file keeps the data)."""
        self.stop()
        self.start()
