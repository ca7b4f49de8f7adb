"""The scale suite's rows of the table (bench/scale.py measures, this judges): each value is the
pooled workers' at 100 accounts (or the worst row), its anchor today's dedicated per-account
workers' in the same run, the whole curve in ``spread`` and ``extra``; and the picture
bench/results/scale_cost.png."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from operator import itemgetter
from typing import Any

from bench.report import Record, percentile
from bench.scale import CAP
from bench.scalestats import pcts

__all__ = ["curve", "records"]

GOAL_PROCESSES = 4
GOAL_RSS_MB = 1024
GOAL_CAP_USE_PCT = 95
GOAL_BEHIND = 2
GOAL_FANOUT_MS = 250
PAPER_BUSY_PCT = 80  # a single-threaded server near a whole core is the bottleneck
DEDICATED = "dedicated per-account workers"
Row = dict[str, Any]
Key = str | Callable[[Row], Any]  # a field of the row, or how to read one


def curve(rows: Sequence[Row], mode: str, key: Key) -> dict[int, Any]:
    """accounts -> ``key`` of one mode's measured rows (a row that could not run is left out)."""
    get = itemgetter(key) if isinstance(key, str) else key
    return {r["accounts"]: get(r) for r in rows if r["mode"] == mode and "failed" not in r}


def _top(rows: Sequence[Row], mode: str, key: Key) -> Any:
    c = curve(rows, mode, key)
    return c[max(c)] if c and max(c) == max(r["accounts"] for r in rows) else None


def _worst(rows: Sequence[Row], mode: str, key: Key, fn: Callable[[list[Any]], Any] = max) -> Any:
    vals = [v for v in curve(rows, mode, key).values() if v is not None]
    return fn(vals) if vals else None


def _text(c: dict[int, Any]) -> str:
    return "/".join("-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in c.values())


def _spread(rows: Sequence[Row], key: Key) -> str:
    sizes = "/".join(str(n) for n in curve(rows, "pooled", key))
    return f"accounts {sizes}: pooled {_text(curve(rows, 'pooled', key))}; dedicated {_text(curve(rows, 'dedicated', key))}"


def _ratio(v: float | None, a: float | None) -> float | None:
    return round(v / a, 2) if v is not None and a else None


def _versus(rows: Sequence[Row], key: Key, ok: Callable[[Any, Any], bool], *,
            pick: Callable[[Sequence[Row], str, Key], Any] = _top, spread: str = "", **fields: Any) -> Record:
    """The pooled workers' ``key`` (``pick``: at the top row, or the worst over the rows) against
    the dedicated workers' as the anchor; passed when there is a value and ``ok(value, anchor)``.
    ``fields`` are the rest of the record and override any of these (the cancel's has no ratio)."""
    v, a = pick(rows, "pooled", key), pick(rows, "dedicated", key)
    return Record(**{"value": v, "passed": v is not None and ok(v, a), "anchor": DEDICATED, "anchor_value": a,
                     "ratio": _ratio(v, a), "spread": spread + _spread(rows, key), **fields})


def _failed_note(rows: Sequence[Row]) -> str:
    failed = [f"{r['mode']} x{r['accounts']}: {r['failed']}" for r in rows if "failed" in r]
    return ("; not measured: " + "; ".join(failed)) if failed else ""


def _cost_records(rows: Sequence[Row]) -> Iterator[Record]:
    top = max(r["accounts"] for r in rows)
    yield _versus(
        rows, "processes", lambda v, a: v <= GOAL_PROCESSES,
        name=f"scale: worker processes for {top} accounts", unit="processes",
        target=f"<= {GOAL_PROCESSES} at 100 accounts", notes=_failed_note(rows), extra={"rows": list(rows)},
    )
    yield _versus(
        rows, "rss_mb_peak", lambda v, a: v <= GOAL_RSS_MB,
        name=f"scale: total worker RSS for {top} accounts (peak in the burst)", unit="MB",
        target=f"<= {GOAL_RSS_MB:,} MB at 100 accounts",
        notes="VmRSS summed over the worker processes and their children, sampled every 0.25 s" + _failed_note(rows),
    )
    yield _versus(
        rows, "cpu_s", lambda v, a: a is not None and v <= a,
        name=f"scale: worker CPU over the {top}-account burst", unit="CPU s",
        target="<= dedicated workers' (no goal in #21)",
        notes=f"utime+stime of the worker processes from the first enqueue until every order settled; CPU ms an "
              f"order {_spread(rows, 'cpu_ms_per_order')}; % of one core over the burst "
              f"{_spread(rows, 'worker_core_pct')}; burst wall s {_spread(rows, 'burst_wall_s')}",
    )


def _cap_records(rows: Sequence[Row]) -> Iterator[Record]:
    refused = _worst(rows, "pooled", "refused", sum)
    yield _versus(
        rows, "max_in_1s", lambda v, a: v <= CAP and refused == 0, pick=_worst,
        name="scale: most order requests in any 1 s per user (worst account, any row)", unit="req / 1 s",
        target=f"<= {CAP}, 0 rate-limit answers", notes=f"rate-limit answers: {_spread(rows, 'refused')}",
    )
    yield _versus(
        rows, "cap_use_min_pct", lambda v, a: v >= GOAL_CAP_USE_PCT,
        pick=partial(_worst, fn=min), spread="min ",
        name="scale: cap use per account in the burst, min over accounts (worst row)", unit="% of cap",
        target=f">= {GOAL_CAP_USE_PCT}% for every account",
        notes=(f"bench/orders.py's utilization per account, 20 orders at once at 10/s; median "
               f"{_spread(rows, 'cap_use_median_pct')}; accounts below 95%: {_spread(rows, 'accounts_below_95_pct')}"
               f"; the producer's enqueue of the burst took s {_spread(rows, 'enqueue_s')} (one process on the same "
               "2 cores: the faster it enqueues, the more the workers must carry at once)"),
    )
    missing = _worst(rows, "pooled", lambda r: len(r["cancels_missing"]), sum)
    yield _versus(
        rows, lambda r: max(r["slots_behind"], default=None), lambda v, a: v <= GOAL_BEHIND and not missing,
        pick=_worst, spread="worst ", ratio=None,
        name="scale: urgent cancel behind a burst, the account's slots before it (worst)", unit="slots",
        target=f"<= {GOAL_BEHIND}",
        notes=f"one cancel on each of up to 10 accounts per row, enqueued right behind the account's 20; cancels "
              f"that never arrived: {missing}",
        extra={"slots_behind": {f"{r['mode']} x{r['accounts']}": r.get("slots_behind") for r in rows}},
    )


def _latency_records(rows: Sequence[Row]) -> Iterator[Record]:
    top = max(r["accounts"] for r in rows)
    for q in ("p50", "p99"):
        yield _versus(
            rows, lambda r, q=q: r["latency_first_window_ms"][q], lambda v, a: a is not None and v <= 1.2 * a,
            name=f"scale: enqueue -> broker {q}, {top}-account burst (each account's first window)",
            unit="ms", target="<= 1.2x dedicated workers' (no goal in #21)",
            notes="the orders the cap lets through at once (their wait is the pipeline's, not the cap's); a "
                  "dedicated worker's Celery rate_limit (the account's 10/s x its concurrency 2) spaces them 50 ms "
                  "apart, a pooled worker has Celery's rate limit off; every order of the burst, "
                  f"{q}: " + _spread(rows, lambda r, q=q: r["latency_all_ms"][q]),
        )


def _fanout_records(fans: Sequence[Row]) -> Iterator[Record]:
    """The pooled workers' fan-out (measured whenever any fan-out is), the dedicated ones' beside."""
    stats = {f["mode"]: {**pcts([g["last_ms"] for g in f["signals"] if g["last_ms"] is not None]),
                         "incomplete": sum(1 for g in f["signals"] if g["last_ms"] is None), "n": len(f["signals"]),
                         "call_p50": round(percentile(f["call_ms"], 50), 1) if f["call_ms"] else None}
             for f in fans}  # fmt: skip
    p, a = stats["pooled"], stats.get("dedicated", {})
    f = next(f for f in fans if f["mode"] == "pooled")
    exact = f["placed_once"] == f["expected"] and not f["placed_twice_or_more"]
    held = f["max_in_1s"] <= CAP and f["refused"] == 0
    v = p["p99"]
    n_acc = len(f["signals"][0]["missing"]) + f["signals"][0]["children"]
    yield Record(
        name=f"fan-out: one signal to {n_acc} accounts, call -> last child at the broker, p99", value=v, unit="ms",
        target=f"<= {GOAL_FANOUT_MS} ms, every child placed exactly once, caps held",
        passed=v is not None and v <= GOAL_FANOUT_MS and exact and held and not p["incomplete"],
        anchor="the same on dedicated per-account workers", anchor_value=a.get("p99"), ratio=_ratio(v, a.get("p99")),
        spread=f"p50 pooled {p['p50']} ms over {p['n']} signals / dedicated {a.get('p50')} ms over {a.get('n')}",
        repeats=len(f["signals"]),
        notes=(f"pooled: placed once {f['placed_once']}/{f['expected']}, more than once {f['placed_twice_or_more']}, "
               f"most in 1 s {f['max_in_1s']}, rate-limit answers {f['refused']}; the place_order_group call "
               f"itself p50 {p['call_p50']} ms (dedicated run {a.get('call_p50')} ms)"),
        extra={"fanout": list(fans)},
    )


def _paper_record(rows: Sequence[Row]) -> Record:
    top = max(r["accounts"] for r in rows)
    cpu = _top(rows, "pooled", "paper_cpu_s")
    a_cpu = _top(rows, "dedicated", "paper_cpu_s")
    return _versus(
        rows, "paper_core_pct", lambda v, a: v < PAPER_BUSY_PCT, spread="% of a core ",
        name=f"paper broker CPU during the {top}-account burst", unit="% of one core",
        target=f"< {PAPER_BUSY_PCT}% of one core (not the bottleneck)",
        anchor="the same burst on dedicated per-account workers",
        notes=f"CPU s pooled {cpu} / dedicated {a_cpu} over the burst (first enqueue -> every order settled)",
    )


def records(rows: Sequence[Row], fans: Sequence[Row]) -> Iterator[Record]:
    if not rows:
        return
    yield from _cost_records(rows)
    yield from _cap_records(rows)
    yield from _latency_records(rows)
    if fans:
        yield from _fanout_records(fans)
    yield _paper_record(rows)
    try:
        from bench.pictures import RESULTS_DIR, plot_scale_cost

        print(f"[bench] picture {plot_scale_cost(rows, RESULTS_DIR / 'scale_cost.png')}", flush=True)
    except Exception:
        traceback.print_exc()
