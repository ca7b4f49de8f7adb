"""Every fault kind the HTTP side implements, seen happening from a client."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from kiteconnect import exceptions as kex

from tests.fixtures.paper import PaperBroker, PaperUser, fresh_totp, kite_session

ROOMY = {"orders": ["1000/s"], "orderbook": ["1000/s"], "other": ["1000/s"], "login": ["1000/s"]}
ORDER = {"exchange": "NSE", "tradingsymbol": "SBIN", "transaction_type": "BUY", "quantity": 1,
         "product": "CNC", "order_type": "LIMIT", "price": 10}


def kite_headers(user: PaperUser, access_token: str) -> dict[str, str]:
    return {"X-Kite-Version": "3", "Authorization": f"token {user.api_key}:{access_token}"}


@pytest.fixture
def kite_user(paper: PaperBroker) -> tuple[PaperUser, Any]:
    user = paper.add_user(broker="kite", caps=ROOMY)
    return user, kite_session(paper, user)


def angel_login(paper: PaperBroker, user: PaperUser) -> str:
    r = requests.post(
        f"{paper.url}/rest/auth/angelbroking/user/v1/loginByPassword",
        json={"clientcode": user.user_id, "password": user.password, "totp": fresh_totp(user.totp_secret)},
        headers={"X-PrivateKey": user.api_key},
        timeout=5,
    )
    return str(r.json()["data"]["jwtToken"])


def test_accept_then_drop_creates_order_and_drops_connection(paper: PaperBroker, kite_user: Any) -> None:
    user, kite = kite_user
    paper.fault(kind="accept_then_drop", broker="kite", user_id=user.user_id, count=1)
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{paper.url}/orders/regular", data={**ORDER, "tag": "drop1"},
                      headers=kite_headers(user, kite.access_token), timeout=5)
    # The order exists at the broker exactly once, and the next request is answered normally.
    assert [o["status"] for o in paper.orders() if o["tag"] == "drop1"] == ["OPEN"]
    assert [o["tag"] for o in kite.orders()] == ["drop1"]
    assert [e["tag"] for e in paper.requests() if e["endpoint_class"] == "orders"] == ["drop1"]


def test_accept_then_drop_angel(paper: PaperBroker) -> None:
    user = paper.add_user(broker="angel", caps=ROOMY)
    jwt = angel_login(paper, user)
    paper.fault(kind="accept_then_drop", broker="angel")
    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"{paper.url}/rest/secure/angelbroking/order/v1/placeOrder",
            json={"variety": "NORMAL", "tradingsymbol": "SBIN-EQ", "symboltoken": "3045", "transactiontype": "BUY",
                  "exchange": "NSE", "ordertype": "LIMIT", "producttype": "DELIVERY", "duration": "DAY",
                  "price": "900", "quantity": "1", "ordertag": "angeldrop"},
            headers={"Authorization": f"Bearer {jwt}", "X-PrivateKey": user.api_key},
            timeout=5,
        )
    assert [o["status"] for o in paper.orders() if o["tag"] == "angeldrop"] == ["COMPLETE"]


def test_delay_holds_the_response(paper: PaperBroker, kite_user: Any) -> None:
    user, kite = kite_user
    paper.fault(kind="delay", broker="kite", user_id=user.user_id, count=1, delay_s=0.4)
    started = time.monotonic()
    kite.orders()
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    kite.orders()
    assert time.monotonic() - started < 0.3  # used up
    # A request delayed beyond the client's timeout is a client-side timeout.
    paper.fault(kind="delay", broker="kite", duration_s=1.0)
    with pytest.raises(requests.Timeout):
        requests.get(f"{paper.url}/orders", headers=kite_headers(user, kite.access_token), timeout=0.3)


def test_error_5xx_kite_and_angel(paper: PaperBroker, kite_user: Any) -> None:
    _user, kite = kite_user
    paper.fault(kind="error_5xx", broker="kite", count=2)
    for _ in range(2):
        with pytest.raises(kex.NetworkException) as info:
            kite.orders()
        assert info.value.code == 503
    kite.orders()
    angel = paper.add_user(broker="angel", caps=ROOMY)
    jwt = angel_login(paper, angel)
    paper.fault(kind="error_5xx", broker="angel", user_id=angel.user_id)
    r = requests.get(f"{paper.url}/rest/secure/angelbroking/order/v1/getOrderBook",
                     headers={"Authorization": f"Bearer {jwt}", "X-PrivateKey": angel.api_key}, timeout=5)
    assert r.status_code == 503 and r.json()["status"] is False and r.json()["errorcode"] == "AB1004"


def test_rate_limit_fault_gives_the_brokers_answer(paper: PaperBroker, kite_user: Any) -> None:
    _user, kite = kite_user
    paper.fault(kind="rate_limit", broker="kite", duration_s=30)
    for _ in range(3):
        with pytest.raises(kex.NetworkException, match="Too many requests") as info:
            kite.orders()
        assert info.value.code == 429
    angel = paper.add_user(broker="angel", caps=ROOMY)
    jwt = angel_login(paper, angel)
    paper.fault(kind="rate_limit", broker="angel", user_id=angel.user_id)
    r = requests.get(f"{paper.url}/rest/secure/angelbroking/order/v1/getOrderBook",
                     headers={"Authorization": f"Bearer {jwt}", "X-PrivateKey": angel.api_key}, timeout=5)
    assert r.status_code == 403 and r.text == "Access denied because of exceeding access rate"


def test_expire_tokens_invalidates_at_once_and_relogin_works(paper: PaperBroker, kite_user: Any) -> None:
    user, kite = kite_user
    kite.orders()
    paper.fault(kind="expire_tokens", broker="kite", user_id=user.user_id)
    with pytest.raises(kex.TokenException):
        kite.orders()
    assert kite_session(paper, user).orders() == []
    angel = paper.add_user(broker="angel", caps=ROOMY)
    jwt = angel_login(paper, angel)
    paper.fault(kind="expire_tokens", broker="angel")
    r = requests.get(f"{paper.url}/rest/secure/angelbroking/order/v1/getOrderBook",
                     headers={"Authorization": f"Bearer {jwt}", "X-PrivateKey": angel.api_key}, timeout=5)
    assert r.status_code == 401 and r.json()["errorCode"] == "AG8002"


def test_socket_kinds_are_stored_and_unknown_kind_is_400(paper: PaperBroker) -> None:
    for kind in ("drop_socket", "stall_socket", "malformed_frame"):
        paper.fault(kind=kind, broker="kite", count=1)
    active = requests.get(f"{paper.url}/_paper/faults", timeout=5).json()
    assert sorted(f["kind"] for f in active) == ["drop_socket", "malformed_frame", "stall_socket"]
    r = requests.post(f"{paper.url}/_paper/faults", json={"kind": "meteor", "broker": "kite"}, timeout=5)
    assert r.status_code == 400
    paper.reset()
    assert requests.get(f"{paper.url}/_paper/faults", timeout=5).json() == []


def test_faults_target_one_user_only(paper: PaperBroker, kite_user: Any) -> None:
    _user, kite = kite_user
    other = paper.add_user(broker="kite", user_id="PB9999", caps=ROOMY)
    other_kite = kite_session(paper, other)
    paper.fault(kind="error_5xx", broker="kite", user_id=other.user_id, count=1)
    kite.orders()  # not affected
    with pytest.raises(kex.NetworkException):
        other_kite.orders()


def test_error_5xx_count_is_failures_then_success_in_each_dialect(paper: PaperBroker, kite_user: Any) -> None:
    """``error_5xx`` with ``count`` N: N answers of the broker's own 503 (its error body, given
    before anything was placed), then the next request goes through."""
    user, kite = kite_user
    headers = kite_headers(user, kite.access_token)
    paper.fault(kind="error_5xx", broker="kite", user_id=user.user_id, count=2)
    answers = [requests.post(f"{paper.url}/orders/regular", data={**ORDER, "tag": f"u{i}"}, headers=headers,
                             timeout=5) for i in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].json()["error_type"] == "NetworkException"
    assert [o["tag"] for o in paper.orders()] == ["u2"]  # the 503s placed nothing


def test_error_5xx_with_a_gateway_status_acts_then_answers_bare(paper: PaperBroker, kite_user: Any) -> None:
    """``error_5xx`` with ``status`` 502: a proxy's bare page, after the broker acted: the order
    exists although the client saw a 502 (ambiguous, to be reconciled)."""
    user, kite = kite_user
    paper.fault(kind="error_5xx", broker="kite", user_id=user.user_id, status=502)
    r = requests.post(f"{paper.url}/orders/regular", data={**ORDER, "tag": "gw1"},
                      headers=kite_headers(user, kite.access_token), timeout=5)
    assert r.status_code == 502 and r.headers["content-type"].startswith("text/html") and "Bad Gateway" in r.text
    assert [o["tag"] for o in paper.orders()] == ["gw1"]
    assert [(e["status"], e["tag"]) for e in paper.requests() if e["endpoint_class"] == "orders"] == [(502, "gw1")]
    for bad in ({"kind": "error_5xx", "status": 404}, {"kind": "delay", "status": 502},
                {"kind": "error_5xx", "status": "x"}):
        got = requests.post(f"{paper.url}/_paper/faults", json={**bad, "broker": "kite"}, timeout=5)
        assert got.status_code == 400, bad
