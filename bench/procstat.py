"""What a set of processes costs, read from /proc (psutil is not installed): resident memory
(``VmRSS`` of /proc/<pid>/status) and CPU seconds (``utime + stime`` of /proc/<pid>/stat), summed
over the processes and every descendant (a prefork pool's children; a threads pool has none).

The parsers are pure (tests/bench/test_procstat.py); :class:`ProcTree` reads the live system.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcTree", "TreeSample", "descendants", "parse_stat", "parse_vmrss_kb"]

PROC = Path("/proc")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_vmrss_kb(status_text: str) -> int:
    """``VmRSS`` in kB from the text of /proc/<pid>/status; 0 when absent (a zombie has none)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def parse_stat(stat_text: str, clk_tck: int = CLK_TCK) -> tuple[int, float]:
    """(parent pid, utime + stime in seconds) from the text of /proc/<pid>/stat. The command name
    (field 2) is in parentheses and may hold spaces or parentheses itself, so the fields are
    counted from the LAST closing parenthesis."""
    rest = stat_text[stat_text.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    ppid, utime, stime = int(rest[1]), int(rest[11]), int(rest[12])
    return ppid, (utime + stime) / clk_tck


def descendants(roots: Iterable[int], parents: Mapping[int, int]) -> list[int]:
    """The roots and every process below them (each once, roots first), from pid -> parent pid."""
    kids: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        kids.setdefault(ppid, []).append(pid)
    out = list(dict.fromkeys(roots))
    for pid in out:  # out grows as the walk goes: breadth first
        out += [k for k in kids.get(pid, []) if k not in out]
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None  # the process ended between the listing and the read


def _all_parents() -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            text = _read(entry / "stat")
            if text:
                out[int(entry.name)] = parse_stat(text)[0]
    return out


@dataclass(frozen=True)
class TreeSample:
    """One reading of a process tree."""

    processes: int  # every process counted (roots and descendants alive at the reading)
    rss_kb: int
    cpu_s: float


class ProcTree:
    """The processes under some roots (worker processes; the paper broker), read on demand. The
    tree is walked once, when made (every /proc/<pid>/stat of the machine: ~10 ms, too much to
    repeat four times a second beside a benchmark); a threads-pool worker never forks, a prefork
    pool's children are there once it is ready."""

    def __init__(self, roots: Iterable[int]) -> None:
        self.pids = descendants(roots, _all_parents())

    def sample(self) -> TreeSample:
        rss = 0
        cpu = 0.0
        alive = 0
        for pid in self.pids:
            stat = _read(PROC / str(pid) / "stat")
            status = _read(PROC / str(pid) / "status")
            if stat is None or status is None:
                continue
            alive += 1
            cpu += parse_stat(stat)[1]
            rss += parse_vmrss_kb(status)
        return TreeSample(alive, rss, cpu)
