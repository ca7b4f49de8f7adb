"""Start ``python -m paper`` as a child process and wait for its address line (tests, benchmarks)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 15.0
_ADDRESS_RE = re.compile(r"(http://[\w.\-\[\]:]+:\d+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_paper_process(
    seed: int = 7, extra_args: list[str] | None = None, timeout_s: float = START_TIMEOUT_S
) -> tuple[subprocess.Popen[str], str]:
    """Start `python -m paper` on a free port; return the process and its base URL."""
    port = _free_port()
    cmd = [sys.executable, "-m", "paper", "--host", "127.0.0.1", "--port", str(port), "--seed", str(seed)]
    proc = subprocess.Popen(
        [*cmd, *(extra_args or [])],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    found: list[str] = []
    seen: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        # Keep draining stdout for the process's whole life, so it never blocks on a full pipe.
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            match = _ADDRESS_RE.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, name="paper-stdout", daemon=True).start()
    if not ready.wait(timeout_s) or not found:
        proc.kill()
        raise RuntimeError(f"paper broker did not start: {''.join(seen)[-2000:]}")
    return proc, found[0]
