"""``brokergate metrics serve``: scraped over HTTP from a real Redis seeded with what the
processes write, parsed with Prometheus' own text parser; the Grafana dashboard charts only
metrics that exist."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from prometheus_client.parser import text_string_to_metric_families

from brokergate import cli, metrics
from common import keys, orderstore
from common.models import Order
from common.settings import parse_accounts
from tests.fixtures.accounts import account_toml

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = account_toml("k1", env="MET_K1", caps={"orders": ["10/s", "400/min"]}) + account_toml(
    "a1", "angel", "A123456", "key2", env="MET_A1"
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def accounts() -> dict[str, Any]:
    return parse_accounts(ACCOUNTS, cli._LenientEnv(os.environ))  # no secret: the exporter needs none


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    samples: Samples = {}
    kinds: dict[str, str] = {}
    for fam in text_string_to_metric_families(text):
        kinds[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, kinds


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def server(r: redis_lib.Redis) -> Iterator[metrics.MetricsServer]:
    srv = metrics.MetricsServer("127.0.0.1", 0, r=r, accounts=accounts).start()
    yield srv
    srv.stop()


def seed(r: redis_lib.Redis) -> None:
    """What the workers, feed, receiver and logins write, by the keys of common/keys.py."""
    sec, usec = r.time()
    now_ms, now_us = int(sec) * 1000 + int(usec) // 1000, int(sec) * 1_000_000 + int(usec)
    r.hset(keys.token("k1"), mapping={"issued_at_ms": now_ms - 3_600_000, "expires_at_ms": now_ms + 7_200_000, "version": 4})
    r.hset(keys.login_error("a1"), mapping={"at_ms": now_ms - 1000, "type": "LoginFailed", "message": "wrong TOTP"})
    scope = accounts()["k1"].limit_scope()  # the limiter counts where the broker counts (issue 15 item 5)
    r.zadd(keys.limit(scope, "orders"), {f"s{i}": now_us - 200_000 - i * 1000 for i in range(3)})
    r.zadd(keys.limit(scope, "orders"), {"old": now_us - 30_000_000})  # in the minute window only
    r.set(keys.backoff(scope, "orders"), 1, px=5000)
    r.hset(keys.stats("k1"), mapping={"placed": 7, "rate_limited": 1, "expired": 2})
    new, sending = (Order(account="k1", exchange="NSE", symbol="INFY", side="BUY", quantity=1) for _ in range(2))
    orderstore.create(r, new)
    orderstore.create(r, sending)
    orderstore.claim(r, sending.client_order_id, "a1")
    r.lpush(keys.orders_queue("k1"), "m1", "m2")
    r.hset(keys.feed_heartbeat("k1", 0), mapping={
        "account": "k1", "socket": 0, "connected": 1, "last_frame_ms": now_ms - 500, "ticks": 1234, "frames": 900,
        "tick_rate": 56.5, "reconnects": 2, "stalls": 1, "malformed": 0, "refused": 0, "instruments": 3, "p99_us": 2750,
    })  # fmt: skip
    r.hset(keys.order_socket_heartbeat("a1"), mapping={"connected": 0, "last_frame_ms": now_ms - 4000,
                                                       "messages": 9, "reconnects": 3})  # fmt: skip
    r.hset(keys.RECEIVER_HEARTBEAT, mapping={"started": now_ms, "last_postback_ms": now_ms - 2000,
                                             "accepted": 10, "refused": 2, "duplicates": 1})  # fmt: skip


def test_a_scrape_reports_what_operators_chart(r: redis_lib.Redis, server: metrics.MetricsServer) -> None:
    # Given a Redis holding every process's heartbeats and counters
    seed(r)
    # When Prometheus scrapes the endpoint
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as resp:
        ctype = resp.headers["Content-Type"]
        text = resp.read().decode()
    # Then it is the text format Prometheus' own parser reads
    assert ctype.startswith("text/plain; version=0.0.4")
    s, kinds = parse(text)
    assert value(s, "brokergate_up") == 1
    # tokens and logins
    assert value(s, "brokergate_token_present", account="k1", broker="kite") == 1
    assert value(s, "brokergate_token_present", account="a1", broker="angel") == 0
    assert 3599 <= value(s, "brokergate_token_age_seconds", account="k1") <= 3700
    assert 7000 <= value(s, "brokergate_token_expires_in_seconds", account="k1") <= 7200
    assert value(s, "brokergate_login_failing", account="a1", type="LoginFailed") == 1
    # the limiter per account, class and window, against its cap; its back-off
    assert value(s, "brokergate_limiter_requests", account="k1", **{"class": "orders"}, window="1s") == 3
    assert value(s, "brokergate_limiter_requests", account="k1", **{"class": "orders"}, window="1m") == 4
    assert value(s, "brokergate_limiter_cap", account="k1", **{"class": "orders"}, window="1m") == 400
    assert 0 < value(s, "brokergate_limiter_backoff_seconds", account="k1", **{"class": "orders"}) <= 5
    # order outcomes (counters) and the orders in flight by state
    assert kinds["brokergate_events"] == "counter"
    assert value(s, "brokergate_events_total", account="k1", event="placed") == 7
    assert value(s, "brokergate_events_total", account="k1", event="rate_limited") == 1
    assert value(s, "brokergate_orders_active", account="k1", state="NEW") == 1
    assert value(s, "brokergate_orders_active", account="k1", state="SENDING") == 1
    # queues
    assert value(s, "brokergate_queue_depth", queue="orders.k1") == 2
    assert value(s, "brokergate_queue_depth", queue="orders.k1.urgent") == 0
    # the feed: ticks/s and receive -> publish latency per socket, reconnects
    sock = {"account": "k1", "socket": "0"}
    assert value(s, "brokergate_feed_connected", **sock) == 1
    assert value(s, "brokergate_feed_ticks_per_second", **sock) == 56.5
    assert value(s, "brokergate_feed_publish_latency_p99_seconds", **sock) == pytest.approx(0.00275)
    assert value(s, "brokergate_feed_ticks_total", **sock) == 1234
    assert value(s, "brokergate_feed_reconnects_total", **sock) == 2
    assert 0.4 <= value(s, "brokergate_feed_last_frame_age_seconds", **sock) < 5
    assert value(s, "brokergate_order_socket_connected", account="a1") == 0
    assert value(s, "brokergate_order_socket_reconnects_total", account="a1") == 3
    # postbacks accepted and refused
    assert value(s, "brokergate_postbacks_total", result="accepted") == 10
    assert value(s, "brokergate_postbacks_total", result="refused") == 2
    assert value(s, "brokergate_receiver_up") == 1
    assert value(s, "brokergate_beat_lock_held") == 0
    # and nothing secret: no token value, no login message text
    assert "wrong TOTP" not in text


def test_an_empty_deployment_scrapes_cleanly_and_a_dead_redis_is_up_0(r: redis_lib.Redis,
                                                                      server: metrics.MetricsServer) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as resp:
        s, _ = parse(resp.read().decode())
    assert value(s, "brokergate_up") == 1 and value(s, "brokergate_receiver_up") == 0
    assert value(s, "brokergate_token_present", account="k1", broker="kite") == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10) as resp:
        assert resp.status == 200
    # Given a Redis that does not answer
    dead = redis_lib.Redis(host="127.0.0.1", port=1, decode_responses=True, socket_connect_timeout=0.5)
    s, _ = parse(metrics.scrape(dead, accounts()))
    assert value(s, "brokergate_up") == 0


def test_label_values_are_escaped() -> None:
    fam = metrics.Family("x", "gauge", "h")
    fam.add(1, queue='a"b\\c\nd')
    s, _ = parse(metrics.render([fam]))
    assert value(s, "x", queue='a"b\\c\nd') == 1


def test_the_grafana_dashboard_charts_only_exported_metrics() -> None:
    # Given every family the exporter can emit (a fully seeded collect)
    names: set[str] = set()
    for fam in metrics.collect(_full_snapshot(), accounts(), {("k1", "NEW"): 1}):
        names.add(fam.name)
    names.add("brokergate_scrape_duration_seconds")
    dashboard = json.loads((REPO / "ops" / "grafana" / "brokergate.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    used = {m for e in exprs for m in re.findall(r"\bbrokergate_[a-z0-9_]+", e)}
    assert used <= names, f"the dashboard charts metrics the exporter never emits: {used - names}"
    # and it charts every figure of the issue
    for wanted in ("brokergate_feed_ticks_per_second", "brokergate_feed_publish_latency_p99_seconds",
                   "brokergate_feed_reconnects_total", "brokergate_limiter_requests", "brokergate_queue_depth",
                   "brokergate_orders_active", "brokergate_events_total", "brokergate_token_age_seconds",
                   "brokergate_login_failing", "brokergate_postbacks_total"):
        assert wanted in used, wanted


def _full_snapshot() -> dict[str, Any]:
    acct = {"broker": "kite", "token": {"present": True, "age_s": 1, "expires_at_ms": 2, "issued_at_ms": 0},
            "login_error": {"at_ms": 1, "type": "LoginFailed"}, "limiter": {"orders": {"10/s": 1, "400/min": 1}},
            "backoff_s": {}, "stats": {"placed": 1}}
    return {
        "now_ms": 1, "accounts": {"k1": acct}, "queues": {"orders.k1": {"depth": 0}}, "unacked": 0,
        "feed": [{"account": "k1", "socket": 0, "connected": True, "last_frame_age_s": 0, "tick_rate": 1, "p99_us": 1,
                  "instruments": 1, "ticks": 1, "frames": 1, "reconnects": 0, "stalls": 0, "malformed": 0, "refused": 0}],
        "order_sockets": [{"account": "k1", "connected": True, "last_frame_age_s": 1, "messages": 1, "reconnects": 0}],
        "receiver": {"present": True, "accepted": 1, "refused": 0, "duplicates": 0, "last_postback_ms": 1,
                     "last_postback_age_s": 1},
        "beat": {"heartbeat_age_s": 1, "lock_held": True},
    }  # fmt: skip
