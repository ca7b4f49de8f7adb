"""bench/scalestats.py: what the scale benchmark reads out of the paper broker's request log."""

from __future__ import annotations

from typing import Any

from bench.scalestats import (
    account_burst,
    fanout_signal,
    latencies_ms,
    order_class,
    row_summary,
    slots_behind,
)

MS = 1_000_000
S = 1_000 * MS


def req(t_ms: float, method: str = "POST", tag: str | None = None, user: str = "U1", status: int = 200,
        endpoint_class: str = "orders") -> dict[str, Any]:
    return {"arrival_ns": int(t_ms * MS), "method": method, "tag": tag, "user_id": user, "status": status,
            "endpoint_class": endpoint_class}


def test_order_class_keeps_one_users_place_modify_cancel_in_arrival_order() -> None:
    log = [req(30, "DELETE"), req(10), req(20, "GET"), req(5, user="U2"), req(15, endpoint_class="portfolio"),
           req(25, "PUT")]
    got = order_class(log, "U1")
    assert [(e["arrival_ns"] // MS, e["method"]) for e in got] == [(10, "POST"), (25, "PUT"), (30, "DELETE")]


def test_slots_behind_counts_placements_between_the_cancels_enqueue_and_its_arrival() -> None:
    # Given placements at 0..90 ms, the cancel enqueued at 25 ms and arriving at 62 ms
    reqs = [req(t) for t in (0, 10, 20, 30, 40, 50, 60)] + [req(62, "DELETE")] + [req(70), req(80)]
    reqs.sort(key=lambda e: e["arrival_ns"])
    # Then the placements at 30, 40, 50 and 60 went before it
    assert slots_behind(reqs, 25 * MS) == 4
    # And a cancel that went first waited behind none
    assert slots_behind([req(5, "DELETE"), req(6)], 0) == 0


def test_slots_behind_is_none_when_the_cancel_never_arrived() -> None:
    assert slots_behind([req(10), req(20)], 0) is None
    # a DELETE before the enqueue is some earlier cancel, not this one
    assert slots_behind([req(1, "DELETE"), req(20)], 5 * MS) is None


def test_latencies_follow_enqueue_order_and_first_takes_the_earliest_enqueued() -> None:
    enq = {"a": 0, "b": 1 * MS, "c": 2 * MS}
    reqs = [req(7, tag="b"), req(5, tag="a"), req(1000, tag="c"), req(8, tag="x")]
    assert latencies_ms(enq, reqs) == [5.0, 6.0, 998.0]
    assert latencies_ms(enq, reqs, first=2) == [5.0, 6.0]
    # an order that never arrived is left out, not counted as zero
    assert latencies_ms({**enq, "d": 3 * MS}, reqs) == [5.0, 6.0, 998.0]


def _burst(n: int, every_ms: float, t0_ms: float = 0) -> tuple[list[dict[str, Any]], dict[str, int]]:
    reqs = [req(t0_ms + i * every_ms, tag=f"o{i}") for i in range(n)]
    return reqs, {f"o{i}": int(t0_ms * MS) for i in range(n)}


def test_account_burst_at_the_cap() -> None:
    # Given 20 orders enqueued at once and sent 10 at once, then 10 more a second later
    reqs = [req(i, tag=f"o{i}") for i in range(10)] + [req(1001 + i, tag=f"o{10 + i}") for i in range(10)]
    enq = {f"o{i}": 0 for i in range(20)}
    got = account_burst(reqs, enq, cap=10)
    # Then: 10 in any second, every order once, the cap used, nothing refused
    assert got["max_in_1s"] == 10 and got["placed_tags"] == 20 and got["duplicate_tags"] == 0
    assert got["refused"] == 0 and got["cap_use"] >= 0.95
    assert got["latency_first_ms"] == [float(i) for i in range(10)]
    assert got["slots_behind"] is None and not got["cancel_sent"]


def test_account_burst_of_a_starving_sender_and_a_refusal() -> None:
    # Given 20 orders sent at 5/s against a 10/s cap, one refused by the broker
    reqs, enq = _burst(20, 200)
    reqs[3]["status"] = 429
    got = account_burst(reqs, enq, cap=10)
    # Then half the cap is used and the refusal is counted
    assert 0.45 < got["cap_use"] < 0.55
    assert got["refused"] == 1


def test_row_summary_adds_the_accounts_up() -> None:
    good_reqs = [req(i, tag=f"o{i}") for i in range(10)] + [req(1001 + i, tag=f"o{10 + i}") for i in range(10)]
    good = account_burst(good_reqs, {f"o{i}": 0 for i in range(20)}, cap=10)
    slow_reqs, slow_enq = _burst(20, 200)
    slow_reqs.append(req(50, "DELETE"))
    slow_reqs.sort(key=lambda e: e["arrival_ns"])
    slow = account_burst(slow_reqs, slow_enq, cap=10, cancel_enqueued_ns=0)
    lost = account_burst([], {"z": 0}, cap=10, cancel_enqueued_ns=0)
    got = row_summary({"a": good, "b": slow, "c": lost})
    assert got["accounts"] == 3 and got["expected"] == 20 + 21 + 2 and got["arrived"] == 41
    assert got["unplaced"] == 2
    assert got["slots_behind"] == [0]  # b's cancel (50 ms) went before its next placement (200 ms)
    assert got["cancels_missing"] == ["c"]
    assert got["cap_use_min_pct"] == 0.0 and got["cap_use_worst_account"] == "c"
    assert got["accounts_below_95_pct"] == 2
    assert got["latency_first_window_ms"]["p50"] is not None


def test_fanout_signal_times_the_last_child_and_names_the_missing() -> None:
    children = {"a1": "c1", "a2": "c2", "a3": "c3"}
    got = fanout_signal(100 * MS, children, {"c1": 120 * MS, "c2": 180 * MS, "c3": 150 * MS})
    assert got == {"last_ms": 80.0, "first_ms": 20.0, "missing": [], "children": 3}
    missing = fanout_signal(0, children, {"c1": 1})
    assert missing["last_ms"] is None and missing["missing"] == ["a2", "a3"]


def test_the_cancel_takes_a_slot_of_the_first_window() -> None:
    # Given 20 orders at once and a cancel behind them: the cancel goes in the first second
    reqs = [req(i, tag=f"o{i}") for i in range(9)] + [req(9, "DELETE")]
    reqs += [req(1001 + i, tag=f"o{9 + i}") for i in range(10)] + [req(2001, tag="o19")]
    got = account_burst(reqs, {f"o{i}": 0 for i in range(20)}, cap=10, cancel_enqueued_ns=0)
    # Then the first window's latencies are the 9 placements that went with it
    assert got["latency_first_ms"] == [float(i) for i in range(9)]
    assert got["slots_behind"] == 8 and got["max_in_1s"] == 10  # o1..o8: o0 arrived as it was enqueued


def test_repeated_bursts_of_a_row_merge_to_totals_worsts_and_medians() -> None:
    from bench.scalestats import merge_repeats

    def run(use: float, mx: int, rss: float, behind: list[int], p99: float) -> dict[str, Any]:
        return {"mode": "pooled", "accounts": 10, "processes": 1, "rss_mb_peak": rss, "cpu_s": use / 10,
                "expected": 210, "arrived": 210, "refused": 0, "max_in_1s": mx, "cap_use_min_pct": use,
                "slots_behind": behind, "cancels_missing": [], "latency_first_window_ms": {"p50": 10.0, "p99": p99},
                "per_account": {"kite1": [use]}, "cap_use_worst_account": "kite1"}

    got = merge_repeats([run(90.0, 10, 70.0, [1], 50.0), run(99.0, 9, 72.0, [0, 2], 30.0), run(95.0, 10, 71.0, [], 40.0)])
    assert got["repeats"] == 3 and got["expected"] == 630 and got["processes"] == 1
    # the row's own numbers, the same in every burst, stay as they are: 10 accounts, not 10.0
    two = merge_repeats([run(90.0, 10, 70.0, [1], 50.0), run(99.0, 9, 72.0, [0, 2], 30.0)])
    assert type(two["accounts"]) is int and type(two["processes"]) is int and two["accounts"] == 10
    assert got["max_in_1s"] == 10 and got["rss_mb_peak"] == 72.0  # the worst
    assert got["cap_use_min_pct"] == 95.0 and got["latency_first_window_ms"] == {"p50": 10.0, "p99": 40.0}
    assert got["slots_behind"] == [1, 0, 2]
    assert got["per_account"] == {"kite1": [95.0]} and got["mode"] == "pooled"
    assert [r["cap_use_min_pct"] for r in got["repeat_runs"]] == [90.0, 99.0, 95.0]
    # a single burst is the row as it is
    assert merge_repeats([run(90.0, 10, 70.0, [1], 50.0)])["cap_use_min_pct"] == 90.0
