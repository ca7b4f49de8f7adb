"""The order-update socket (of every broker that has one) against the paper broker: live updates
arrive through it, and an update missed while it was down is seen after it reconnects (reconcile
on every connect).

The reconcile here is the mechanism the Celery task ``brokergate.reconcile_account`` provides
in production, run in-test: ``workers.sweeper.reconcile`` reads the broker's order book and applies
each of our orders in it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
import redis as redis_lib

from common import instruments, orderstore
from common.brokers.base import adapter_for
from common.models import Order
from common.settings import Account
from devtools.waiting import wait_for
from feed import orderupdates
from feed.order_socket import OrderSocket, start_order_sockets
from tests.brokers import E2E_BROKERS, marketable, push_paths, ready
from tests.fixtures.accounts import logged_in
from tests.updates.conftest import new_order
from tests.updates.tcpproxy import TcpProxy

ORDER_SOCKET_BROKERS = [b for b in E2E_BROKERS if "order_socket" in push_paths(b)]
NO_ORDER_SOCKET_BROKERS = [b for b in E2E_BROKERS if "order_socket" not in push_paths(b)]


def place_market(account: Account, r: redis_lib.Redis, client_order_id: str) -> str:
    """Send the stored order to the broker through its adapter, as a worker would."""
    got = orderstore.get(r, client_order_id)
    assert got is not None
    order = Order.from_dict(got["request"])
    return adapter_for(account).place(order, instruments.lookup(account.name, order.instrument_key, r))


@pytest.fixture
def socket_account(make_account: Any, redis_url: str) -> Account:
    """One account of the broker under test, logged in, with its instrument master."""
    # The in-test reconciler reads the order book on every connect: lift a 1/s book cap for it.
    return ready(make_account(caps={"orderbook": ["50/s"]}))


by_broker = pytest.mark.parametrize("broker", ORDER_SOCKET_BROKERS)


@pytest.fixture
def reconciler(socket_account: Account) -> Iterator[list[str]]:
    """Reconcile requests, each served at once from the paper broker's order book."""
    from workers.sweeper import reconcile

    served: list[str] = []

    def serve(name: str) -> None:
        served.append(name)  # first: the updates it applies are what tests wait on
        reconcile(name)

    orderupdates.set_reconcile_sender(serve)
    yield served
    orderupdates.set_reconcile_sender(None)


def wait_state(ch: Any, client_order_id: str, state: str, timeout_s: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        msg = ch.next(max(0.1, deadline - time.monotonic()))
        if msg["client_order_id"] == client_order_id and msg["state"] == state:
            return msg


def wait_until(event_or_fn: Any, timeout_s: float = 10) -> None:
    wait_for(event_or_fn.is_set if isinstance(event_or_fn, threading.Event) else event_or_fn, timeout_s, 0.01)


def proxied(acct: Account) -> tuple[TcpProxy, Account]:
    """A TCP proxy in front of the account's order socket (the caller closes it), and the
    account pointed at it."""
    paper = urlparse(acct.order_ws_url)
    proxy = TcpProxy(paper.hostname or "127.0.0.1", paper.port or 80)
    return proxy, dataclasses.replace(acct, order_ws_url=f"ws://127.0.0.1:{proxy.port}{paper.path}")


@contextlib.contextmanager
def running_socket(acct: Account, **options: float) -> Iterator[OrderSocket]:
    """An order socket for ``acct``, started; stopped and joined on the way out."""
    stop = threading.Event()
    sock = OrderSocket(acct, stop, **options)
    sock.start()
    try:
        yield sock
    finally:
        stop.set()
        sock.join(5)


@by_broker
def test_live_update_and_update_missed_while_down(
    socket_account: Account, r: redis_lib.Redis, store: Any, reconciler: list[str], channel: Any
) -> None:
    acct = socket_account
    proxy, via_proxy = proxied(acct)
    stop = threading.Event()
    threads = start_order_sockets(
        [via_proxy], stop, backoff_base_s=0.05, backoff_max_s=0.2, ping_interval_s=1.0
    )
    try:
        sock = threads[0]
        assert isinstance(sock, OrderSocket)
        ch = channel(acct.name)
        # Given the socket is up (and asked for a reconcile as it connected)
        wait_until(sock.connected)
        wait_until(lambda: len(reconciler) >= 1)
        # When an order fills, Then its update arrives through the socket with the fill price
        live = new_order(r, acct.name, **marketable(acct.broker))  # one the broker takes under the 2026 rules
        place_market(acct, r, live)
        msg = wait_state(ch, live, "COMPLETE")
        assert msg["source"] == "socket" and msg["average_price"] not in (None, "", "0")
        assert store.get(r, live)["state"] == "COMPLETE"

        # Given the network drops the socket
        proxy.down()
        wait_until(lambda: not sock.connected.is_set())
        # When an order fills while nobody listens
        missed = new_order(r, acct.name, **marketable(acct.broker))
        place_market(acct, r, missed)
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


@by_broker
def test_a_silent_socket_is_replaced(
    socket_account: Account, r: redis_lib.Redis, store: Any, reconciler: list[str]
) -> None:
    # Given a socket whose pings keep it alive
    proxy, via_proxy = proxied(socket_account)
    try:
        with running_socket(
            via_proxy, ping_interval_s=0.1, stale_after_s=0.5, backoff_base_s=0.05, backoff_max_s=0.2
        ) as sock:
            wait_until(sock.connected)
            # When the connection goes silent without closing
            proxy.stall()
            # Then the watchdog drops it and a new socket connects (and asks for a reconcile)
            wait_until(lambda: sock.connects >= 2)
            wait_until(lambda: len(reconciler) >= 2)
    finally:
        proxy.close()


@by_broker
def test_a_new_token_reconnects_the_socket(
    socket_account: Account, r: redis_lib.Redis, store: Any, reconciler: list[str]
) -> None:
    acct = socket_account
    with running_socket(acct, ping_interval_s=0.5) as sock:
        wait_until(sock.connected)
        # When the account logs in again (a new jwt and version in the token store)
        logged_in([acct])
        # Then the socket reconnects with it
        wait_until(lambda: sock.connects >= 2)
        wait_until(sock.connected)


@by_broker
def test_heartbeat_and_text_ping(
    socket_account: Account, r: redis_lib.Redis, store: Any, reconciler: list[str]
) -> None:
    acct = socket_account
    from common import keys

    with running_socket(acct, ping_interval_s=0.2) as sock:
        wait_until(sock.connected)
        # The paper broker answers each text "ping" with "pong", which keeps the watchdog fed.
        wait_until(lambda: r.hget(keys.order_socket_heartbeat(acct.name), "connected") == "1")
        assert 0 < r.ttl(keys.order_socket_heartbeat(acct.name)) <= 30
    assert r.hget(keys.order_socket_heartbeat(acct.name), "connected") == "0"


@pytest.mark.parametrize("broker", NO_ORDER_SOCKET_BROKERS)
def test_accounts_of_a_broker_without_one_get_no_order_socket(make_account: Any) -> None:
    stop = threading.Event()
    assert start_order_sockets([make_account()], stop) == []
