"""``brokergate status --json`` / ``orders`` against a real Redis with seeded keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from brokergate import cli
from common import keys
from common import redis as bg_redis
from common import settings as bg_settings
from tests.fixtures.accounts import account_toml

ACCOUNTS = account_toml("k1", env="OPS_K1", caps={"orders": ["10/s", "400/min"]}) + account_toml(
    "a1", "angel", "A123456", "key2", env="OPS_A1"
)
ACCESS_TOKEN = "acc-tok-SECRET-1234567890"


class FakeInspect:
    def __init__(self, replies: dict[str, list[dict[str, str]]] | None) -> None:
        self.replies = replies

    def active_queues(self) -> dict[str, list[dict[str, str]]] | None:
        return self.replies


class FakeApp:
    """Stands in for workers.app: which workers answer and what they consume."""

    def __init__(self, replies: dict[str, list[str]] | None) -> None:
        self.replies = None if replies is None else {h: [{"name": q} for q in qs] for h, qs in replies.items()}
        self.conf = type("Conf", (), {"task_queues": None, "broker_transport_options": {}, "get": lambda self, k, d=None: d})()
        self.control = self

    def inspect(self, timeout: float = 1.0) -> FakeInspect:
        return FakeInspect(self.replies)


ALL_CONSUMED = {
    "orders-k1@h": ["orders.k1", "orders.k1.urgent"],
    "orders-a1@h": ["orders.a1", "orders.a1.urgent"],
    "auth@h": ["auth", "default"],
}


@pytest.fixture
def accounts_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Path:
    p = tmp_path / "accounts.toml"
    p.write_text(ACCOUNTS)
    monkeypatch.setenv("BROKERGATE_ACCOUNTS", str(p))
    for v in ("OPS_K1_PASSWORD", "OPS_K1_TOTP", "OPS_K1_SECRET", "OPS_A1_PASSWORD", "OPS_A1_TOTP"):
        monkeypatch.delenv(v, raising=False)  # status needs no secrets
    bg_settings.settings.cache_clear()
    bg_settings.accounts.cache_clear()
    bg_redis.reset_clients()
    yield p
    bg_settings.settings.cache_clear()
    bg_settings.accounts.cache_clear()


def now_ms(r: redis.Redis) -> int:
    s, us = r.time()
    return int(s) * 1000 + int(us) // 1000


def seed_healthy(r: redis.Redis) -> None:
    t = now_ms(r)
    for name in ("k1", "a1"):
        r.hset(keys.token(name), mapping={"access_token": ACCESS_TOKEN, "feed_token": "feed-SECRET-abcdef",
                                          "version": 1, "issued_at_ms": t - 60_000, "expires_at_ms": t + 3_600_000})  # fmt: skip
        r.pexpireat(keys.token(name), t + 3_600_000)
        r.hset(keys.feed_subs(name), "NSE:INFY", "quote")
        r.hset(keys.feed_heartbeat(name, 0), mapping={"connected": 1, "last_frame_ms": t - 200, "ticks": 500, "reconnects": 0})
    r.hset(keys.RECEIVER_HEARTBEAT, mapping={"started": t - 10_000, "last_postback_ms": t - 1000, "accepted": 3, "refused": 0})
    r.set(keys.BEAT_HEARTBEAT, t - 1000)
    r.rpush("orders.k1", "m1", "m2")
    r.rpush("orders.k1.urgent\x06\x163", "m3")  # a priority-suffixed kombu list
    r.zadd(keys.limit(keys.limit_scope("kite", "user", "AB1234"), "orders"), {"a": t * 1000 - 100, "b": t * 1000 - 200})


def run_status(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], app: Any, *extra: str) -> tuple[int, dict[str, Any]]:
    monkeypatch.setattr(cli, "celery_app", lambda: app)
    rc = cli.main(["status", "--json", *extra])
    out = capsys.readouterr().out
    return rc, json.loads(out)


def test_status_json_is_healthy_when_everything_reports(accounts_file: Path, r: redis.Redis, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    seed_healthy(r)
    rc, doc = run_status(monkeypatch, capsys, FakeApp(ALL_CONSUMED))
    assert doc["healthy"], doc["problems"]
    assert rc == 0
    snap = doc["snapshot"]
    assert snap["queues"]["orders.k1"]["depth"] == 2
    assert snap["queues"]["orders.k1.urgent"]["depth"] == 1
    assert snap["accounts"]["k1"]["token"]["present"]
    assert 3500 < snap["accounts"]["k1"]["token"]["ttl_s"] <= 3600
    assert snap["accounts"]["k1"]["limiter"]["orders"] == {"10/s": 2, "400/min": 2}
    assert snap["feed"][0]["last_frame_age_s"] < 5
    assert snap["receiver"]["accepted"] == 3
    assert snap["beat"]["heartbeat_age_s"] is not None
    assert ACCESS_TOKEN not in json.dumps(doc) and "feed-SECRET" not in json.dumps(doc)


def test_status_exits_1_when_a_token_is_missing(accounts_file: Path, r: redis.Redis, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    seed_healthy(r)
    r.delete(keys.token("a1"))
    rc, doc = run_status(monkeypatch, capsys, FakeApp(ALL_CONSUMED))
    assert rc == 1 and not doc["healthy"]
    assert [p["component"] for p in doc["problems"] if p["level"] == "error"] == ["token:a1"]


def test_status_exits_1_when_the_feed_is_stalled(accounts_file: Path, r: redis.Redis, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    seed_healthy(r)
    r.hset(keys.feed_heartbeat("k1", 0), "last_frame_ms", now_ms(r) - 30_000)
    rc, doc = run_status(monkeypatch, capsys, FakeApp(ALL_CONSUMED), "--feed-stall-s", "10")
    assert rc == 1
    assert [p["component"] for p in doc["problems"] if p["level"] == "error"] == ["feed:k1:0"]


def test_status_exits_1_when_no_worker_consumes_an_orders_queue(accounts_file: Path, r: redis.Redis,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    seed_healthy(r)
    workers = {h: qs for h, qs in ALL_CONSUMED.items() if not h.startswith("orders-a1")}
    rc, doc = run_status(monkeypatch, capsys, FakeApp(workers))
    assert rc == 1
    assert {p["component"] for p in doc["problems"] if p["level"] == "error"} == {"queue:orders.a1", "queue:orders.a1.urgent"}


def test_status_as_tables_says_healthy(accounts_file: Path, r: redis.Redis, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    seed_healthy(r)
    monkeypatch.setattr(cli, "celery_app", lambda: FakeApp(ALL_CONSUMED))
    monkeypatch.setenv("COLUMNS", "200")
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "HEALTHY" in out and "orders.k1.urgent" in out and ACCESS_TOKEN not in out


def test_orders_lists_recent_orders_newest_first(accounts_file: Path, r: redis.Redis,
                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    req = {"account": "k1", "exchange": "NSE", "symbol": "INFY", "side": "BUY", "quantity": 1}
    r.hset(keys.order("o1"), mapping={"state": "COMPLETE", "account": "k1", "request": json.dumps(req), "updated_ms": 2,
                                      "filled_quantity": 1, "average_price": "1573.70"})  # fmt: skip
    r.hset(keys.order("o2"), mapping={"state": "OPEN", "account": "a1", "request": json.dumps({**req, "account": "a1"}),
                                      "updated_ms": 3})  # fmt: skip
    assert cli.main(["orders", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(o["id"], o["state"], o["symbol"], o["fill_price"]) for o in rows] == [
        ("o2", "OPEN", "INFY", None), ("o1", "COMPLETE", "INFY", "1573.70"),
    ]
    assert cli.main(["orders", "--account", "k1", "--json"]) == 0
    assert [o["id"] for o in json.loads(capsys.readouterr().out)] == ["o1"]


def test_the_console_script_reports_unhealthy_with_nothing_running(accounts_file: Path, redis_url: str) -> None:
    # Given only Redis, with no token, worker, feed or Beat: `brokergate status --json` says why, exit 1
    exe = Path(sys.executable).with_name("brokergate")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "brokergate"]
    out = subprocess.run([*argv, "status", "--json", "--timeout-s", "0.3"], env={**os.environ, "BROKERGATE_REDIS_URL": redis_url},
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    errors = {p["component"] for p in doc["problems"] if p["level"] == "error"}
    assert {"token:k1", "token:a1", "queue:orders.k1", "queue:auth"} <= errors


def test_status_on_an_unreachable_redis_is_unhealthy_not_a_traceback(accounts_file: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from tests.fixtures.redis import free_port

    monkeypatch.setenv("BROKERGATE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    bg_settings.settings.cache_clear()
    bg_redis.reset_clients()
    rc, doc = run_status(monkeypatch, capsys, None)
    assert rc == 1 and doc["problems"][0]["component"] == "redis"


def test_status_gives_up_on_an_unreachable_redis_after_a_short_retry(accounts_file: Path, hangs_up: tuple[str, list[int]],
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A status answers now (an operator before the open, a container's healthcheck with its
    timeout): a Redis that hangs up on every connection is reported after about a second of
    retries, not after the 10 s a worker's client keeps trying through a failover."""
    from common.redisconf import retry_count

    url, accepted = hangs_up
    monkeypatch.setenv("BROKERGATE_REDIS_URL", url)
    bg_settings.settings.cache_clear()
    bg_redis.reset_clients()
    rc, doc = run_status(monkeypatch, capsys, None)
    assert rc == 1 and doc["problems"][0]["component"] == "redis"
    assert 1 <= len(accepted) <= 2 * (retry_count(cli.STATUS_REDIS_RETRY_S) + 1), len(accepted)


def test_login_logs_the_account_in_and_prints_no_secret(paper_accounts: dict[str, Any], r: redis.Redis,
                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    pytest.importorskip("workers.login")
    # Given a paper account with no token; when `brokergate login kite1`
    assert cli.main(["login", "kite1"]) == 0
    out = capsys.readouterr()
    # Then it has a token, and nothing secret was printed
    token = r.hgetall(keys.token("kite1"))
    assert token["access_token"]
    assert "kite1: logged in (token version" in out.out
    acct = paper_accounts["kite1"]
    for secret in [token["access_token"], *acct.secrets()]:
        assert secret not in out.out + out.err


def test_login_of_an_unknown_account_exits_2(paper_accounts: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["login", "nobody"]) == 2
    assert "unknown account 'nobody'" in capsys.readouterr().err


def test_feed_subscribe_asks_the_feed_for_instruments(accounts_file: Path, r: redis.Redis,
                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    pytest.importorskip("common.ticks")
    control = r.pubsub()
    control.subscribe(keys.FEED_CONTROL)
    assert control.get_message(timeout=5)["type"] == "subscribe"  # listening before the command runs
    assert cli.main(["feed", "subscribe", "NSE:INFY", "NSE:TCS", "--account", "k1", "--mode", "full"]) == 0
    assert r.hgetall(keys.feed_subs("k1")) == {"NSE:INFY": "full", "NSE:TCS": "full"}
    msg = control.get_message(timeout=5)
    assert msg and msg["type"] == "message" and msg["data"] == "k1"
    control.close()
    assert cli.main(["feed", "subscribe", "INFY", "--account", "k1"]) == 2
