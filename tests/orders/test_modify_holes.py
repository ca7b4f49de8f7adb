"""Issue 15 items 3, 7, 8 and 10: modifies that were lost, blocked themselves, were reverted or
were sent stale. Each test failed on the code before the fix. Black-box (paper broker, real
workers) where a paper fault or a stopped worker stages the hole; white-box (real Redis, a fake
adapter on ``workers.brokercall``) where only the order in which workers run matters."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from common import keys, orderstore
from common.client import modify_order, place_order
from common.errors import Ambiguous
from common.models import Order, OrderState, OrderUpdate
from common.redis import get_redis, server_time_ms
from common.settings import Account, Secret
from devtools.waiting import wait_for
from tests.fixtures.accounts import logged_in, paper_user_of

S = OrderState


def _acct() -> Account:
    return Account(name="acct1", broker="kite", user_id="U1", api_key="k", password=Secret(""),
                   totp_secret=Secret(""), api_secret=Secret(""), rest_url="http://127.0.0.1:9", login_url="",
                   ws_url="", order_ws_url="", caps={}, extra={"read_timeout_s": 0})


def _open(r: Any, **kw: Any) -> Order:
    """An order resting at the (fake) broker as B1."""
    base: dict[str, Any] = dict(account="acct1", exchange="NSE", symbol="INFY", side="BUY", quantity=1,
                                order_type="LIMIT", price="1.00")
    o = Order(**{**base, **kw})
    orderstore.create(r, o)
    orderstore.apply_update(r, OrderUpdate(account="acct1", client_order_id=o.client_order_id,
                                           broker_order_id="B1", state=S.OPEN, source="test"))
    return o


class _Broker:
    """A fake broker that sends the whole order on a modify (as every adapter does): records the
    order each modify would leave at the broker; ``ambiguous`` modifies lose their answer."""

    def __init__(self, ambiguous: int = 0) -> None:
        self.sent: list[Order] = []
        self.ambiguous = ambiguous

    def modify(self, order: Order, _bid: str, changes: dict[str, Any], _inst: Any) -> str:
        self.sent.append(order.with_(**changes))
        if self.ambiguous:
            self.ambiguous -= 1
            raise Ambiguous("read timeout after the request left")
        return "B1"

    def order_by_tag(self, _tag: str) -> None:
        return None


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> _Broker:
    from workers import brokercall as bc

    b = _Broker()
    acct = _acct()
    monkeypatch.setattr(bc, "account", lambda _name: acct)
    monkeypatch.setattr(bc, "adapter_for", lambda _a: b)
    monkeypatch.setattr(bc, "instrument", lambda _a, _o: None)
    return b


class _Producer:
    """Captures what the client enqueues instead of publishing it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []

    def send_task(self, name: str, args: list[Any], **_k: Any) -> None:
        self.sent.append((name, args))


def _capture_client(monkeypatch: pytest.MonkeyPatch) -> _Producer:
    from common import client

    p = _Producer()
    monkeypatch.setattr(client, "_validate", lambda order: order)
    monkeypatch.setattr(client, "_celery", lambda: p)
    return p


def _shown(o: Order) -> tuple[str, int]:
    return str(o.price), o.quantity


# --- 3. a modify is lost ------------------------------------------------------------------------


def test_modifies_compose_in_sequence_order_whatever_order_the_workers_run_them(r, monkeypatch, broker) -> None:
    """Given seq 1 changes the price and seq 2 the quantity, When a worker runs seq 2 before seq 1
    runs, Then the broker ends with both changes and seq 1, arriving last, is dropped with nothing
    lost. Before: seq 2 sent only the quantity onto the old price and seq 1 was dropped whole."""
    from workers import actions

    o = _open(r)
    producer = _capture_client(monkeypatch)
    modify_order(o.client_order_id, price="1.05")
    modify_order(o.client_order_id, quantity=2)
    (_, first), (_, second) = producer.sent
    assert actions.run_modify(*second[:5]) == "OPEN"
    assert actions.run_modify(*first[:5]) == "DROPPED"
    assert [_shown(x) for x in broker.sent] == [("1.05", 2)]
    got = orderstore.get(r, o.client_order_id)
    assert got is not None and (got["request"]["price"], got["request"]["quantity"]) == ("1.05", 2)
    assert not [k for k in got if k.startswith("modify_changes:")], "applied changes are cleaned up"


def test_modifies_in_order_each_compose_onto_the_last(r, monkeypatch, broker) -> None:
    from workers import actions

    o = _open(r)
    producer = _capture_client(monkeypatch)
    modify_order(o.client_order_id, price="1.05")
    modify_order(o.client_order_id, quantity=2)
    for _, args in producer.sent:
        assert actions.run_modify(*args[:5]) == "OPEN"
    assert [_shown(x) for x in broker.sent] == [("1.05", 1), ("1.05", 2)]


def test_a_rejected_modify_is_not_carried_by_the_next_one(r, monkeypatch, broker) -> None:
    """A modify the broker refused did not happen: the next one composes onto the last applied."""
    from common.errors import OrderRejected
    from workers import actions

    o = _open(r)
    producer = _capture_client(monkeypatch)
    modify_order(o.client_order_id, price="9.99")
    modify_order(o.client_order_id, quantity=2)
    real = broker.modify

    def refuse_first(order: Order, bid: str, changes: dict[str, Any], inst: Any) -> str:
        if not broker.sent:
            broker.sent.append(order.with_(**changes))
            raise OrderRejected("price out of the circuit band")
        return real(order, bid, changes, inst)

    monkeypatch.setattr(broker, "modify", refuse_first)
    (_, first), (_, second) = producer.sent
    assert actions.run_modify(*first[:5]) == "REJECTED"
    assert actions.run_modify(*second[:5]) == "OPEN"
    assert [_shown(x) for x in broker.sent] == [("9.99", 1), ("1.00", 2)]


def test_a_modify_enqueued_by_name_without_a_seq_is_stamped_once_per_message(r, broker) -> None:
    """Its changes are recorded under the seq its message got; a redelivery of the same message
    gets the same seq (and so is dropped once applied) instead of a new one."""
    from workers.orders import modify_order as task

    o = _open(r)
    msg = uuid.uuid4().hex
    assert task.apply(args=["acct1", o.client_order_id, {"price": "1.05"}], task_id=msg).get() == "OPEN"
    assert task.apply(args=["acct1", o.client_order_id, {"price": "1.05"}], task_id=msg).get() == "DROPPED"
    assert [_shown(x) for x in broker.sent] == [("1.05", 1)]
    assert orderstore.get(r, o.client_order_id)["modify_seq"] == 1  # type: ignore[index]


# --- 7. a modify redelivered after SIGKILL blocks itself --------------------------------------------


def test_a_modify_redelivered_after_its_worker_died_retakes_its_own_lock(r, monkeypatch, broker) -> None:
    """Given the delivery that took the order's modify lock was SIGKILLed (its lock lives on),
    When the same message is delivered again, Then it takes its own lock and sends. Before: the
    lock token was made per delivery, so the redelivery saw 'busy' until its deadline."""
    from workers.orders import modify_order as task

    o = _open(r)
    producer = _capture_client(monkeypatch)
    modify_order(o.client_order_id, price="1.05", deadline_s=5)
    (_, args), = producer.sent
    msg = uuid.uuid4().hex
    # the first delivery of this message holds the lock for long after its death
    assert orderstore.modify_lock(r, o.client_order_id, msg, args[4], 60_000)[0] == "locked"
    assert task.apply(args=args, task_id=msg).get() == "OPEN"
    assert [_shown(x) for x in broker.sent] == [("1.05", 1)]
    assert not r.exists(keys.modify_lock(o.client_order_id))


# --- 8. an ambiguous modify is not recorded -----------------------------------------------------


def test_the_modify_after_an_ambiguous_one_composes_onto_it(r, monkeypatch, broker) -> None:
    """White-box twin of the black-box test below: the ambiguous modify's target is recorded as
    maybe applied, and the next full-order modify carries it instead of reverting it."""
    from workers import actions

    o = _open(r)
    broker.ambiguous = 1
    producer = _capture_client(monkeypatch)
    modify_order(o.client_order_id, price="1.05")
    modify_order(o.client_order_id, quantity=2)
    (_, first), (_, second) = producer.sent
    assert actions.run_modify(*first[:5]) == "OPEN"
    got = orderstore.get(r, o.client_order_id)
    assert got is not None and got["request"]["price"] == "1.05" and got["modify_maybe_seq"] == "1", got
    assert actions.run_modify(*second[:5]) == "OPEN"
    assert [_shown(x) for x in broker.sent] == [("1.05", 1), ("1.05", 2)]
    assert orderstore.get(r, o.client_order_id)["modify_maybe_seq"] == ""  # type: ignore[index]


@pytest.mark.slow
def test_an_ambiguous_modify_is_not_reverted_by_the_next(make_accounts, celery_workers, paper) -> None:
    """Given the broker applies a price modify and drops its answer, When the strategy then
    modifies the quantity, Then the order at the broker has the new price and the new quantity.
    Before: the ambiguous modify was not recorded and the next (full-order) modify sent the old
    price back."""
    acct = make_accounts(kite=1, angel=0)["kite1"]
    logged_in([acct])
    celery_workers.start([keys.urgent_queue(acct.name), keys.orders_queue(acct.name)])
    user = paper_user_of(acct).user_id
    h = place_order(account=acct.name, exchange="NSE", symbol="INFY", side="BUY", quantity=1,
                    order_type="LIMIT", price="1.00")
    assert h.wait(10)["state"] == "OPEN"
    paper.fault(kind="accept_then_drop", broker="kite", user_id=user, count=1)
    modify_order(h.id, price="1.05")
    wait_for(lambda: str((h.get() or {}).get("modify_status", "")).startswith("unknown"), 20,
             what="the ambiguous modify")
    modify_order(h.id, quantity=2)
    wait_for(lambda: (h.get() or {}).get("modify_applied_seq") == 2, 20, what="the second modify")
    (at_broker,) = [o for o in paper.orders() if o.get("tag") == h.id]
    assert (float(at_broker["price"]), at_broker["quantity"]) == (1.05, 2), at_broker


# --- 10. deadlines count from the enqueue ----------------------------------------------------------


@pytest.mark.slow
def test_a_modify_that_waited_in_the_queue_past_its_deadline_is_not_sent(make_accounts, celery_workers,
                                                                          paper) -> None:
    """Given no worker is on the urgent lane, When a modify with a 0.5 s deadline waits there
    longer and a worker then picks it up, Then it is not sent. Before: its deadline started when
    the task started, so a stale modify reached the broker."""
    acct = make_accounts(kite=1, angel=0)["kite1"]
    logged_in([acct])
    w = celery_workers.start([keys.urgent_queue(acct.name), keys.orders_queue(acct.name)])
    h = place_order(account=acct.name, exchange="NSE", symbol="INFY", side="BUY", quantity=1,
                    order_type="LIMIT", price="1.00")
    assert h.wait(10)["state"] == "OPEN"
    w.stop()
    r = get_redis()
    enqueued = server_time_ms(r)
    modify_order(h.id, price="1.05", deadline_s=0.5)
    wait_for(lambda: server_time_ms(r) > enqueued + 1000, 5, what="the modify's deadline passed in the queue")
    w.restart()
    status = wait_for(lambda: (h.get() or {}).get("modify_status"), 30, what="the modify picked up")
    assert str(status).startswith("not sent"), status
    (at_broker,) = [o for o in paper.orders() if o.get("tag") == h.id]
    assert at_broker["modify_count"] == 0 and float(at_broker["price"]) == 1.0, at_broker


def test_a_cancel_deadline_counts_from_its_enqueue(r, monkeypatch, broker) -> None:
    """The cancel task takes the enqueue time the client stamped (old messages without it: now)."""
    from workers import actions

    o = _open(r)
    cancels: list[str] = []
    monkeypatch.setattr(broker, "cancel", lambda _o, bid: cancels.append(bid) or bid, raising=False)
    producer = _capture_client(monkeypatch)
    from common.client import cancel_order

    cancel_order(o.client_order_id, deadline_s=0.2)
    (_, args), = producer.sent
    assert len(args) == 4 and abs(args[3] - server_time_ms(r)) < 1000, args
    actions.run_cancel(args[0], args[1], args[2], args[3] - 1000)  # waited 1 s in the queue
    assert cancels == []
    assert str(orderstore.get(r, o.client_order_id)["cancel_status"]).startswith("not sent")  # type: ignore[index]


# --- 9. an ambiguous cancel is never retried --------------------------------------------------


def test_an_ambiguous_cancel_is_sent_again_until_the_broker_confirms(r, monkeypatch, broker) -> None:
    """Cancels are idempotent at the broker: one whose answer was lost is sent again (counted as
    cancels_resent) while the order is live and the deadline allows, until one is answered."""
    from workers import actions

    o = _open(r)
    cancels: list[str] = []

    def cancel(_o: Order, bid: str) -> str:
        cancels.append(bid)
        if len(cancels) < 3:
            raise Ambiguous("read timeout after the cancel left")
        return bid

    monkeypatch.setattr(broker, "cancel", cancel, raising=False)
    actions.run_cancel("acct1", o.client_order_id, 5.0)
    assert cancels == ["B1", "B1", "B1"]
    got = orderstore.get(r, o.client_order_id)
    assert got is not None and got["cancel_status"] == "sent", got
    assert r.hget("bg:stats:acct1", "cancels_resent") == "2"
