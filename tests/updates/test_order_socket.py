"""Angel's order-update socket against the paper broker: live updates arrive through it, and an
update missed while it was down is seen after it reconnects (reconcile on every connect).

The reconcile here is the mechanism the Celery task ``brokergate.reconcile_account`` provides
in production, done in-test: read the broker's order book and feed each row through the same
one path (``on_broker_message(..., "reconcile")``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
import redis as redis_lib
import requests

from common.settings import Account
from feed import orderupdates
from feed.order_socket import OrderSocket, start_order_sockets
from tests.fixtures.accounts import logged_in
from tests.updates.conftest import new_order
from tests.updates.tcpproxy import TcpProxy

ORDER_API = "/rest/secure/angelbroking/order/v1"


def angel_headers(account: Account, jwt: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {jwt}", "Content-Type": "application/json", "Accept": "application/json",
        "X-UserType": "USER", "X-SourceID": "WEB", "X-ClientLocalIP": "127.0.0.1", "X-ClientPublicIP": "127.0.0.1",
        "X-MACAddress": "00:00:00:00:00:00", "X-PrivateKey": account.api_key,
    }  # fmt: skip


def place_market(account: Account, jwt: str, tag: str) -> str:
    body = {
        "variety": "NORMAL", "tradingsymbol": "SBIN-EQ", "symboltoken": "3045", "transactiontype": "BUY",
        "exchange": "NSE", "ordertype": "MARKET", "producttype": "INTRADAY", "duration": "DAY",
        "price": "0", "triggerprice": "0", "quantity": "1", "ordertag": tag,
    }  # fmt: skip
    resp = requests.post(
        f"{account.rest_url}{ORDER_API}/placeOrder", json=body, headers=angel_headers(account, jwt), timeout=5
    )
    resp.raise_for_status()
    assert resp.json()["status"] is True, resp.text
    return str(resp.json()["data"]["orderid"])


@pytest.fixture
def angel(make_accounts: Any, redis_url: str) -> tuple[Account, str]:
    # The in-test reconciler reads the order book on every connect: lift Angel's 1/s cap for it.
    acct = make_accounts(kite=1, angel=1, caps={"orderbook": ["50/s"]})["angel1"]
    token = logged_in([acct])["angel1"]
    return acct, token.access_token


@pytest.fixture
def reconciler(angel: tuple[Account, str]) -> Iterator[list[str]]:
    """Reconcile requests, each served at once from the paper broker's order book."""
    acct, jwt = angel
    served: list[str] = []

    def reconcile(name: str) -> None:
        served.append(name)  # first: the updates it applies are what tests wait on
        resp = requests.get(
            f"{acct.rest_url}{ORDER_API}/getOrderBook", headers=angel_headers(acct, jwt), timeout=5
        )
        assert resp.status_code == 200, resp.text
        for row in resp.json().get("data") or []:
            orderupdates.on_broker_message(acct, row, "reconcile")

    orderupdates.set_reconcile_sender(reconcile)
    yield served
    orderupdates.set_reconcile_sender(None)


def wait_state(ch: Any, client_order_id: str, state: str, timeout_s: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        msg = ch.next(max(0.1, deadline - time.monotonic()))
        if msg["client_order_id"] == client_order_id and msg["state"] == state:
            return msg


def wait_until(event_or_fn: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not (event_or_fn.is_set() if isinstance(event_or_fn, threading.Event) else event_or_fn()):
        if time.monotonic() > deadline:
            raise TimeoutError("condition")
        time.sleep(0.01)


def test_live_update_and_update_missed_while_down(
    angel: tuple[Account, str], r: redis_lib.Redis, store: Any, reconciler: list[str], channel: Any
) -> None:
    acct, jwt = angel
    paper = urlparse(acct.order_ws_url)
    proxy = TcpProxy(paper.hostname or "127.0.0.1", paper.port or 80)
    via_proxy = dataclasses.replace(acct, order_ws_url=f"ws://127.0.0.1:{proxy.port}{paper.path}")
    stop = threading.Event()
    threads = start_order_sockets(
        [via_proxy], stop, backoff_base_s=0.05, backoff_max_s=0.2, ping_interval_s=1.0
    )
    try:
        sock = threads[0]
        assert isinstance(sock, OrderSocket)
        ch = channel("angel1")
        # Given the socket is up (and asked for a reconcile as it connected)
        wait_until(sock.connected)
        wait_until(lambda: len(reconciler) >= 1)
        # When an order fills, Then its update arrives through the socket with the fill price
        live = new_order(r, "angel1")
        place_market(acct, jwt, live)
        msg = wait_state(ch, live, "COMPLETE")
        assert msg["source"] == "socket" and msg["average_price"] not in (None, "", "0")
        assert store.get(r, live)["state"] == "COMPLETE"

        # Given the network drops the socket
        proxy.down()
        wait_until(lambda: not sock.connected.is_set())
        # When an order fills while nobody listens
        missed = new_order(r, "angel1")
        place_market(acct, jwt, missed)
        assert store.get(r, missed)["state"] == "NEW"
        # Then, once the socket is back, the reconcile it asks for brings the update
        proxy.up()
        msg = wait_state(ch, missed, "COMPLETE")
        assert msg["source"] == "reconcile" and msg["average_price"] not in (None, "", "0")
        assert sock.connects >= 2 and len(reconciler) >= 2
        assert store.get(r, missed)["state"] == "COMPLETE"
    finally:
        stop.set()
        proxy.close()
        for t in threads:
            t.join(5)
    assert not any(t.is_alive() for t in threads)


def test_a_silent_socket_is_replaced(
    angel: tuple[Account, str], r: redis_lib.Redis, store: Any, reconciler: list[str]
) -> None:
    # Given a socket whose text pings keep it alive
    acct, _ = angel
    paper = urlparse(acct.order_ws_url)
    proxy = TcpProxy(paper.hostname or "127.0.0.1", paper.port or 80)
    via_proxy = dataclasses.replace(acct, order_ws_url=f"ws://127.0.0.1:{proxy.port}{paper.path}")
    stop = threading.Event()
    sock = OrderSocket(
        via_proxy, stop, ping_interval_s=0.1, stale_after_s=0.5, backoff_base_s=0.05, backoff_max_s=0.2
    )
    sock.start()
    try:
        wait_until(sock.connected)
        # When the connection goes silent without closing
        proxy.stall()
        # Then the watchdog drops it and a new socket connects (and asks for a reconcile)
        wait_until(lambda: sock.connects >= 2)
        wait_until(lambda: len(reconciler) >= 2)
    finally:
        stop.set()
        proxy.close()
        sock.join(5)


def test_a_new_token_reconnects_the_socket(
    angel: tuple[Account, str], r: redis_lib.Redis, store: Any, reconciler: list[str]
) -> None:
    acct, _ = angel
    stop = threading.Event()
    sock = OrderSocket(acct, stop, ping_interval_s=0.5)
    sock.start()
    try:
        wait_until(sock.connected)
        # When the account logs in again (a new jwt and version in the token store)
        logged_in([acct])
        # Then the socket reconnects with it
        wait_until(lambda: sock.connects >= 2)
        wait_until(sock.connected)
    finally:
        stop.set()
        sock.join(5)


def test_heartbeat_and_text_ping(
    angel: tuple[Account, str], r: redis_lib.Redis, store: Any, reconciler: list[str]
) -> None:
    acct, _ = angel
    stop = threading.Event()
    sock = OrderSocket(acct, stop, ping_interval_s=0.2)
    sock.start()
    try:
        wait_until(sock.connected)
        # The paper broker answers each text "ping" with "pong", which keeps the watchdog fed.
        from common import keys

        wait_until(lambda: r.hget(keys.order_socket_heartbeat("angel1"), "connected") == "1")
        assert 0 < r.ttl(keys.order_socket_heartbeat("angel1")) <= 30
    finally:
        stop.set()
        sock.join(5)
    assert r.hget(keys.order_socket_heartbeat("angel1"), "connected") == "0"


def test_kite_accounts_get_no_order_socket(paper_accounts: dict[str, Account]) -> None:
    stop = threading.Event()
    assert start_order_sockets([paper_accounts["kite1"]], stop) == []
