"""Process helpers for the ops tests: every process in its own group, stopped with its group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    fh = log.open("ab")
    return subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip


def stop(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group


@contextlib.contextmanager
def running(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    p = start(argv, env, log)
    try:
        yield p
    finally:
        stop(p)


def wait_for(what: str, predicate: Callable[[], Any], timeout_s: float, proc: subprocess.Popen[Any] | None = None,
             log: Path | None = None) -> Any:  # fmt: skip
    """Poll ``predicate`` until it returns something truthy (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(Exception):
            v = predicate()
            if v:
                return v
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited {proc.returncode}\n{log.read_text()[-3000:] if log else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s\n{log.read_text()[-3000:] if log else ''}")
        time.sleep(0.05)
