"""Benchmark records, the printed table and ``bench/results/latest.json``.

Every record carries its anchor measured in the same run, so a ratio never compares
numbers from two different moments of a noisy machine.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"
LATEST = RESULTS_DIR / "latest.json"
Progress = Callable[[str], None]  # a suite's running commentary (``python -m bench`` prints it)


def noop(_msg: str) -> None:
    """The ``progress`` of a benchmark called without one."""


@dataclass
class Record:
    """One row of docs/architecture.md § Targets."""

    name: str
    value: float
    unit: str
    target: str  # human text, e.g. ">= 10x official parser"
    passed: bool
    anchor: str = ""  # what the anchor is
    anchor_value: float | None = None
    ratio: float | None = None  # value / anchor_value where that means something
    spread: str = ""  # e.g. "min 1.1 / max 1.4 over 5"
    repeats: int = 1
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    suite: str = ""  # the bench module that measured it (orders, login, feed, postback, account)


def median_spread(samples: Sequence[float]) -> tuple[float, str]:
    """The median and a short text of the spread, for the table."""
    med = statistics.median(samples)
    if len(samples) == 1:
        return med, "1 run"
    return med, f"min {min(samples):.4g} / max {max(samples):.4g} over {len(samples)}"


def percentile(samples: Sequence[float], q: float) -> float:
    s = sorted(samples)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def ms_summary(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50 / p90 / p99 / max of latencies in ms, rounded for a record's ``extra``."""
    return {**{f"p{q}": round(percentile(samples_ms, q), 3) for q in (50, 90, 99)}, "max": round(max(samples_ms), 3)}


def timed_ms(call: Callable[[], Any], out: list[float], n: int = 1) -> Any:
    """``call()`` ``n`` times, each one's milliseconds appended to ``out``; the last answer."""
    got = None
    for _ in range(n):
        t0 = time.perf_counter_ns()
        got = call()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return got


def timed_steps(steps: Iterable[Callable[..., Any]], progress: Progress, *args: Any) -> Iterator[Record]:
    """``step(*args, progress=progress)`` for each step in turn, saying when each starts and how long
    it took; yields the record (or list of records) each returns."""
    for step in steps:
        started = time.monotonic()
        progress(f"{step.__name__} ...")
        got = step(*args, progress=progress)
        progress(f"{step.__name__} done in {time.monotonic() - started:.0f} s")
        yield from (got if isinstance(got, list) else [got])


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def merged(records: Sequence[Record], suites_run: Iterable[str]) -> list[Record]:
    """The records of this run, plus the previous run's records of the suites not run now, so
    ``--only login`` refreshes the login rows instead of erasing every other row."""
    run = set(suites_run)
    names = {r.name for r in records}
    kept: list[Record] = []
    if LATEST.exists():
        try:
            old = json.loads(LATEST.read_text()).get("records", [])
        except ValueError:
            old = []
        known = set(Record.__dataclass_fields__)
        for d in old:
            rec = Record(**{k: v for k, v in d.items() if k in known})
            if rec.suite not in run and rec.name not in names:
                kept.append(rec)
    return [*kept, *records]


def write_json(records: Iterable[Record]) -> Path:
    LATEST.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "records": [asdict(r) for r in records],
    }
    tmp = LATEST.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    tmp.replace(LATEST)
    return LATEST


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v != v:  # nan
        return "n/a"
    return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def print_table(records: Sequence[Record]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="brokergate benchmarks (medians; anchors measured in the same run)")
    for col in ("target", "ours", "unit", "goal", "anchor", "ratio", "pass", "spread"):
        table.add_column(col)
    for r in records:
        table.add_row(
            r.name,
            _fmt(r.value),
            r.unit,
            r.target,
            f"{r.anchor}: {_fmt(r.anchor_value)}" if r.anchor else "-",
            f"{r.ratio:.2f}x" if r.ratio is not None else "-",
            "[green]pass[/]" if r.passed else "[red]FAIL[/]",
            r.spread,
        )
    Console(width=200).print(table)


def max_in_window(arrivals_ns: Sequence[int], window_ns: int) -> int:
    """The most arrivals inside any sliding window of ``window_ns`` (how a broker counts caps)."""
    times = sorted(arrivals_ns)
    best = lo = 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window_ns:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def markdown_table(records: Sequence[Record]) -> str:
    """The table as Markdown, for the README."""
    lines = ["| target | ours | goal | anchor (same run) | ratio | pass |", "|---|---|---|---|---|---|"]
    for r in records:
        anchor = f"{r.anchor}: {_fmt(r.anchor_value)}" if r.anchor else "-"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        lines.append(
            f"| {r.name} | {_fmt(r.value)} {r.unit} | {r.target} | {anchor} | {ratio} | {'pass' if r.passed else 'FAIL'} |"
        )
    return "\n".join(lines) + "\n"
