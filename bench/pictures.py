"""Pictures for ``make bench`` (PNG under bench/results/, matplotlib's Agg backend, no display).

- :func:`plot_requests_per_second`: requests in the sliding second ending at each moment of a
  burst, one line per series (brokergate and plain Celery ``rate_limit``), against the cap.
- :func:`plot_reconnect_gaps`: the tick gap around each feed drop (the reconnect benchmark).
- :func:`plot_scale_cost`: the many-accounts cost curve, pooled vs dedicated workers (bench/scale.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.report import RESULTS_DIR, max_in_window

__all__ = ["RESULTS_DIR", "plot_reconnect_gaps", "plot_requests_per_second", "plot_scale_cost", "sliding_counts"]

NS = 1_000_000_000


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, ax: Any = None) -> Path:
    """Write a chart to ``path``; a one-panel chart (``ax``) is finished first: y from 0, legend upper right."""
    if ax is not None:
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    _plt().close(fig)
    return path


def sliding_counts(arrivals_ns: Sequence[int], window_ns: int = NS, step_ns: int = 10_000_000) -> tuple[list[float], list[int]]:
    """(seconds since the first arrival, requests in the window [t - window, t)) on a grid of
    ``step_ns``, from the first arrival to one window after the last: what the broker counts."""
    ts = sorted(arrivals_ns)
    if not ts:
        return [], []
    t0 = ts[0]
    xs: list[float] = []
    ys: list[int] = []
    lo = hi = 0
    t = t0
    end = ts[-1] + window_ns
    while t <= end:
        while hi < len(ts) and ts[hi] <= t:
            hi += 1
        while lo < hi and ts[lo] <= t - window_ns:
            lo += 1
        xs.append((t - t0) / NS)
        ys.append(hi - lo)
        t += step_ns
    return xs, ys


def plot_requests_per_second(series: Mapping[str, Sequence[int]], cap: float, path: Path, title: str = "") -> Path:
    """One figure: for each series (label -> arrival times in ns at the broker), the requests
    in the sliding second ending at each moment, with the cap as a dashed line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    for label, arrivals in series.items():
        xs, ys = sliding_counts(arrivals)
        if xs:
            top = max_in_window(arrivals, window_ns=NS)  # exact, not the grid's
            ax.step(xs, ys, where="post", label=f"{label} (max {top})", linewidth=1.4)
    ax.axhline(cap, color="black", linestyle="--", linewidth=1, label=f"cap {cap:g}/s")
    ax.set_xlabel("seconds since the first request of the burst")
    ax.set_ylabel("order requests in the sliding 1 s window")
    ax.set_title(title or "Requests per sliding second at the paper broker")
    ax.grid(alpha=0.3)
    return _save(fig, path, ax)


def plot_reconnect_gaps(gaps_ms: Sequence[float], path: Path, target_ms: float = 1500.0,
                        anchor_ms: float | None = None) -> Path:
    """A bar per feed drop: the tick gap around it (ms), with the target (and the anchor's fixed
    retry delay, when given) as lines. For bench/feed.py's reconnect benchmark."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4), dpi=110)
    xs = list(range(1, len(gaps_ms) + 1))
    ax.bar(xs, list(gaps_ms), color="tab:blue", label="tick gap after the drop")
    ax.axhline(target_ms, color="tab:red", linestyle="--", linewidth=1, label=f"target {target_ms:g} ms")
    if anchor_ms is not None and anchor_ms <= 3 * max([target_ms, *gaps_ms]):
        ax.axhline(anchor_ms, color="gray", linestyle=":", linewidth=1, label=f"anchor {anchor_ms:g} ms")
    ax.set_xlabel("drop #")
    ax.set_ylabel("ms until ticks flow again")
    ax.set_title("Feed reconnect: tick gap around each drop")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path, ax)


def plot_scale_cost(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """The scale suite's cost curve (bench/scale.py): per mode (pooled, dedicated), against the
    number of accounts, total worker RSS and worker processes; cap use per account (min and
    median) and enqueue -> broker p99 and p50 of each account's first window."""
    from bench.scalerecords import GOAL_CAP_USE_PCT, GOAL_PROCESSES, GOAL_RSS_MB, curve

    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), dpi=110)
    styles = {"pooled": ("tab:blue", "o"), "dedicated": ("tab:orange", "s")}
    # (axes, title, [(label suffix, value (scalerecords.curve's key), line style)], goal line, log y)
    panels: list[tuple[Any, str, list[tuple[str, Any, str]], tuple[float, str] | None, bool]] = [
        (axes[0][0], "total worker RSS (MB, peak in the burst)", [("", "rss_mb_peak", "-")],
         (GOAL_RSS_MB, "goal <= 1 GB at 100"), True),
        (axes[0][1], "worker processes", [("", "processes", "-")], (GOAL_PROCESSES, "goal <= 4 at 100"), True),
        (axes[1][0], "cap use per account (% of 10/s)", [(" min", "cap_use_min_pct", "-"),
                                                          (" median", "cap_use_median_pct", ":")],
         (GOAL_CAP_USE_PCT, f"goal {GOAL_CAP_USE_PCT}%"), False),
        (axes[1][1], "enqueue -> broker (ms, each account's first window)",
         [(" p99", lambda r: r["latency_first_window_ms"]["p99"], "-"),
          (" p50", lambda r: r["latency_first_window_ms"]["p50"], ":")], None, False),
    ]
    for ax, title, series, goal, log in panels:
        for mode, (color, marker) in styles.items():
            for suffix, key, style in series:
                pts = [(n, v) for n, v in curve(rows, mode, key).items() if v is not None]
                if pts:
                    ax.plot(*zip(*pts, strict=True), color=color, marker=marker, linestyle=style,
                            label=f"{mode}{suffix}")
        if goal is not None:
            ax.axhline(goal[0], color="black", linestyle="--", linewidth=1, label=goal[1])
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_xlabel("accounts")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="best", fontsize=7)
    fig.suptitle("Many accounts: pooled workers vs one worker per account (20 orders per account at once, 10/s caps)")
    return _save(fig, path)
