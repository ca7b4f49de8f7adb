"""The order store: atomic claims, forward-only updates, publish and wake-up."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from common import keys, orderstore
from common.errors import InvalidOrder
from common.models import Order, OrderState, OrderUpdate
from tests.orders.helpers import make_order, make_update

S = OrderState


def test_create_is_new_with_deadline_and_indexed(r) -> None:
    o = make_order(deadline_s=5)
    deadline = orderstore.create(r, o)
    got = orderstore.get(r, o.client_order_id)
    assert got is not None and got["state"] == "NEW"
    assert got["deadline_ms"] == deadline == got["created_ms"] + 5000
    assert got["request"]["symbol"] == "INFY"
    assert orderstore.active_ids(r) == [(o.client_order_id, deadline)]
    with pytest.raises(InvalidOrder) as e:
        orderstore.create(r, o)
    assert e.value.field == "client_order_id"


def test_claim_is_exclusive_and_fences_an_overtaken_attempt(r) -> None:
    o = make_order()
    orderstore.create(r, o)
    assert orderstore.claim(r, o.client_order_id, "a1").verdict == "claimed"
    # a redelivery before anything was sent takes over; the first attempt can no longer send
    assert orderstore.claim(r, o.client_order_id, "a2").verdict == "claimed"
    assert orderstore.mark_sent(r, o.client_order_id, "a1")[0] == "lost"
    assert orderstore.mark_sent(r, o.client_order_id, "a2")[0] == "ok"
    # after the request may have left, a redelivery must reconcile
    c = orderstore.claim(r, o.client_order_id, "a3")
    assert c.verdict == "reconcile" and c.sent_at_ms > 0
    assert orderstore.mark_sent(r, o.client_order_id, "a3")[0] == "lost"


def test_claim_past_deadline_expires_without_sending(r) -> None:
    o = make_order(deadline_s=0.001)
    orderstore.create(r, o)
    r.hset(keys.order(o.client_order_id), "deadline_ms", 1)  # long past
    c = orderstore.claim(r, o.client_order_id, "a1")
    assert c.verdict == "expired"
    got = orderstore.get(r, o.client_order_id)
    assert got and got["state"] == "EXPIRED" and "sent_at_ms" not in got
    assert orderstore.active_ids(r) == []
    assert r.lrange(keys.order_done(o.client_order_id), 0, -1) == ["EXPIRED"]


def test_mark_sent_refuses_after_deadline(r) -> None:
    o = make_order()
    orderstore.create(r, o)
    orderstore.claim(r, o.client_order_id, "a1")
    r.hset(keys.order(o.client_order_id), "deadline_ms", 1)
    assert orderstore.mark_sent(r, o.client_order_id, "a1")[0] == "expired"
    assert orderstore.get(r, o.client_order_id)["state"] == "EXPIRED"  # type: ignore[index]


def test_mark_sent_refuses_a_stale_slot(r) -> None:
    o = make_order()
    orderstore.create(r, o)
    orderstore.claim(r, o.client_order_id, "a1")
    sec, usec = r.time()
    now_us = int(sec) * 1_000_000 + int(usec)
    assert orderstore.mark_sent(r, o.client_order_id, "a1", slot_us=now_us - 50_000, late_tolerance_us=10_000)[0] == "late"
    verdict, sent_us = orderstore.mark_sent(r, o.client_order_id, "a1", slot_us=now_us, late_tolerance_us=100_000)
    assert verdict == "ok" and sent_us >= now_us


def test_transition_follows_the_table_and_cas(r) -> None:
    o = make_order()
    orderstore.create(r, o)
    assert not orderstore.transition(r, o.client_order_id, S.UNKNOWN)  # NEW -> UNKNOWN is not in the table
    orderstore.claim(r, o.client_order_id, "a1")
    assert not orderstore.transition(r, o.client_order_id, S.FAILED, cas=("attempt", "zz"))
    assert orderstore.transition(r, o.client_order_id, S.FAILED, cas=("attempt", "a1"), message="boom")
    got = orderstore.get(r, o.client_order_id)
    assert got and got["state"] == "FAILED" and got["error"] == "boom"
    assert [h["state"] for h in got["history"]] == ["NEW", "SENDING", "FAILED"]
    assert not orderstore.transition(r, o.client_order_id, S.OPEN)  # terminal stays terminal


def test_apply_update_moves_forward_only_publishes_changes_and_wakes(r) -> None:
    o = make_order()
    orderstore.create(r, o)
    orderstore.claim(r, o.client_order_id, "a1")
    ps = r.pubsub()
    ps.subscribe(keys.orders_channel("acct1"))
    ps.get_message(timeout=1)
    assert orderstore.apply_update(r, make_update(o, S.OPEN, pending_quantity=1))
    assert not orderstore.apply_update(r, make_update(o, S.OPEN, pending_quantity=1))  # replay
    done = make_update(o, S.COMPLETE, filled_quantity=1, average_price=Decimal("1501.35"))
    assert orderstore.apply_update(r, done)
    assert not orderstore.apply_update(r, done)  # replay
    assert not orderstore.apply_update(r, make_update(o, S.OPEN))  # late OPEN never undoes COMPLETE
    got = orderstore.get(r, o.client_order_id)
    assert got and got["state"] == "COMPLETE" and got["average_price"] == "1501.35"
    assert got["broker_order_id"] == "B1" and got["filled_quantity"] == 1
    msgs = []
    while (m := ps.get_message(timeout=0.2)) is not None:
        msgs.append(json.loads(m["data"]))
    assert [m["state"] for m in msgs] == ["OPEN", "COMPLETE"]
    assert r.lrange(keys.order_done(o.client_order_id), 0, -1) == ["OPEN", "COMPLETE"]
    assert orderstore.active_ids(r) == []
    ps.close()


def test_open_to_open_only_when_the_fill_grows_or_fields_change(r) -> None:
    o = make_order(quantity=10)
    orderstore.create(r, o)
    assert orderstore.apply_update(r, make_update(o, S.OPEN, filled_quantity=5, pending_quantity=5))
    (_, due), = orderstore.active_ids(r)
    assert due > orderstore.get(r, o.client_order_id)["created_ms"] + 3_000_000  # type: ignore[index]
    assert not orderstore.apply_update(r, make_update(o, S.OPEN, filled_quantity=2, pending_quantity=8))
    assert orderstore.apply_update(r, make_update(o, S.OPEN, filled_quantity=7, pending_quantity=3))
    assert orderstore.get(r, o.client_order_id)["filled_quantity"] == 7  # type: ignore[index]


def test_unknown_tag_is_published_not_stored(r) -> None:
    ps = r.pubsub()
    ps.subscribe(keys.orders_channel("acct1"))
    ps.get_message(timeout=1)
    u = OrderUpdate(account="acct1", client_order_id="nosuchorder", broker_order_id="9", state=S.OPEN)
    assert not orderstore.apply_update(r, u)
    m = ps.get_message(timeout=1)
    assert m and json.loads(m["data"])["client_order_id"] == "nosuchorder"
    assert r.exists(keys.order("nosuchorder")) == 0
    ps.close()


def test_a_create_retried_after_a_lost_reply_succeeds_but_a_second_order_with_the_id_does_not(r) -> None:
    # Given a create whose reply was lost (redis-py retries the same script call)
    from common.orderstore import _create_keys, _script, create

    order = Order(account="acct1", exchange="NSE", symbol="INFY", side="BUY", quantity=1)
    args = [order.account, json.dumps(order.to_dict()), 30_000, "client", "nonce-1"]
    first = _script("order_create")(r, _create_keys(order), args)
    # When the very same call runs again
    again = _script("order_create")(r, _create_keys(order), args)
    # Then it reports created both times, and a different create of the same id is refused
    assert int(first[0]) == 1 and int(again[0]) == 1 and int(again[1]) == int(first[1])
    with pytest.raises(InvalidOrder, match="client_order_id"):
        create(r, order)
