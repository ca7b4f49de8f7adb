"""Review findings: each test reproduces one correctness bug (fast, real Redis, fake adapters)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pytest

from common import keys, orderstore
from common.errors import Ambiguous, TokenExpired
from common.models import Order, OrderState
from common.redis import server_time_ms
from common.settings import Account, Cap, Secret
from tests.orders.helpers import make_order, slow_connections

S = OrderState


def _acct(caps: dict[str, tuple[Cap, ...]] | None = None) -> Account:
    return Account(name="acct1", broker="kite", user_id="U1", api_key="k", password=Secret(""),
                   totp_secret=Secret(""), api_secret=Secret(""), rest_url="http://127.0.0.1:9", login_url="",
                   ws_url="", order_ws_url="", caps=caps or {}, extra={"read_timeout_s": 0})


def _sent(r: Any, o: Order) -> int:
    """Create, claim and mark the order sent; returns sent_at_ms."""
    orderstore.create(r, o)
    assert orderstore.claim(r, o.client_order_id, "a1").verdict == "claimed"
    assert orderstore.mark_sent(r, o.client_order_id, "a1")[0] == "ok"
    return int(orderstore.get(r, o.client_order_id)["sent_at_ms"])  # type: ignore[index]


def test_reconcile_one_never_resends_on_a_book_read_issued_before_the_send_window_closed(r, monkeypatch) -> None:
    """A book read that was ASKED before settle_ms but ANSWERED after it says nothing about a
    request still in flight at that moment: resending on it is a duplicate."""
    from workers import brokercall as bc
    from workers import placing

    monkeypatch.setattr(bc, "BOOK_LAG_S", 0.3)
    monkeypatch.setattr(bc, "CONNECT_TIMEOUT_S", 0.0)
    o = make_order()
    sent_at = _sent(r, o)
    orderstore.transition(r, o.client_order_id, S.UNKNOWN, allowed_from={S.SENDING}, cas=("attempt", "a1"))
    settle_ms = sent_at + 300
    asked: list[int] = []
    resent_after: list[list[int]] = []

    def slow_lookup(_r: Any, _acct: Any, _tag: str, _deadline_ms: int) -> None:
        asked.append(server_time_ms(r))
        time.sleep(0.5)  # a slow order-book answer (the broker under load)
        return None

    def fake_send(*_a: Any, **_k: Any) -> str:
        resent_after.append(list(asked))
        return "RESENT"

    monkeypatch.setattr(placing, "book_lookup", slow_lookup)
    monkeypatch.setattr(placing, "send", fake_send)
    deadline_ms = int(orderstore.get(r, o.client_order_id)["deadline_ms"])  # type: ignore[index]
    assert placing.reconcile_one(r, _acct(), o, deadline_ms, sent_at) == "RESENT"
    assert resent_after and max(resent_after[0]) >= settle_ms, (
        f"resent on book reads asked at {[a - settle_ms for a in resent_after[0]]} ms from settle")


def test_reconcile_never_fails_an_order_on_a_book_read_issued_before_its_send_window_closed(r, monkeypatch) -> None:
    """Same race in the sweeper's reconcile: FAILED is terminal, so the broker's later OPEN /
    COMPLETE for that order would be ignored (a position brokergate does not know about)."""
    from workers import brokercall as bc
    from workers import sweeper

    monkeypatch.setattr(bc, "BOOK_LAG_S", 0.3)
    monkeypatch.setattr(bc, "CONNECT_TIMEOUT_S", 0.0)
    acct = _acct()

    class SlowBook:
        def orders(self) -> list[Any]:
            time.sleep(0.5)
            return []

    monkeypatch.setattr(bc, "account", lambda _name: acct)
    monkeypatch.setattr(bc, "adapter_for", lambda _a: SlowBook())
    o = make_order()
    _sent(r, o)
    now = server_time_ms(r)
    # sent 100 ms ago (the window of 300 ms closes in 200 ms), the deadline long past
    r.hset(keys.order(o.client_order_id), mapping={"sent_at_ms": now - 100, "deadline_ms": 1})
    counts = sweeper.reconcile("acct1", [o.client_order_id])
    assert counts["failed"] == 0
    assert orderstore.get(r, o.client_order_id)["state"] == "SENDING"  # type: ignore[index]


@pytest.mark.parametrize(("status", "code"), [(500, "AB1004"), (504, "AB1004"), (500, "AB2001"), (504, "AB2000")])
def test_angel_internal_error_or_gateway_timeout_is_ambiguous_not_safe_to_resend(status: int, code: str) -> None:
    """Only 502/503 say the gateway refused before the OMS; a 500 or a 504 may come after the
    OMS acted (Kite's map does the same), so it must be reconciled, never resent blindly."""
    from common.brokers.angel.errors import map_error

    err = map_error(status, {"status": False, "errorcode": code, "message": "Something went wrong"})
    assert isinstance(err, Ambiguous), type(err)


def test_place_order_does_not_raise_not_enqueued_when_a_worker_already_has_the_order(r, monkeypatch) -> None:
    """send_task can fail after the message was published (a lost reply, then retries run out).
    If a worker claimed the order meanwhile, the order WILL be sent: raising 'not enqueued'
    tells the strategy it was not placed (and it places it again: a duplicate position)."""
    from common import client

    o = make_order()

    class FlakyProducer:
        def send_task(self, *_a: Any, **_k: Any) -> None:
            # the message got through and a worker claimed it; then the publish call failed
            orderstore.claim(r, o.client_order_id, "w1")
            raise ConnectionError("connection reset while publishing")

    monkeypatch.setattr(client, "_validated", lambda order: (order, None))
    monkeypatch.setattr(client, "_celery", lambda: FlakyProducer())
    h = client.place_order(o)
    assert h.id == o.client_order_id
    assert orderstore.get(r, o.client_order_id)["state"] == "SENDING"  # type: ignore[index]


def test_a_cancel_slot_is_confirmed_when_its_answer_is_back(r, monkeypatch) -> None:
    """Every used slot is moved to its answer time (ratelimit.confirm), so the next slots count
    from when the broker may have counted it; cancels and modifies skipped it."""
    from workers import actions
    from workers import brokercall as bc

    acct = _acct({"orders": (Cap(10, 1),)})

    class SlowCancel:
        def cancel(self, _order: Any, _bid: str) -> str:
            time.sleep(0.1)
            return "B1"

        def order_by_tag(self, _tag: str) -> None:
            return None

    monkeypatch.setattr(bc, "account", lambda _name: acct)
    monkeypatch.setattr(bc, "adapter_for", lambda _a: SlowCancel())
    o = make_order()
    orderstore.create(r, o)
    orderstore.apply_update(r, __import__("common.models", fromlist=["OrderUpdate"]).OrderUpdate(
        account="acct1", client_order_id=o.client_order_id, broker_order_id="B1", state=S.OPEN, source="test"))
    assert actions.run_cancel("acct1", o.client_order_id) == "OPEN"
    # The account's scoped state once workers/ build limiters with Limiter.for_account (issue 15
    # item 5); the per-account one while they still use the legacy constructor.
    key = next(k for k in (keys.limit(acct.limit_scope(), "orders"), keys.limit("acct1", "orders")) if r.exists(k))
    ((member, score),) = r.zrange(key, 0, -1, withscores=True)
    assert score - int(member) >= 90_000, "the cancel's slot still counts from before its request left"


def test_relogin_after_token_expired_names_the_version_that_was_refused(r, monkeypatch) -> None:
    """If another worker re-logged in while our request was in flight, reading the version
    AFTER the refusal names the NEW token as stale: relogin() then logs in again, which (at
    the paper broker, and at brokers with one session per key) revokes the token every other
    worker just got: a re-login cascade, and orders FAILED after their one re-login."""
    from common import tokens
    from workers import brokercall as bc
    from workers import placing

    acct = _acct()
    far = server_time_ms(r) + 3_600_000
    v1 = tokens.store_token("acct1", access_token="t1", expires_at_ms=far, r=r).version
    stale_seen: list[int] = []

    class Adapter:
        calls = 0

        def place(self, _order: Any, _inst: Any) -> str:
            Adapter.calls += 1
            if Adapter.calls == 1:
                tokens.get_token("acct1")  # the request goes out with v1 ...
                tokens.store_token("acct1", access_token="t2", expires_at_ms=far, r=r)  # ... another worker re-logs in
                raise TokenExpired("token t1 refused")
            return "B1"

    monkeypatch.setattr(bc, "adapter_for", lambda _a: Adapter())
    monkeypatch.setattr(bc, "instrument", lambda _a, _o: None)
    monkeypatch.setattr(bc, "_relogin", lambda _a, stale, _rem: stale_seen.append(stale))
    o = make_order()
    orderstore.create(r, o)
    c = orderstore.claim(r, o.client_order_id, "a1")
    assert placing.send(r, acct, o, "a1", c.deadline_ms) == "OPEN"
    assert stale_seen == [v1]


def test_an_order_whose_connection_is_made_after_its_deadline_is_not_sent(r, kite_recorder, monkeypatch) -> None:
    """mark_sent checks the deadline, then the request may still need a new TCP connection (DNS,
    a lost SYN: seconds). The request must not leave once the deadline has passed meanwhile."""
    from common.brokers.kite.rest import Adapter
    from workers import brokercall as bc
    from workers import placing

    acct = dataclasses.replace(_acct(), rest_url=kite_recorder.url, extra={"read_timeout_s": 5})
    adapter = Adapter(acct, lambda: "tok")
    slow_connections(monkeypatch, 0.6)  # a slow DNS answer or a retransmitted SYN
    monkeypatch.setattr(bc, "adapter_for", lambda _a: adapter)
    monkeypatch.setattr(bc, "instrument", lambda _a, _o: None)
    monkeypatch.setattr(bc, "UNAVAILABLE_BACKOFF_S", (0.01,))
    o = make_order(deadline_s=0.3)
    orderstore.create(r, o)
    c = orderstore.claim(r, o.client_order_id, "a1")
    state = placing.send(r, acct, o, "a1", c.deadline_ms)
    late = [t - c.deadline_ms for t in kite_recorder.arrived if t > c.deadline_ms]
    assert not late, f"the order reached the broker {late} ms after its deadline"
    assert state == "EXPIRED"


def test_two_concurrent_modifies_of_one_order_both_take_effect(r, monkeypatch) -> None:
    """Two workers on the urgent lane run two modifies of one order at once: each merges its
    change onto the request read before the other's was sent, and sends the whole order (Angel
    wants the whole order; Kite's form carries every field), so the later one undoes the other."""
    import threading

    from workers import actions

    sent: list[Order] = []

    def slow_send(order: Order, changes: dict[str, Any]) -> None:
        time.sleep(0.2)
        sent.append(order.with_(**changes))

    _modifies_reach(monkeypatch, slow_send)
    o = make_order(order_type="LIMIT", price="1.00")
    _open(r, o)
    a = threading.Thread(target=actions.run_modify, args=("acct1", o.client_order_id, {"price": "1.05"}))
    a.start()
    time.sleep(0.05)
    actions.run_modify("acct1", o.client_order_id, {"quantity": 2})
    a.join()
    final = sent[-1]
    assert (str(final.price), final.quantity) == ("1.05", 2), [(str(x.price), x.quantity) for x in sent]


@pytest.mark.parametrize("broker", ["kite", "angel"])
def test_a_book_row_with_our_tag_and_a_status_we_do_not_know_is_not_absent(broker: str, r, monkeypatch) -> None:
    """The book shows the order (our tag) in a status missing from the table (a new or rare
    broker status, Angel's blank early status): reconciliation must not conclude 'absent' and
    resend it (a duplicate), nor the sweeper mark it FAILED (then its fills are ignored)."""
    import importlib

    from workers import brokercall as bc
    from workers import placing, sweeper

    rest = importlib.import_module(f"common.brokers.{broker}.rest")
    acct = dataclasses.replace(_acct(), broker=broker)
    o = make_order()
    if broker == "kite":
        book = {"status": "success", "data": [{"order_id": "B1", "tag": o.client_order_id, "status": "LAPSED"}]}
    else:
        book = {"status": True, "data": [{"orderid": "B1", "ordertag": o.client_order_id, "orderstatus": ""}]}
    adapter = rest.Adapter(acct, lambda: "tok")
    monkeypatch.setattr(adapter, "_call", lambda *_a, **_k: book)
    monkeypatch.setattr(bc, "adapter_for", lambda _a: adapter)
    monkeypatch.setattr(bc, "account", lambda _name: acct)
    monkeypatch.setattr(bc, "BOOK_LAG_S", 0.0)
    monkeypatch.setattr(bc, "CONNECT_TIMEOUT_S", 0.0)
    resent: list[str] = []
    monkeypatch.setattr(placing, "send", lambda *_a, **_k: resent.append("x") or "RESENT")
    sent_at = _sent(r, o)
    time.sleep(0.01)  # past the send window (read timeout 0 + book lag 0)
    deadline_ms = int(orderstore.get(r, o.client_order_id)["deadline_ms"])  # type: ignore[index]
    placing.reconcile_one(r, acct, o, deadline_ms, sent_at)
    assert not resent, "resent an order the book shows"
    r.hset(keys.order(o.client_order_id), "deadline_ms", 1)
    assert sweeper.reconcile("acct1", [o.client_order_id])["failed"] == 0
    assert orderstore.get(r, o.client_order_id)["state"] in ("SENDING", "UNKNOWN")  # type: ignore[index]


def test_kite_permission_refusal_is_a_refusal_not_an_expired_session() -> None:
    """Kite answers 403 PermissionException for a call the app may not make (pykiteconnect has the
    type). As TokenExpired it costs a real re-login per order (at brokers with one session per
    key that revokes the token every worker uses) and ends FAILED after the second refusal."""
    from common.brokers.kite.errors import map_error
    from common.errors import OrderRejected

    err = map_error(403, {"status": "error", "error_type": "PermissionException", "message": "Insufficient permission"})
    assert isinstance(err, OrderRejected), type(err)


def test_a_cancel_of_a_claimed_but_unsent_order_stops_it_from_being_sent(r, monkeypatch) -> None:
    """The order is claimed (SENDING) but still waits for its slot, longer than the cancel's
    deadline (a burst of entries ahead). The cancel was dropped ('not sent: order is SENDING')
    and the order went out afterwards: an order the strategy cancelled reached the market."""
    from workers import actions
    from workers import brokercall as bc

    monkeypatch.setattr(bc, "account", lambda _name: _acct())
    o = make_order()
    orderstore.create(r, o)
    assert orderstore.claim(r, o.client_order_id, "a1").verdict == "claimed"
    actions.run_cancel("acct1", o.client_order_id, deadline_s=0.2)
    assert orderstore.mark_sent(r, o.client_order_id, "a1")[0] == "lost"  # the worker may not send it now
    assert orderstore.get(r, o.client_order_id)["state"] == "CANCELLED"  # type: ignore[index]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize("broker", ["kite", "angel"])
def test_an_unknown_error_code_with_a_5xx_status_is_ambiguous(broker: str, status: int) -> None:
    """A code missing from the table says nothing about what the OMS did; with a 5xx the OMS may
    have acted before it failed: reconcile before anything else, never a final refusal."""
    import importlib

    map_error = importlib.import_module(f"common.brokers.{broker}.errors").map_error
    if broker == "kite":
        body: dict[str, Any] = {"status": "error", "error_type": "BrandNewException", "message": "oops"}
    else:
        body = {"status": False, "errorcode": "AB9999", "message": "oops"}
    err = map_error(status, body)
    assert isinstance(err, Ambiguous), type(err)
    assert err.code == body.get("error_type", body.get("errorcode"))


def test_an_unknown_angel_error_code_below_500_is_still_a_refusal() -> None:
    from common.brokers.angel.errors import map_error
    from common.errors import OrderRejected

    assert isinstance(map_error(200, {"status": False, "errorcode": "AB9999", "message": "x"}), OrderRejected)


def _open(r: Any, o: Order) -> None:
    from common.models import OrderUpdate

    orderstore.create(r, o)
    orderstore.apply_update(r, OrderUpdate(account="acct1", client_order_id=o.client_order_id,
                                           broker_order_id="B1", state=S.OPEN, source="test"))


def _modifies_reach(monkeypatch: pytest.MonkeyPatch, record: Callable[[Order, dict[str, Any]], None]) -> None:
    """The worker's modifies of acct1 go to a stand-in broker that calls ``record(order, changes)``
    and answers broker id B1 (and finds nothing by tag)."""
    from workers import brokercall as bc

    acct = _acct()

    class Broker:
        def modify(self, order: Order, _bid: str, changes: dict[str, Any], _inst: Any) -> str:
            record(order, changes)
            return "B1"

        def order_by_tag(self, _tag: str) -> None:
            return None

    monkeypatch.setattr(bc, "account", lambda _name: acct)
    monkeypatch.setattr(bc, "adapter_for", lambda _a: Broker())
    monkeypatch.setattr(bc, "instrument", lambda _a, _o: None)


def test_a_modify_older_than_the_last_applied_one_is_dropped(r, monkeypatch) -> None:
    """The client stamps each modify with the order's next sequence; a worker that gets seq 1
    after seq 2 was applied (two workers, or a redelivery) must not undo seq 2 with it."""
    from workers import actions

    sent: list[dict[str, Any]] = []
    _modifies_reach(monkeypatch, lambda _order, changes: sent.append(changes))
    o = make_order(order_type="LIMIT", price="1.00")
    _open(r, o)
    s1, s2 = orderstore.next_modify_seq(r, o.client_order_id), orderstore.next_modify_seq(r, o.client_order_id)
    assert (s1, s2) == (1, 2)
    assert actions.run_modify("acct1", o.client_order_id, {"price": "1.10"}, seq=s2) == "OPEN"
    assert actions.run_modify("acct1", o.client_order_id, {"price": "1.05"}, seq=s1) == "DROPPED"
    assert actions.run_modify("acct1", o.client_order_id, {"price": "1.10"}, seq=s2) == "DROPPED"  # delivered again
    got = orderstore.get(r, o.client_order_id)
    assert sent == [{"price": "1.10"}]
    assert got["request"]["price"] == "1.10" and got["modify_applied_seq"] == 2  # type: ignore[index]
    assert not r.exists(keys.modify_lock(o.client_order_id))


def test_a_modify_whose_lock_expired_records_nothing(r) -> None:
    """The lock is fenced: a holder that outlived it (and was taken over) cannot write its request."""
    o = make_order(order_type="LIMIT", price="1.00")
    _open(r, o)
    coid = o.client_order_id
    assert orderstore.modify_lock(r, coid, "a", 1, 50)[0] == "locked"
    assert orderstore.modify_lock(r, coid, "b", 2, 5000)[0] == "busy"
    assert orderstore.modify_lock(r, coid, "a", 1, 50)[0] == "locked"  # the holder again (a retry)
    time.sleep(0.1)
    assert orderstore.modify_lock(r, coid, "b", 2, 5000)[0] == "locked"
    assert not orderstore.modify_done(r, coid, "a", 1, {"request": "{}"}, applied=True)
    assert orderstore.get(r, coid)["request"]["price"] == "1.00"  # type: ignore[index]
    assert orderstore.modify_done(r, coid, "b", 2, {"modify_status": "sent"}, applied=True)
    assert orderstore.modify_lock(r, coid, "c", 1, 5000)[0] == "stale"
    assert orderstore.get(r, coid)["modify_applied_seq"] == 2  # type: ignore[index]


def test_the_client_stamps_each_modify_with_the_next_sequence(r, monkeypatch) -> None:
    from common import client

    o = make_order(order_type="LIMIT", price="1.00")
    _open(r, o)
    sent: list[list[Any]] = []

    class Producer:
        def send_task(self, _name: str, args: list[Any], **_k: Any) -> None:
            sent.append(args)

    monkeypatch.setattr(client, "_validate", lambda order: order)
    monkeypatch.setattr(client, "_celery", lambda: Producer())
    client.modify_order(o.client_order_id, price="1.05")
    client.modify_order(o.client_order_id, quantity=2)
    assert [a[4] for a in sent] == [1, 2]  # seq; then the enqueue time
    assert [a[2] for a in sent] == [{"price": "1.05"}, {"quantity": 2}]


class _Book:
    """A fake broker: counts places; its book shows what was placed."""

    def __init__(self) -> None:
        self.placed: list[str] = []

    def place(self, order: Order, _inst: Any) -> str:
        self.placed.append(order.client_order_id)
        return "B1"

    def order_by_tag(self, tag: str) -> Any:
        from common.models import OrderUpdate

        if tag not in self.placed:
            return None
        return OrderUpdate(account="acct1", client_order_id=tag, broker_order_id="B1", state=S.OPEN)


def _flaky(real: Any, fail_at: int, before: bool) -> Any:
    """``real``, except that call number ``fail_at`` raises redis ConnectionError (Redis went
    away): before running (nothing done) or after it (done on the server, the reply lost)."""
    import redis as redis_lib

    calls = {"n": 0}

    def wrapper(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == fail_at and before:
            raise redis_lib.ConnectionError("Connection refused")
        out = real(*a, **k)
        if calls["n"] == fail_at:
            raise redis_lib.ConnectionError("Connection closed by server")
        return out

    return wrapper


@pytest.mark.parametrize(("where", "fail_at", "before"), [
    ("claim", 1, True),  # nothing claimed yet
    ("mark_sent", 1, False),  # sent_at recorded, the reply lost: the request never left
    ("apply_update", 1, True),  # the order is at the broker; recording OPEN failed
])
def test_a_redis_outage_mid_place_is_ridden_out_and_the_order_sent_once(where: str, fail_at: int, before: bool,
                                                                        r, monkeypatch) -> None:
    """Redis goes away at any step of run_place: the task runs the work again once it is back,
    and the state in Redis decides (claim, mark_sent): the order reaches the broker exactly
    once and ends OPEN, instead of the task failing and the order expiring."""
    from workers import brokercall as bc
    from workers import orders, placing

    acct = _acct()
    book = _Book()
    monkeypatch.setattr(bc, "account", lambda _name: acct)
    monkeypatch.setattr(bc, "adapter_for", lambda _a: book)
    monkeypatch.setattr(bc, "instrument", lambda _a, _o: None)
    monkeypatch.setattr(bc, "BOOK_LAG_S", 0.05)
    monkeypatch.setattr(bc, "CONNECT_TIMEOUT_S", 0.0)
    monkeypatch.setattr(orders, "REDIS_RETRY_S", (0.01,))
    monkeypatch.setattr(orders.orderstore, where, _flaky(getattr(orderstore, where), fail_at, before))
    o = make_order(deadline_s=5)
    orderstore.create(r, o)
    state = orders._riding_out_redis("place", lambda: placing.run_place(o.to_dict()), 5)
    assert state == "OPEN"
    assert book.placed == [o.client_order_id]
    assert orderstore.get(r, o.client_order_id)["state"] == "OPEN"  # type: ignore[index]


def test_redis_down_past_the_budget_puts_the_message_back(monkeypatch) -> None:
    import redis as redis_lib
    from celery.exceptions import Reject

    from workers import orders

    monkeypatch.setattr(orders, "REDIS_RETRY_S", (0.01,))
    runs: list[int] = []

    def work() -> str:
        runs.append(1)
        raise redis_lib.ConnectionError("Connection refused")

    with pytest.raises(Reject) as e:
        orders._riding_out_redis("place", work, 0.1)
    assert e.value.requeue and len(runs) > 2
