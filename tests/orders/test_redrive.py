"""The sweeper sends again a NEW order whose Celery message was lost, and only then.

kombu's Redis transport takes a message off its queue (BRPOP) and records it in the ``unacked``
hash with a second command: a Redis crash (or a lost reply) between the two loses the message
while the order is still NEW. These tests make that state in a real Redis (a bare RPOP is what
the BRPOP did) and check that the sweeper finds a message wherever kombu keeps one.
"""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from kombu import Connection
from kombu.transport.redis import Channel

from common import keys, orderstore
from common.models import Order
from common.queued import place_of
from common.redis import server_time_ms
from workers import liveness
from workers.sweeper import _enqueued_ids, _send_place, redrive_lost

QUEUE = keys.orders_queue("kite1")
URGENT = keys.urgent_queue("kite1")


def _old_order(r, *, age_s: float = 5.0, enqueued: bool = True, **kw: object) -> Order:
    """A NEW order created ``age_s`` ago (its deadline still ahead), published by its client."""
    base: dict[str, object] = dict(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1,
                                   deadline_s=30)
    base.update(kw)
    o = Order(**base)  # type: ignore[arg-type]
    orderstore.create(r, o, source="client")
    r.hset(keys.order(o.client_order_id), "created_ms", server_time_ms(r) - int(age_s * 1000))
    if enqueued:
        orderstore.mark_enqueued(r, o.client_order_id)
    return o


def test_an_order_whose_publish_failed_is_never_redriven(r) -> None:
    # Given a NEW order whose client's publish failed (its client was told: not enqueued)
    from workers.sweeper import redrive_lost

    o = _old_order(r, enqueued=False)
    # When the sweeper looks for lost messages
    assert redrive_lost(r, confirm_s=0) == 0
    # Then nothing is sent for it: a strategy may already have placed it again under a new id
    assert r.llen(keys.orders_queue(o.account)) == 0


def _queued(r, queue: str) -> list[str]:
    return [json.loads(m)["headers"]["id"] for m in r.lrange(queue, 0, -1)]


def test_kombu_names_match_keys() -> None:
    assert Channel.unacked_key == keys.KOMBU_UNACKED
    assert Channel.unacked_index_key == keys.KOMBU_UNACKED_INDEX
    assert Channel.sep == keys.KOMBU_PRIORITY_SEP
    assert list(keys.KOMBU_PRIORITY_STEPS) == list(Channel.priority_steps)
    ch = Channel.__new__(Channel)  # _q_for_pri needs only the class attributes
    assert keys.queue_lists(QUEUE) == [ch._q_for_pri(QUEUE, p) for p in Channel.priority_steps]


def test_a_lost_message_is_sent_again_once_on_its_lane(r) -> None:
    """Given NEW orders (one urgent) whose messages were popped and never recorded as unacked,
    When the sweeper looks, Then each is enqueued again on the lane the client used, once, with
    the redrive in its history; the next look finds the new message and sends nothing."""
    plain, urgent = _old_order(r), _old_order(r, urgent=True)
    for o, q in ((plain, QUEUE), (urgent, URGENT)):
        _send_place(o.to_dict())
        assert r.rpop(q)  # what kombu's BRPOP did before Redis went away
    assert r.llen(QUEUE) == r.llen(URGENT) == 0 and not r.hlen(keys.KOMBU_UNACKED)
    assert redrive_lost(r, confirm_s=0) == 2
    assert set().union(*_enqueued_ids(r, ["kite1"])) == {plain.client_order_id, urgent.client_order_id}
    assert len(_queued(r, QUEUE)) == 1 and len(_queued(r, URGENT)) == 1
    for o in (plain, urgent):
        got = orderstore.get(r, o.client_order_id)
        assert got["state"] == "NEW" and got["redrives"] == 1  # type: ignore[index]
        assert got["history"][-1]["source"] == "sweeper"  # type: ignore[index]
        assert got["history"][-1]["message"] == "redriven: message lost"  # type: ignore[index]
    assert redrive_lost(r, confirm_s=0) == 0  # present now
    assert r.hget(keys.stats("kite1"), "redriven") == "2"


def test_a_message_anywhere_kombu_keeps_it_is_not_redriven(r, redis_url) -> None:
    """Given NEW orders whose messages wait in the queue, in a priority list of the queue, or are
    held by a consumer (kombu's unacked hash), When the sweeper looks, Then nothing is sent."""
    in_priority_list, held, queued = _old_order(r), _old_order(r), _old_order(r)
    for o in (in_priority_list, held, queued):
        _send_place(o.to_dict())
    # Oldest first: the first message out is `in_priority_list`'s; move it to the priority-9 list.
    r.lpush(keys.queue_lists(QUEUE)[-1], r.rpop(QUEUE))
    with Connection(redis_url) as conn:
        ch = conn.channel()
        msg = ch.basic_get(QUEUE, no_ack=False)  # kombu reads priority 0 first: `held`'s, now in unacked
        assert msg is not None and r.hlen(keys.KOMBU_UNACKED) == 1
        assert json.loads(msg.body)[0][0]["client_order_id"] == held.client_order_id
        assert _queued(r, QUEUE) and r.llen(keys.queue_lists(QUEUE)[-1]) == 1
        assert redrive_lost(r, confirm_s=0) == 0
        assert set().union(*_enqueued_ids(r, ["kite1"])) == {in_priority_list.client_order_id, held.client_order_id,
                                               queued.client_order_id}
        msg.ack()
    assert not r.hlen(keys.KOMBU_UNACKED)
    assert redrive_lost(r, confirm_s=0) == 1  # acked while still NEW: lost for the sweeper's purpose


def _recorded_held(r, o: Order, age_s: float) -> str:
    """Take ``o``'s message off its queue and record it in kombu's unacked hash and index, as
    kombu's QoS.append does, ``age_s`` ago; no consumer has it. Returns its delivery tag."""
    raw = r.rpop(QUEUE)
    tag = f"tag-{o.client_order_id}"
    r.hset(keys.KOMBU_UNACKED, tag, json.dumps([json.loads(raw), "", QUEUE]))
    r.zadd(keys.KOMBU_UNACKED_INDEX, {tag: time.time() - age_s})
    return tag


def test_a_message_recorded_held_that_no_live_worker_received_is_redriven(r) -> None:
    """Given NEW orders whose messages kombu recorded as unacked although no worker got them (the
    record ran in Redis, its reply was lost when Redis stopped: the consumer's append raised and
    the message never reached Celery; tests/orders/test_pooled.py's Redis restart ran into it),
    and a live worker whose held set lists one of them, When the sweeper looks, Then the one no
    live worker lists is sent again once its record is older than a worker takes to list what it
    received; the listed one, and a record younger than that, are left alone."""
    orphan, listed, young = _old_order(r), _old_order(r), _old_order(r)
    for o, age_s in ((orphan, 10.0), (listed, 10.0), (young, 0.0)):
        _send_place(o.to_dict())
        _recorded_held(r, o, age_s)
    worker = "worker:w1@host/0001"
    liveness.mark(r, worker)  # alive, registered, nothing held
    r.sadd(keys.worker_held(worker), listed.client_order_id)
    assert redrive_lost(r, confirm_s=0) == 1
    assert _queued_orders(r) == [orphan.client_order_id]
    assert orderstore.get(r, orphan.client_order_id)["redrives"] == 1  # type: ignore[index]
    assert redrive_lost(r, confirm_s=0) == 0  # queued now


def _queued_orders(r) -> list[str]:
    return [place_of(json.loads(m)).client_order_id for m in r.lrange(QUEUE, 0, -1)]  # type: ignore[union-attr]


def test_young_expired_and_claimed_orders_are_left_alone(r) -> None:
    """A NEW order younger than the threshold (its message may still be on its way), one past
    its deadline (the sweeper expires it instead), and a claimed one are never redriven."""
    young = _old_order(r, age_s=0.5)
    past = _old_order(r, deadline_s=1)
    r.hset(keys.order(past.client_order_id), "deadline_ms", server_time_ms(r) - 1)
    claimed = _old_order(r)
    orderstore.claim(r, claimed.client_order_id, "a")
    assert redrive_lost(r, confirm_s=0) == 0
    assert r.llen(QUEUE) == 0
    assert all("redrives" not in orderstore.get(r, o.client_order_id)  # type: ignore[operator]
               for o in (young, past, claimed))


def test_concurrent_sweepers_send_one_copy(r) -> None:
    o = _old_order(r)
    assert orderstore.mark_redriven(r, o.client_order_id, "")
    assert not orderstore.mark_redriven(r, o.client_order_id, "")  # a second sweeper that read the same count


def test_redrives_are_bounded(r, monkeypatch) -> None:
    """Were messages ever misread (kombu's key names changed), an order is not sent again forever."""
    import workers.sweeper as wo

    o = _old_order(r)
    monkeypatch.setattr(wo, "_enqueued_ids", lambda *_: (set(), {}))
    assert [redrive_lost(r, confirm_s=0) for _ in range(wo.REDRIVE_MAX + 2)] == [1] * wo.REDRIVE_MAX + [0, 0]
    assert r.llen(QUEUE) == wo.REDRIVE_MAX
    assert orderstore.get(r, o.client_order_id)["redrives"] == wo.REDRIVE_MAX  # type: ignore[index]


@pytest.mark.slow
def test_a_lost_message_is_placed_by_a_worker_once(make_accounts, celery_workers, paper) -> None:
    """Given a worker and a NEW order whose message was lost, When the sweeper runs, Then the
    order reaches the broker exactly once."""
    from common.redis import get_redis
    from devtools.waiting import wait_for
    from tests.fixtures.accounts import logged_in, paper_user_of
    from tests.orders.helpers import order_requests
    from workers.sweeper import sweep

    accts = make_accounts(kite=1, angel=0)
    logged_in(accts)
    r = get_redis()
    o = _old_order(r)
    _send_place(o.to_dict())
    assert r.rpop(QUEUE)
    celery_workers.start([URGENT, QUEUE])
    assert sweep()["redriven"] == 1
    wait_for(lambda: orderstore.get(r, o.client_order_id)["state"] in ("OPEN", "COMPLETE"), 10,  # type: ignore[index]
             what="the redriven order placed")
    user = paper_user_of(accts["kite1"]).user_id
    assert [e["tag"] for e in order_requests(paper.requests(), user)] == [o.client_order_id]
    assert sweep()["redriven"] == 0


def _redis_dies_in_kombus_append(redis_server, redis_url, monkeypatch, *, after_the_record: bool):  # type: ignore[no-untyped-def]
    """A NEW order's message is popped by a consumer (BRPOP), and Redis (append-only file, fsync
    always) is killed inside kombu's QoS.append: before it records the message as unacked, or
    (``after_the_record``) after the record ran but before its answer reached the consumer. The
    consumer's connection is closed while Redis is down, as a worker's lost connection is (its
    restore cannot reach Redis); then Redis starts again. Returns a client and the order."""
    import redis as redis_lib
    from kombu import Queue
    from kombu.transport import redis as kombu_redis

    r = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    o = _old_order(r)
    _send_place(o.to_dict())
    assert r.llen(QUEUE) == 1
    append = kombu_redis.QoS.append

    def dying(self, message, delivery_tag):  # type: ignore[no-untyped-def]
        if after_the_record:
            append(self, message, delivery_tag)
            redis_server.kill()
            raise redis_lib.ConnectionError("Connection closed by server.")
        redis_server.kill()
        return append(self, message, delivery_tag)

    monkeypatch.setattr(kombu_redis.QoS, "append", dying)
    delivered: list[object] = []
    conn = Connection(redis_url, transport_options={"socket_connect_timeout": 0.5})
    try:
        with (conn.Consumer(Queue(QUEUE, routing_key=QUEUE), callbacks=[lambda _b, m: delivered.append(m)]),
              pytest.raises(conn.connection_errors)):
            conn.drain_events(timeout=5)
    finally:
        monkeypatch.setattr(kombu_redis.QoS, "append", append)
        with contextlib.suppress(Exception):
            conn.release()
        redis_server.start()
    assert not delivered
    r = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    assert orderstore.get(r, o.client_order_id)["state"] == "NEW"  # type: ignore[index]
    return r, o


@pytest.mark.slow
def test_redis_dying_between_pop_and_unacked_loses_the_message(redis_server, redis_url, monkeypatch) -> None:
    """The hypothesis, in a real Redis: a consumer pops a message (BRPOP), Redis is killed before
    kombu records it in ``unacked``: after the restart the message is in no queue and not
    unacked while the order is NEW. The sweeper sends it again."""
    r, o = _redis_dies_in_kombus_append(redis_server, redis_url, monkeypatch, after_the_record=False)
    assert r.llen(QUEUE) == 0 and r.hlen(keys.KOMBU_UNACKED) == 0  # the message is nowhere
    assert redrive_lost(r, confirm_s=0) == 1
    assert set().union(*_enqueued_ids(r, ["kite1"])) == {o.client_order_id}


@pytest.mark.slow
def test_redis_stopping_before_the_unacked_record_is_answered_loses_nothing(redis_server, redis_url,
                                                                             monkeypatch) -> None:
    """In a real Redis: a consumer pops a message and records it as unacked, and Redis stops
    before it answers: the consumer's append raises, the message is never delivered, and after
    the restart it sits in the unacked hash that no worker reads. The sweeper sends it again."""
    r, o = _redis_dies_in_kombus_append(redis_server, redis_url, monkeypatch, after_the_record=True)
    assert r.llen(QUEUE) == 0 and r.hlen(keys.KOMBU_UNACKED) == 1  # recorded as held; nobody holds it
    assert redrive_lost(r, now_ms=server_time_ms(r) + 10_000, confirm_s=0) == 1  # its deadline is 25 s away
    assert _queued_orders(r) == [o.client_order_id]
