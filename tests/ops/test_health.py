"""Health is judged from a snapshot alone: each rule is a pure-function test."""

from __future__ import annotations

import copy
from typing import Any

from common.health import Thresholds, evaluate

NOW_MS = 1_764_080_000_000


def healthy_snapshot() -> dict[str, Any]:
    """Two accounts logged in, every queue consumed, the feed fresh, Beat and receiver up."""
    accounts = {}
    for name in ("a1", "a2"):
        accounts[name] = {
            "broker": "x",
            "token": {"present": True, "issued_at_ms": NOW_MS - 3_600_000, "expires_at_ms": NOW_MS + 8 * 3_600_000},
            "login_error": None,
            "queues": [f"orders.{name}", f"orders.{name}.urgent"],
            "limiter": {"orders": {"10/s": 0}},
            "backoff_s": {},
            "stats": {},
            "feed_subscriptions": 2,
        }
    return {
        "now_ms": NOW_MS,
        "accounts": accounts,
        "queues": {q: {"depth": 0} for q in ("orders.a1", "orders.a1.urgent", "orders.a2", "orders.a2.urgent", "auth", "default")},
        "workers": {
            "orders-a1@h": {"queues": ["orders.a1", "orders.a1.urgent"]},
            "orders-a2@h": {"queues": ["orders.a2", "orders.a2.urgent"]},
            "auth@h": {"queues": ["auth", "default"]},
        },
        "feed": [
            {"account": "a1", "socket": 0, "connected": True, "last_frame_age_s": 0.3},
            {"account": "a2", "socket": 0, "connected": True, "last_frame_age_s": 0.8},
        ],
        "order_sockets": [],
        "receiver": {"present": True, "last_postback_age_s": 5.0},
        "beat": {"heartbeat_age_s": 2.0, "lock_held": True},
        "errors": [],
    }


def errors_of(snapshot: dict[str, Any], **thresholds: float) -> list[str]:
    return [p.component for p in evaluate(snapshot, Thresholds(**thresholds)).errors]


def test_a_fully_working_stack_is_healthy() -> None:
    h = evaluate(healthy_snapshot())
    assert h.healthy, h.problems
    assert h.problems == []


def test_a_missing_token_is_unhealthy() -> None:
    s = healthy_snapshot()
    s["accounts"]["a2"]["token"] = {"present": False}
    h = evaluate(s)
    assert not h.healthy
    assert [p.component for p in h.errors] == ["token:a2"]


def test_an_expired_token_is_unhealthy_and_one_about_to_expire_is_a_warning() -> None:
    s = healthy_snapshot()
    s["accounts"]["a1"]["token"]["expires_at_ms"] = NOW_MS - 1
    assert errors_of(s) == ["token:a1"]

    s = healthy_snapshot()
    s["accounts"]["a1"]["token"]["expires_at_ms"] = NOW_MS + 60_000
    h = evaluate(s)
    assert h.healthy
    assert [(p.level, p.component) for p in h.problems] == [("warning", "token:a1")]


def test_a_stalled_feed_socket_is_unhealthy() -> None:
    s = healthy_snapshot()
    s["feed"][1]["last_frame_age_s"] = 11.0
    assert errors_of(s, feed_stall_s=10.0) == ["feed:a2:0"]
    assert errors_of(s, feed_stall_s=30.0) == []


def test_a_disconnected_feed_socket_or_no_socket_for_subscriptions_is_unhealthy() -> None:
    s = healthy_snapshot()
    s["feed"][0]["connected"] = False
    assert errors_of(s) == ["feed:a1:0"]

    s = healthy_snapshot()
    s["feed"] = [f for f in s["feed"] if f["account"] != "a2"]
    assert errors_of(s) == ["feed:a2"]

    s["accounts"]["a2"]["feed_subscriptions"] = 0  # nothing asked for: no feed needed
    assert errors_of(s) == []


def test_a_queue_without_a_consumer_is_unhealthy() -> None:
    s = healthy_snapshot()
    s["workers"]["orders-a1@h"]["queues"] = ["orders.a1"]  # the urgent lane lost its consumer
    assert errors_of(s) == ["queue:orders.a1.urgent"]

    s = healthy_snapshot()
    del s["workers"]["auth@h"]
    h = evaluate(s)
    assert [p.component for p in h.errors] == ["queue:auth"]
    assert "queue:default" in [p.component for p in h.problems if p.level == "warning"]


def test_no_worker_answering_means_no_consumer_anywhere() -> None:
    s = healthy_snapshot()
    s["workers"] = None
    errs = errors_of(s)
    assert set(errs) == {"queue:orders.a1", "queue:orders.a1.urgent", "queue:orders.a2", "queue:orders.a2.urgent", "queue:auth"}


def test_warnings_do_not_make_it_unhealthy() -> None:
    s = healthy_snapshot()
    s["receiver"] = {"present": False}
    s["beat"] = {"heartbeat_age_s": None, "lock_held": False}
    s["accounts"]["a1"]["backoff_s"] = {"orders": 0.7}
    s["accounts"]["a1"]["login_error"] = {"at_ms": NOW_MS, "type": "LoginFailed", "message": "bad TOTP"}
    s["order_sockets"] = [{"account": "a2", "connected": False}]
    h = evaluate(s)
    assert h.healthy
    assert {p.component for p in h.problems} == {"receiver", "beat", "limiter:a1:orders", "login:a1", "order-socket:a2"}


def test_a_login_error_older_than_the_token_is_history_not_a_warning() -> None:
    s = healthy_snapshot()
    s["accounts"]["a1"]["login_error"] = {"at_ms": NOW_MS - 7_200_000, "type": "LoginFailed", "message": "x"}
    assert evaluate(s).problems == []


def test_evaluate_does_not_modify_the_snapshot() -> None:
    s = healthy_snapshot()
    s["workers"] = None
    before = copy.deepcopy(s)
    evaluate(s)
    assert s == before


def test_a_redis_that_may_evict_or_forget_is_a_warning() -> None:
    s = healthy_snapshot()
    s["redis"] = {"appendonly": "no", "maxmemory_policy": "allkeys-lru"}
    h = evaluate(s)
    assert h.healthy
    assert [p.component for p in h.problems] == ["redis", "redis"]
    s["redis"] = {}  # CONFIG refused (managed Redis): nothing to say
    assert evaluate(s).problems == []


def test_credentials_in_free_text_are_scrubbed() -> None:
    from common.health import scrub

    text = "ws://h/t?api_key=k&access_token=abc123XYZ failed; Authorization: Bearer eyJhbGciOi.x.y; token k:s3cr3tAT"
    out = scrub(text)
    assert "abc123XYZ" not in out and "eyJhbGciOi" not in out and "s3cr3tAT" not in out
    assert "access_token=***" in out and "api_key=k" in out
    assert scrub("disconnected: new token version 2; reconnecting") == "disconnected: new token version 2; reconnecting"


def test_an_order_seen_at_the_broker_after_our_not_there_verdict_is_an_alarm() -> None:
    """Issue 15 item 2: a fill after our own FAILED/EXPIRED verdict is counted; status must show
    it, since the strategy was told the order never reached the market."""
    s = healthy_snapshot()
    name = next(iter(s["accounts"]))
    s["accounts"][name]["stats"] = {"verdict_overturned": 1}
    assert f"orders:{name}" in errors_of(s)
