"""The process, the control API, the request log, caps over several windows, and latency."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pyotp
import requests
from kiteconnect import exceptions as kex

from tests.fixtures.paper import PaperBroker, kite_session, start_paper_process

ORDER = {"exchange": "NSE", "tradingsymbol": "SBIN", "transaction_type": "BUY", "quantity": 1,
         "product": "CNC", "order_type": "LIMIT", "price": 10}


def test_starts_fast_with_config_users_that_survive_reset(tmp_path: Path) -> None:
    secret = pyotp.random_base32()
    config = tmp_path / "paper.toml"
    config.write_text(
        "[[users]]\n"
        'broker = "kite"\nuser_id = "CF1111"\npassword = "pw"\n'
        f'totp_secret = "{secret}"\napi_key = "cfkey"\napi_secret = "cfsecret"\n'
        'caps = { orders = ["3/s", "200/min"] }\n'
    )
    started = time.monotonic()
    proc, url = start_paper_process(seed=3, extra_args=["--config", str(config)])
    try:
        assert time.monotonic() - started < 2.0
        assert requests.get(f"{url}/_paper/health", timeout=5).json()["seed"] == 3
        requests.post(f"{url}/_paper/reset", timeout=5).raise_for_status()
        users = requests.get(f"{url}/_paper/users", timeout=5).json()
        assert [(u["user_id"], u["caps"]["orders"]) for u in users] == [("CF1111", ["3/s", "200/min"])]
    finally:
        proc.terminate()
        proc.wait(5)


def test_reset_forgets_logins_half_done() -> None:
    """A reset forgets every login under way, Fyers' request keys, sessions and auth codes as
    Kite's login requests (a config user survives a reset: its old keys must not)."""
    from paper.state import PaperState

    state = PaperState(seed=1)
    for kind in ("steps", "sessions", "codes"):
        state.fyers_login[kind]["key"] = (object(), "otp", time.time() + 60)  # type: ignore[assignment]
    state.reset()
    assert state.fyers_login == {"steps": {}, "sessions": {}, "codes": {}}


def test_keep_alive_round_trip_is_not_delayed_by_nagle(paper: PaperBroker) -> None:
    # 20 orders back to back: a registered algo, so the 2026 rule's 10/s does not stop the loop.
    user = paper.add_user(broker="kite", caps={"orders": ["1000/s"], "orderbook": ["1000/s"]}, registered_algo=True)
    kite = kite_session(paper, user)
    http = requests.Session()
    headers = {"X-Kite-Version": "3", "Authorization": f"token {user.api_key}:{kite.access_token}"}
    samples = []
    for _ in range(20):
        t0 = time.perf_counter()
        http.post(f"{paper.url}/orders/regular", data=ORDER, headers=headers, timeout=5).raise_for_status()
        samples.append(time.perf_counter() - t0)
    # Nagle against delayed ACK would put every sample near 40 ms.
    assert statistics.median(samples) < 0.015


def test_request_log_in_arrival_order_with_classes_statuses_and_tags(paper: PaperBroker) -> None:
    user = paper.add_user(broker="kite", caps={"orders": ["1000/s"], "orderbook": ["1000/s"]})
    kite = kite_session(paper, user)
    kite.place_order(variety="regular", tag="T1", **ORDER)
    kite.orders()
    requests.get(f"{paper.url}/orders", timeout=5)  # no token: 403, no user
    entries = paper.requests()
    assert [e["arrival_ns"] for e in entries] == sorted(e["arrival_ns"] for e in entries)
    assert {tuple(sorted(e)) for e in entries} == {
        ("arrival_ns", "broker", "client", "endpoint_class", "method", "path", "status", "tag", "user_id")
    }
    assert {e["client"] for e in entries} == {"127.0.0.1"}  # the address each request came from
    summary = [(e["endpoint_class"], e["method"], e["path"], e["status"], e["tag"], e["user_id"]) for e in entries]
    assert summary[:3] == [
        ("login", "POST", "/api/login", 200, None, user.user_id),
        ("login", "POST", "/api/twofa", 200, None, user.user_id),
        ("login", "GET", "/connect/login", 302, None, user.user_id),
    ]
    assert summary[-3:] == [
        ("orders", "POST", "/orders/regular", 200, "T1", user.user_id),
        ("orderbook", "GET", "/orders", 200, None, user.user_id),
        ("orderbook", "GET", "/orders", 403, None, None),
    ]
    (order,) = paper.orders()
    assert order["tag"] == "T1" and order["broker"] == "kite" and order["user_id"] == user.user_id
    # Filters, for long runs.
    newer = requests.get(f"{paper.url}/_paper/requests",
                         params={"since_ns": entries[-2]["arrival_ns"], "broker": "kite"}, timeout=5).json()
    assert newer == entries[-1:]
    assert requests.get(f"{paper.url}/_paper/orders", params={"tag": "nope"}, timeout=5).json() == []
    paper.reset()
    assert paper.requests() == [] and paper.orders() == []


def test_caps_hold_in_every_window(paper: PaperBroker) -> None:
    # The caps alone: the polls below ask faster than the 2026 rule's 10/s, which a registered algo may.
    user = paper.add_user(broker="kite", caps={"orders": ["2/s", "3/min"]}, registered_algo=True)
    kite = kite_session(paper, user)
    kite.place_order(variety="regular", **ORDER)
    kite.place_order(variety="regular", **ORDER)
    try:
        kite.place_order(variety="regular", **ORDER)
        raise AssertionError("third order within a second was admitted")
    except kex.NetworkException:
        pass

    def third_admitted() -> bool:
        try:
            kite.place_order(variety="regular", **ORDER)
        except kex.NetworkException:
            return False
        return True

    paper.wait_for(third_admitted, timeout_s=2.0, interval_s=0.05)  # once the 1 s window slides
    # The per-minute window (3) now refuses, however long the per-second window waits.
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        assert not third_admitted()
        time.sleep(0.1)
    admitted = [e["arrival_ns"] for e in paper.requests() if e["endpoint_class"] == "orders" and e["status"] == 200]
    assert len(admitted) == 3
    assert admitted[1] - admitted[0] < 1e9 and admitted[2] - admitted[0] >= 1e9


def test_unknown_user_fields_are_refused(paper: PaperBroker) -> None:
    r = requests.post(f"{paper.url}/_paper/users", json={"broker": "kite", "user_id": "X"}, timeout=5)
    assert r.status_code == 400
    r = requests.post(f"{paper.url}/_paper/users", json={"broker": "kite", "user_id": "X", "password": "p",
                                                         "totp_secret": "JBSWY3DPEHPK3PXP", "api_key": "k",
                                                         "caps": {"orders": ["10/fortnight"]}}, timeout=5)
    assert r.status_code == 400


def test_unknown_paths_answer_in_the_brokers_dialect_and_are_logged(paper: PaperBroker) -> None:
    r = requests.get(f"{paper.url}/portfolio/nothing", timeout=5)
    assert r.status_code == 404 and r.json()["error_type"] == "GeneralException"
    r = requests.post(f"{paper.url}/rest/secure/angelbroking/nothing/v1/x", json={}, timeout=5)
    assert r.status_code == 404 and r.json()["status"] is False
    assert [(e["broker"], e["status"]) for e in paper.requests()] == [("kite", 404), ("angel", 404)]
