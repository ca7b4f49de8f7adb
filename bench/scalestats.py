"""The arithmetic of the scale suite (bench/scale.py), pure so tests/bench/test_scalestats.py can
hold it: what one account's requests at the paper broker say about one burst (the most in any
sliding second, cap use, the urgent cancel's slots behind, enqueue -> broker latencies), what a
row of accounts adds up to, and what a fan-out signal took.

Request-log entries are the paper broker's (``GET /_paper/requests``): ``arrival_ns`` on
CLOCK_MONOTONIC, the clock of ``time.monotonic_ns()`` in the bench process, so an arrival minus
an enqueue time taken by the bench is a latency.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from bench.orders import UTIL_OBSERVE_S, _utilization
from bench.report import max_in_window, percentile
from bench.stack import order_requests

__all__ = [
    "account_burst",
    "fanout_signal",
    "latencies_ms",
    "merge_repeats",
    "order_class",
    "pcts",
    "row_summary",
    "slots_behind",
]

NS = 1_000_000_000
# What the broker counts against the orders cap: place, modify, cancel (a GET of the book is not).
ORDER_METHODS = frozenset({"POST", "PUT", "DELETE"})


def order_class(log: list[dict[str, Any]], user_id: str) -> list[dict[str, Any]]:
    """One user's order-class requests (place, modify, cancel) in arrival order."""
    got = [e for e in order_requests(log, user_id, method=None) if e["method"] in ORDER_METHODS]
    return sorted(got, key=lambda e: int(e["arrival_ns"]))


def slots_behind(requests: Sequence[Mapping[str, Any]], cancel_enqueued_ns: int) -> int | None:
    """How many of the account's placements reached the broker after the cancel was enqueued and
    before the cancel itself (its first DELETE after the enqueue): the slots it waited behind.
    None when no cancel arrived."""
    ahead = 0
    for e in requests:
        if int(e["arrival_ns"]) <= cancel_enqueued_ns:
            continue
        if e["method"] == "DELETE":
            return ahead
        if e["method"] == "POST":
            ahead += 1
    return None


def latencies_ms(enqueued_ns: Mapping[str, int], requests: Sequence[Mapping[str, Any]],
                 first: int | None = None) -> list[float]:
    """Enqueue -> arrival at the broker (ms) of the placements whose tag (client_order_id) the bench
    enqueued, in enqueue order; only the ``first`` enqueued when given (the orders the cap lets
    through at once, whose wait is the pipeline's rather than the cap's)."""
    arrived = {e["tag"]: int(e["arrival_ns"]) for e in requests if e["method"] == "POST" and e.get("tag")}
    order = sorted(enqueued_ns, key=lambda tag: enqueued_ns[tag])
    if first is not None:
        order = order[:first]
    return [(arrived[t] - enqueued_ns[t]) / 1e6 for t in order if t in arrived]


def account_burst(requests: Sequence[Mapping[str, Any]], enqueued_ns: Mapping[str, int], *, cap: int,
                  cancel_enqueued_ns: int | None = None) -> dict[str, Any]:
    """One account's burst, from its order-class requests since the burst began: ``expected`` is
    what the bench sent (its placements plus the cancel, when it sent one)."""
    expected = len(enqueued_ns) + (1 if cancel_enqueued_ns is not None else 0)
    arrivals = [int(e["arrival_ns"]) for e in requests]
    use, details = _utilization(arrivals, expected, cap, UTIL_OBSERVE_S)
    tags = [e["tag"] for e in requests if e["method"] == "POST" and e.get("tag") in enqueued_ns]
    return {
        "expected": expected,
        "arrived": len(requests),
        "placed_tags": len(set(tags)),
        "duplicate_tags": len(tags) - len(set(tags)),
        "max_in_1s": max_in_window(arrivals, NS),
        "refused": sum(1 for e in requests if int(e["status"]) != 200),
        "cap_use": use,
        "cap_use_details": details,
        "cancel_sent": cancel_enqueued_ns is not None,
        "slots_behind": None if cancel_enqueued_ns is None else slots_behind(requests, cancel_enqueued_ns),
        # The cancel (urgent: the earliest slot) takes one of the first window's slots.
        "latency_first_ms": latencies_ms(enqueued_ns, requests, first=cap - (cancel_enqueued_ns is not None)),
        "latency_all_ms": latencies_ms(enqueued_ns, requests),
    }


def pcts(xs: Sequence[float]) -> dict[str, float | None]:
    """p50, p99 and max of ``xs`` rounded to 0.01 (None when there are none)."""
    if not xs:
        return {"p50": None, "p99": None, "max": None}
    return {"p50": round(percentile(xs, 50), 2), "p99": round(percentile(xs, 99), 2), "max": round(max(xs), 2)}


def row_summary(per_account: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A row of the cost curve from its accounts' :func:`account_burst`: the worst most-in-a-second,
    cap use (min and median over accounts, %), every cancel's slots behind, latency percentiles
    over every account's orders pooled."""
    bursts = list(per_account.values())
    uses = [100 * b["cap_use"] for b in bursts]
    behind = [b["slots_behind"] for b in bursts if b["slots_behind"] is not None]
    missing = [a for a, b in per_account.items() if b["cancel_sent"] and b["slots_behind"] is None]
    first = [x for b in bursts for x in b["latency_first_ms"]]
    every = [x for b in bursts for x in b["latency_all_ms"]]
    worst_use = min(per_account, key=lambda a: per_account[a]["cap_use"]) if bursts else None
    return {
        "accounts": len(bursts),
        "expected": sum(b["expected"] for b in bursts),
        "arrived": sum(b["arrived"] for b in bursts),
        "duplicates": sum(b["duplicate_tags"] for b in bursts),
        "unplaced": sum(b["expected"] - b["arrived"] for b in bursts if b["arrived"] < b["expected"]),
        "max_in_1s": max((b["max_in_1s"] for b in bursts), default=0),
        "refused": sum(b["refused"] for b in bursts),
        "cap_use_min_pct": round(min(uses), 1) if uses else None,
        "cap_use_median_pct": round(statistics.median(uses), 1) if uses else None,
        "cap_use_worst_account": worst_use,
        "accounts_below_95_pct": sum(1 for u in uses if u < 95),
        "slots_behind": behind,
        "cancels_missing": missing,
        "latency_first_window_ms": pcts(first),
        "latency_all_ms": pcts(every),
    }


def fanout_signal(called_ns: int, children: Mapping[str, str], arrivals_by_tag: Mapping[str, int]) -> dict[str, Any]:
    """One fan-out signal: ``children`` account -> client_order_id, ``arrivals_by_tag`` the first
    arrival of each placement at the broker. The time from the call to the LAST child's arrival
    (None when one never arrived) and the accounts whose child is missing."""
    missing = sorted(a for a, coid in children.items() if coid not in arrivals_by_tag)
    if missing or not children:
        return {"last_ms": None, "missing": missing, "children": len(children)}
    last = max(arrivals_by_tag[c] for c in children.values())
    first = min(arrivals_by_tag[c] for c in children.values())
    return {"last_ms": round((last - called_ns) / 1e6, 2), "first_ms": round((first - called_ns) / 1e6, 2),
            "missing": [], "children": len(children)}


# How repeated bursts of one row combine (every other number: the median over the repeats).
_WORST = frozenset({"max_in_1s", "rss_mb_peak", "rss_mb_idle", "processes"})
_TOTAL = frozenset({"expected", "arrived", "duplicates", "unplaced", "refused", "unsettled"})


def _median(xs: Sequence[float]) -> float | None:
    return round(statistics.median(xs), 2) if xs else None


def merge_repeats(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One row of the curve from repeated bursts of it: totals of the counts, the worst of the
    bounds (most in a second, RSS), every cancel's slots behind, the median of everything else
    (cap use min and median, CPU, latency percentiles, ...); the last burst's per-account detail
    and each burst's cap use min and p99 under ``repeat_runs``."""
    if len(runs) == 1:
        return {**runs[0], "repeats": 1}
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        vals = [r[key] for r in runs if r.get(key) is not None]
        if key in _TOTAL:
            out[key] = sum(vals)
        elif key in _WORST:
            out[key] = max(vals)
        elif isinstance(first, bool | str) or key == "per_account":
            out[key] = runs[-1][key]
        elif isinstance(first, int | float):
            # A number the same in every burst is the row's own (accounts, processes): as it is.
            out[key] = first if all(v == first for v in vals) else _median(vals)
        elif isinstance(first, list):
            out[key] = [x for r in runs for x in r[key]]
        elif isinstance(first, dict):
            out[key] = {k: _median([r[key][k] for r in runs if r[key].get(k) is not None]) for k in first}
        else:
            out[key] = runs[-1][key]
    out["repeats"] = len(runs)
    out["repeat_runs"] = [{"cap_use_min_pct": r.get("cap_use_min_pct"),
                           "p99_ms": (r.get("latency_first_window_ms") or {}).get("p99"),
                           "loadavg_1m": r.get("loadavg_1m")} for r in runs]
    return out
