"""The one push path, feed.orderupdates: every source's payload through the same parse-and-apply,
and reconcile requests sent to Celery by the task's stable name."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis as redis_lib

from common import keys
from common.settings import Account
from feed import orderupdates
from tests.updates.conftest import new_order
from tests.updates.payloads import angel_message, postback


def test_kite_ticker_order_message_goes_through_the_one_path(
    kite_account: Account, r: redis_lib.Redis, store: Any, channel: Any
) -> None:
    # Given an order, and the Kite ticker's text message for its fill
    oid = new_order(r, "kite1")
    ch = channel("kite1")
    msg = {"type": "order", "data": postback(oid, average_price=470.05)}
    # When the feed hands it over
    update, changed = orderupdates.handle_broker_message(kite_account, msg, "socket")
    # Then it is normalized, applied and published
    assert update is not None and changed is True and str(update.average_price) == "470.05"
    assert ch.next()["source"] == "socket"
    # And the same message again changes nothing
    assert orderupdates.handle_broker_message(kite_account, msg, "socket")[1] is False


def test_angel_greeting_is_nothing_and_a_fill_is_applied(
    angel_account: Account, r: redis_lib.Redis, store: Any, channel: Any
) -> None:
    oid = new_order(r, "angel1")
    ch = channel("angel1")
    greeting = angel_message("AB00", orderid="", orderstatus="", status="")
    assert orderupdates.on_broker_message(angel_account, greeting, "socket") is None
    u = orderupdates.on_broker_message(angel_account, angel_message("AB05", ordertag=oid), "socket")
    assert u is not None and u.state.value == "COMPLETE"
    got = ch.next()
    assert got["client_order_id"] == oid and got["average_price"] == "265.62"


def test_accounts_are_found_by_name_too(
    test_accounts: dict[str, Account], r: redis_lib.Redis, store: Any, monkeypatch: Any
) -> None:
    from common import settings

    monkeypatch.setattr(settings, "account", lambda name: test_accounts[name])
    oid = new_order(r, "kite1")
    assert orderupdates.on_broker_message("kite1", postback(oid), "postback") is not None
    assert store.get(r, oid)["state"] == "COMPLETE"


def test_reconcile_is_sent_to_celery_by_name_on_the_default_queue(r: redis_lib.Redis) -> None:
    # Given no test sender: the real Celery send (workers.app, or a bare Celery app)
    orderupdates.set_reconcile_sender(None)
    assert orderupdates.request_reconcile("kite1", "test", r=r) is True
    # Then one message waits on the default queue for brokergate.reconcile_account("kite1")
    raw = r.lrange(keys.DEFAULT_QUEUE, 0, -1)
    assert len(raw) == 1
    msg = json.loads(raw[0])
    assert msg["headers"]["task"] == "brokergate.reconcile_account"
    args = json.loads(base64.b64decode(msg["body"]))[0]
    assert args == ["kite1"]


def test_reconcile_debounce_and_failures(r: redis_lib.Redis, reconciles: list[str]) -> None:
    assert orderupdates.request_reconcile("kite1", "a", r=r)
    assert orderupdates.request_reconcile("kite1", "b", r=r)  # reconnects are never debounced
    assert orderupdates.request_reconcile("kite1", "c", r=r, debounce_ms=5000)
    assert not orderupdates.request_reconcile("kite1", "d", r=r, debounce_ms=5000)
    assert reconciles == ["kite1", "kite1", "kite1"]

    def broken(_account: str) -> None:
        raise ConnectionError("celery is away")

    orderupdates.set_reconcile_sender(broken)
    assert orderupdates.request_reconcile("kite1", "e", r=r) is False  # logged, never raised
