"""Placing orders through real workers and the paper broker: the happy paths and validation."""

from __future__ import annotations

import pytest

from common import keys
from common.client import place_order
from common.errors import InvalidOrder
from common.redis import get_redis
from tests.brokers import marketable, ready
from tests.fixtures.accounts import logged_in, paper_user_of
from tests.orders.helpers import order_requests

pytestmark = pytest.mark.slow


def test_invalid_order_raises_naming_the_field_and_nothing_is_enqueued(make_accounts) -> None:
    make_accounts(kite=1, angel=0)
    r = get_redis()
    with pytest.raises(InvalidOrder) as e:
        place_order(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=0)
    assert e.value.field == "quantity"
    with pytest.raises(InvalidOrder) as e:
        place_order(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1, order_type="LIMIT")
    assert e.value.field == "price"
    with pytest.raises(InvalidOrder) as e:
        place_order(account="nosuch", exchange="NSE", symbol="INFY", side="BUY", quantity=1)
    assert e.value.field == "account"
    # tick size from the instrument master
    from common.instruments import store
    from common.models import Instrument

    store("kite1", [Instrument("NSE", "INFY", "408065", lot_size=1)], r)
    with pytest.raises(InvalidOrder) as e:
        place_order(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1,
                    order_type="LIMIT", price="1500.03")
    assert e.value.field == "price"
    with pytest.raises(InvalidOrder) as e:
        place_order(account="kite1", exchange="NSE", symbol="NOSUCH", side="BUY", quantity=1)
    assert e.value.field == "symbol"
    assert r.keys(keys.order("*")) == []
    assert r.llen(keys.orders_queue("kite1")) == 0 and r.llen(keys.urgent_queue("kite1")) == 0


def test_an_order_reaches_the_broker_once_and_the_handle_sees_it(make_account, celery_workers, paper) -> None:
    acct = make_account(caps={"orders": ["10/s"]})
    name = acct.name
    ready(acct)
    celery_workers.start([keys.urgent_queue(name), keys.orders_queue(name)])
    h = place_order(account=name, exchange="NSE", symbol="INFY", side="BUY", quantity=1, **marketable(acct.broker))
    got = h.wait(15)
    assert got["state"] in ("OPEN", "COMPLETE"), got
    assert got["broker_order_id"]
    sent = [e for e in order_requests(paper.requests(), paper_user_of(acct).user_id) if e["tag"] == h.id]
    assert len(sent) == 1 and sent[0]["status"] == 200


def test_modify_changes_the_open_order_and_the_stored_request(make_accounts, celery_workers, paper) -> None:
    accts = make_accounts(kite=1, angel=0)
    logged_in(accts)
    celery_workers.start([keys.urgent_queue("kite1"), keys.orders_queue("kite1")])
    h = place_order(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1,
                    order_type="LIMIT", price="1.00")
    got = h.wait(10)
    assert got["state"] == "OPEN"
    from common.client import modify_order
    from devtools.waiting import wait_for

    modify_order(h.id, price="1.05")
    wait_for(lambda: (h.get() or {}).get("modify_status") == "sent", 10, what="the modification sent")
    assert h.get()["request"]["price"] == "1.05"  # type: ignore[index]
    (at_broker,) = [o for o in paper.orders() if o.get("tag") == h.id]
    assert float(at_broker["price"]) == 1.05
    puts = [e for e in order_requests(paper.requests(), paper_user_of(accts["kite1"]).user_id, "PUT")]
    assert len(puts) == 1 and puts[0]["status"] == 200


def test_a_strategy_can_enqueue_by_name_without_our_client(make_accounts, celery_workers, paper) -> None:
    """send_task by name, no client_order_id: the worker stores the order under an id derived from
    the message (so a redelivery is the same order) and places it once."""
    import uuid

    from celery import Celery

    from common.client import OrderHandle
    from common.settings import settings

    accts = make_accounts(kite=1, angel=0)
    logged_in(accts)
    celery_workers.start([keys.urgent_queue("kite1"), keys.orders_queue("kite1")])
    producer = Celery("strategy", broker=settings().redis_url, set_as_current=False)
    task_id = str(uuid.uuid4())
    producer.send_task("brokergate.place_order", args=[{"account": "kite1", "exchange": "NSE", "symbol": "SBIN",
                                                         "side": "SELL", "quantity": 2}],
                       queue="orders.kite1", task_id=task_id)
    h = OrderHandle(task_id.replace("-", "")[:20], "kite1")
    assert h.wait(15)["state"] in ("OPEN", "COMPLETE")
    sent = [e for e in order_requests(paper.requests(), paper_user_of(accts["kite1"]).user_id) if e["tag"] == h.id]
    assert len(sent) == 1


def test_an_order_with_an_sdk_product_name_round_trips_as_the_generic_product(make_accounts, celery_workers,
                                                                               paper) -> None:
    """Given a strategy that writes products as the brokers' SDKs do (MIS, CNC), When it places
    orders, Then each is stored under the generic product and the broker receives its own code."""
    accts = make_accounts(kite=1, angel=0)
    logged_in(accts)
    celery_workers.start([keys.urgent_queue("kite1"), keys.orders_queue("kite1")])
    mis = place_order(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1, product="MIS")
    cnc = place_order(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1, product="cnc")
    for h, generic, kite_code in ((mis, "INTRADAY", "MIS"), (cnc, "DELIVERY", "CNC")):
        got = h.wait(15)
        assert got["state"] in ("OPEN", "COMPLETE"), got
        assert got["request"]["product"] == generic
        (at_broker,) = [o for o in paper.orders() if o.get("tag") == h.id]
        assert at_broker["broker_payload"]["product"] == kite_code
