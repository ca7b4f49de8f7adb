"""Shared fixtures of the order-update tests: accounts, the order store, pub/sub waits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

from common import keys
from common.settings import Account, parse_accounts
from feed import orderupdates

KITE_SECRET = "kite-test-secret-1234"

ACCOUNTS_TOML = """
[accounts.kite1]
broker = "kite"
user_id = "AB1234"
password = "env:T_KITE_PASSWORD"
totp_secret = "env:T_KITE_TOTP"
api_key = "kitekey1"
api_secret = "env:T_KITE_SECRET"

[accounts.kite2]
broker = "kite"
user_id = "CD5678"
password = "env:T_KITE_PASSWORD"
totp_secret = "env:T_KITE_TOTP"
api_key = "kitekey1"
api_secret = "env:T_KITE_SECRET"

[accounts.angel1]
broker = "angel"
user_id = "A123456"
password = "env:T_ANGEL_PASSWORD"
totp_secret = "env:T_ANGEL_TOTP"
api_key = "angelkey1"
order_ws_url = "ws://127.0.0.1:1/smart-order-update"
"""
ENV = {
    "T_KITE_PASSWORD": "pw-kite",
    "T_KITE_TOTP": "JBSWY3DPEHPK3PXP",
    "T_KITE_SECRET": KITE_SECRET,
    "T_ANGEL_PASSWORD": "1234",
    "T_ANGEL_TOTP": "JBSWY3DPEHPK3PXP",
}


@pytest.fixture(scope="session")
def test_accounts() -> dict[str, Account]:
    return parse_accounts(ACCOUNTS_TOML, ENV, source="tests/updates")


@pytest.fixture
def kite_account(test_accounts: dict[str, Account]) -> Account:
    return test_accounts["kite1"]


@pytest.fixture
def angel_account(test_accounts: dict[str, Account]) -> Account:
    return test_accounts["angel1"]


@pytest.fixture
def store(redis_url: str) -> Iterator[Any]:
    """The order store (common.orderstore), as the push path uses it."""
    from common import orderstore

    orderupdates.set_applier(None)
    yield orderstore


def new_order(r: redis_lib.Redis, account: str, **kw: Any) -> str:
    """An order in the store, NEW, as the client leaves it; returns its client_order_id."""
    from common import orderstore
    from common.models import Order

    order = Order(
        account=account, exchange="NSE", symbol="SBIN", side="BUY", quantity=kw.pop("quantity", 1), **kw
    )
    orderstore.create(r, order)
    return order.client_order_id


@pytest.fixture
def reconciles() -> Iterator[list[str]]:
    """Reconcile requests, recorded instead of sent to Celery."""
    sent: list[str] = []
    orderupdates.set_reconcile_sender(sent.append)
    yield sent
    orderupdates.set_reconcile_sender(None)


class Channel:
    """A subscription to orders:<account>, waiting on messages (never sleeping)."""

    def __init__(self, r: redis_lib.Redis, account: str) -> None:
        self.pubsub = r.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(keys.orders_channel(account))
        # The subscribe confirmation proves the subscription is active before anything is published.
        deadline = time.monotonic() + 5
        while self.pubsub.get_message(timeout=0.1) is None and not self.pubsub.subscribed:
            if time.monotonic() > deadline:
                raise TimeoutError("subscribe")

    def next(self, timeout_s: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = self.pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
            if msg and msg["type"] == "message":
                data = msg["data"]
                return json.loads(data.decode() if isinstance(data, bytes) else data)  # type: ignore[no-any-return]
        raise TimeoutError("no order update published")

    def none(self, within_s: float = 0.3) -> bool:
        """True when nothing is published within ``within_s`` (used only to prove absence)."""
        msg = self.pubsub.get_message(timeout=within_s)
        while msg is not None and msg["type"] != "message":
            msg = self.pubsub.get_message(timeout=within_s)
        return msg is None

    def close(self) -> None:
        self.pubsub.close()


@pytest.fixture
def channel(r: redis_lib.Redis) -> Iterator[Any]:
    opened: list[Channel] = []

    def open_(account: str) -> Channel:
        c = Channel(r, account)
        opened.append(c)
        return c

    yield open_
    for c in opened:
        c.close()
