"""The scale suite's rows of the table (bench/scale.py measures, this judges): each value is the
pooled workers' at 100 accounts (or the worst row), its anchor today's dedicated per-account
workers' in the same run, the whole curve in ``spread`` and ``extra``; and the picture
bench/results/scale_cost.png."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from bench.report import Record

__all__ = ["curve", "records"]

GOAL_PROCESSES = 4
GOAL_RSS_MB = 1024
GOAL_CAP_USE_PCT = 95
GOAL_BEHIND = 2
GOAL_FANOUT_MS = 250
CAP = 10
PAPER_BUSY_PCT = 80  # a single-threaded server near a whole core is the bottleneck


def curve(rows: Sequence[dict[str, Any]], mode: str, key: Callable[[dict[str, Any]], Any]) -> dict[int, Any]:
    """accounts -> ``key(row)`` of one mode's measured rows (a row that could not run is left out)."""
    return {r["accounts"]: key(r) for r in rows if r["mode"] == mode and "failed" not in r}


def _top(rows: Sequence[dict[str, Any]], mode: str, key: Callable[[dict[str, Any]], Any]) -> Any:
    c = curve(rows, mode, key)
    return c[max(c)] if c and max(c) == max(r["accounts"] for r in rows) else None


def _text(c: dict[int, Any]) -> str:
    return "/".join("-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in c.values())


def _spread(rows: Sequence[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> str:
    sizes = "/".join(str(n) for n in curve(rows, "pooled", key))
    return f"accounts {sizes}: pooled {_text(curve(rows, 'pooled', key))}; dedicated {_text(curve(rows, 'dedicated', key))}"


def _ratio(v: float | None, a: float | None) -> float | None:
    return round(v / a, 2) if v is not None and a else None


def _failed_note(rows: Sequence[dict[str, Any]]) -> str:
    failed = [f"{r['mode']} x{r['accounts']}: {r['failed']}" for r in rows if "failed" in r]
    return ("; not measured: " + "; ".join(failed)) if failed else ""


def _cost_records(rows: Sequence[dict[str, Any]]) -> Iterator[Record]:
    top = max(r["accounts"] for r in rows)
    procs, a_procs = _top(rows, "pooled", lambda r: r["processes"]), _top(rows, "dedicated", lambda r: r["processes"])
    yield Record(
        name=f"scale: worker processes for {top} accounts", value=procs, unit="processes",
        target=f"<= {GOAL_PROCESSES} at 100 accounts", passed=procs is not None and procs <= GOAL_PROCESSES,
        anchor="dedicated per-account workers", anchor_value=a_procs, ratio=_ratio(procs, a_procs),
        spread=_spread(rows, lambda r: r["processes"]), notes=_failed_note(rows),
        extra={"rows": list(rows)},
    )
    rss, a_rss = _top(rows, "pooled", lambda r: r["rss_mb_peak"]), _top(rows, "dedicated", lambda r: r["rss_mb_peak"])
    yield Record(
        name=f"scale: total worker RSS for {top} accounts (peak in the burst)", value=rss, unit="MB",
        target=f"<= {GOAL_RSS_MB:,} MB at 100 accounts", passed=rss is not None and rss <= GOAL_RSS_MB,
        anchor="dedicated per-account workers", anchor_value=a_rss, ratio=_ratio(rss, a_rss),
        spread=_spread(rows, lambda r: r["rss_mb_peak"]),
        notes="VmRSS summed over the worker processes and their children, sampled every 0.25 s" + _failed_note(rows),
    )
    cpu, a_cpu = _top(rows, "pooled", lambda r: r["cpu_s"]), _top(rows, "dedicated", lambda r: r["cpu_s"])
    yield Record(
        name=f"scale: worker CPU over the {top}-account burst", value=cpu, unit="CPU s",
        target="<= dedicated workers' (no goal in #21)", passed=cpu is not None and a_cpu is not None and cpu <= a_cpu,
        anchor="dedicated per-account workers", anchor_value=a_cpu, ratio=_ratio(cpu, a_cpu),
        spread=_spread(rows, lambda r: r["cpu_s"]),
        notes="utime+stime of the worker processes from the first enqueue until every order settled; CPU ms an "
              "order " + _spread(rows, lambda r: r["cpu_ms_per_order"]) + "; % of one core over the burst "
              + _spread(rows, lambda r: r.get("worker_core_pct")) + "; burst wall s "
              + _spread(rows, lambda r: r["burst_wall_s"]),
    )


def _cap_records(rows: Sequence[dict[str, Any]]) -> Iterator[Record]:
    def worst(mode: str, key: Callable[[dict[str, Any]], Any], fn: Callable[..., Any]) -> Any:
        vals = [v for v in curve(rows, mode, key).values() if v is not None]
        return fn(vals) if vals else None

    mx, a_mx = worst("pooled", lambda r: r["max_in_1s"], max), worst("dedicated", lambda r: r["max_in_1s"], max)
    refused = worst("pooled", lambda r: r["refused"], sum)
    yield Record(
        name="scale: most order requests in any 1 s per user (worst account, any row)", value=mx, unit="req / 1 s",
        target=f"<= {CAP}, 0 rate-limit answers", passed=mx is not None and mx <= CAP and refused == 0,
        anchor="dedicated per-account workers", anchor_value=a_mx, ratio=_ratio(mx, a_mx),
        spread=_spread(rows, lambda r: r["max_in_1s"]),
        notes=f"rate-limit answers: {_spread(rows, lambda r: r['refused'])}",
    )
    use, a_use = (worst("pooled", lambda r: r["cap_use_min_pct"], min),
                  worst("dedicated", lambda r: r["cap_use_min_pct"], min))
    yield Record(
        name="scale: cap use per account in the burst, min over accounts (worst row)", value=use, unit="% of cap",
        target=f">= {GOAL_CAP_USE_PCT}% for every account", passed=use is not None and use >= GOAL_CAP_USE_PCT,
        anchor="dedicated per-account workers", anchor_value=a_use, ratio=_ratio(use, a_use),
        spread="min " + _spread(rows, lambda r: r["cap_use_min_pct"]),
        notes=("bench/orders.py's utilization per account, 20 orders at once at 10/s; median "
               + _spread(rows, lambda r: r["cap_use_median_pct"]) + "; accounts below 95%: "
               + _spread(rows, lambda r: r["accounts_below_95_pct"]) + "; the producer's enqueue of the burst took s "
               + _spread(rows, lambda r: r["enqueue_s"]) + " (one process on the same 2 cores: the faster it "
               "enqueues, the more the workers must carry at once)"),
    )
    behind = worst("pooled", lambda r: max(r["slots_behind"], default=None), lambda v: max(v))
    a_behind = worst("dedicated", lambda r: max(r["slots_behind"], default=None), lambda v: max(v))
    missing = worst("pooled", lambda r: len(r["cancels_missing"]), sum)
    yield Record(
        name="scale: urgent cancel behind a burst, the account's slots before it (worst)", value=behind,
        unit="slots", target=f"<= {GOAL_BEHIND}", passed=behind is not None and behind <= GOAL_BEHIND and not missing,
        anchor="dedicated per-account workers", anchor_value=a_behind, ratio=None,
        spread="worst " + _spread(rows, lambda r: max(r["slots_behind"], default=None)),
        notes=f"one cancel on each of up to 10 accounts per row, enqueued right behind the account's 20; cancels "
              f"that never arrived: {missing}",
        extra={"slots_behind": {f"{r['mode']} x{r['accounts']}": r.get("slots_behind") for r in rows}},
    )


def _latency_records(rows: Sequence[dict[str, Any]]) -> Iterator[Record]:
    top = max(r["accounts"] for r in rows)
    for q in ("p50", "p99"):
        v = _top(rows, "pooled", lambda r, q=q: r["latency_first_window_ms"][q])
        a = _top(rows, "dedicated", lambda r, q=q: r["latency_first_window_ms"][q])
        yield Record(
            name=f"scale: enqueue -> broker {q}, {top}-account burst (each account's first window)", value=v,
            unit="ms", target="<= 1.2x dedicated workers' (no goal in #21)",
            passed=v is not None and a is not None and v <= 1.2 * a,
            anchor="dedicated per-account workers", anchor_value=a, ratio=_ratio(v, a),
            spread=_spread(rows, lambda r, q=q: r["latency_first_window_ms"][q]),
            notes="the orders the cap lets through at once (their wait is the pipeline's, not the cap's); a "
                  "dedicated worker's Celery rate_limit (the account's 10/s x its concurrency 2) spaces them 50 ms "
                  "apart, a pooled worker has Celery's rate limit off; every order of the burst, "
                  f"{q}: " + _spread(rows, lambda r, q=q: r["latency_all_ms"][q]),
        )


def _fanout_records(fans: Sequence[dict[str, Any]]) -> Iterator[Record]:
    from bench.report import percentile

    by = {f["mode"]: f for f in fans}
    stats: dict[str, dict[str, Any]] = {}
    for mode, f in by.items():
        lasts = [g["last_ms"] for g in f["signals"] if g["last_ms"] is not None]
        stats[mode] = {"p50": percentile(lasts, 50) if lasts else None, "p99": percentile(lasts, 99) if lasts else None,
                       "incomplete": sum(1 for g in f["signals"] if g["last_ms"] is None), "n": len(f["signals"]),
                       "call_p50": round(percentile(f["call_ms"], 50), 1) if f["call_ms"] else None}
    p = stats.get("pooled", {})
    a = stats.get("dedicated", {})
    f = by.get("pooled")
    exact = bool(f) and f["placed_once"] == f["expected"] and not f["placed_twice_or_more"]
    held = bool(f) and f["max_in_1s"] <= CAP and f["refused"] == 0
    v = p.get("p99")
    n_acc = len(f["signals"][0]["missing"]) + f["signals"][0]["children"] if f else 0
    yield Record(
        name=f"fan-out: one signal to {n_acc} accounts, call -> last child at the broker, p99", value=v, unit="ms",
        target=f"<= {GOAL_FANOUT_MS} ms, every child placed exactly once, caps held",
        passed=v is not None and v <= GOAL_FANOUT_MS and exact and held and not p.get("incomplete"),
        anchor="the same on dedicated per-account workers", anchor_value=a.get("p99"), ratio=_ratio(v, a.get("p99")),
        spread=(f"p50 pooled {p.get('p50')} ms over {p.get('n')} signals / dedicated {a.get('p50')} ms over "
                f"{a.get('n')}"),
        repeats=len(f["signals"]) if f else 0,
        notes=(f"pooled: placed once {f['placed_once']}/{f['expected']}, more than once {f['placed_twice_or_more']}, "
               f"most in 1 s {f['max_in_1s']}, rate-limit answers {f['refused']}; the place_order_group call "
               f"itself p50 {p.get('call_p50')} ms (dedicated run {a.get('call_p50')} ms)" if f else "not measured"),
        extra={"fanout": list(fans)},
    )


def _paper_record(rows: Sequence[dict[str, Any]]) -> Record:
    top = max(r["accounts"] for r in rows)
    v, a = _top(rows, "pooled", lambda r: r["paper_core_pct"]), _top(rows, "dedicated", lambda r: r["paper_core_pct"])
    cpu = _top(rows, "pooled", lambda r: r["paper_cpu_s"])
    a_cpu = _top(rows, "dedicated", lambda r: r["paper_cpu_s"])
    return Record(
        name=f"paper broker CPU during the {top}-account burst", value=v, unit="% of one core",
        target=f"< {PAPER_BUSY_PCT}% of one core (not the bottleneck)", passed=v is not None and v < PAPER_BUSY_PCT,
        anchor="the same burst on dedicated per-account workers", anchor_value=a, ratio=_ratio(v, a),
        spread="% of a core " + _spread(rows, lambda r: r["paper_core_pct"]),
        notes=f"CPU s pooled {cpu} / dedicated {a_cpu} over the burst (first enqueue -> every order settled)",
    )


def records(rows: Sequence[dict[str, Any]], fans: Sequence[dict[str, Any]]) -> Iterator[Record]:
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
