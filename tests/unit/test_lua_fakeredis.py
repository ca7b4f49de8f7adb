"""The Redis Lua scripts' logic, in process on fakeredis (with its Lua runtime, lupa): the limiter
(``common/lua/ratelimit_*.lua``) and the order store (``common/lua/order_*.lua``).

Fast enough to walk whole tables and run many property examples; the same scripts on a real
Redis, with real workers and timing, are tested under tests/orders/. fakeredis answers TIME from
the local clock, which is all these checks need: every expected value is computed from the time
the script itself returned."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import fakeredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import keys, orderstore, ratelimit
from common.models import OrderState, OrderUpdate
from common.orderstate import BROKER_STATES, OUR_VERDICTS, RANK, TRANSITIONS
from common.settings import Cap
from tests.orders.helpers import make_order

S = OrderState
US = 1_000_000


@pytest.fixture
def fr() -> Iterator[fakeredis.FakeRedis]:
    """A private in-process Redis (a fresh server per test)."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    yield client
    client.close()


# --- the limiter -----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(caps=st.lists(st.tuples(st.integers(1, 6), st.sampled_from([1, 2, 60, 86400])), min_size=1, max_size=3),
       answers=st.lists(st.sampled_from([None, 0, 3_000, 250_000]), min_size=1, max_size=30))
def test_reserve_script_is_the_policy_and_no_window_ever_holds_more_than_its_count(caps, answers) -> None:
    """Given any windows, When slots are reserved and some confirmed (answer back some us after the
    slot, or never), Then each slot is ``earliest_slot`` of the policy on the script's own clock,
    and no sliding window of any cap holds more than its count."""
    r = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    cs = [Cap(c, p) for c, p in caps]
    counts_at: list[int] = []
    confirmed: set[int] = set()
    for answer_us in answers:
        res = ratelimit.reserve(r, "prop", "orders", cs, margin_ms=7, confirmed_margin_ms=1)
        assert res.verdict == "ok"
        assert res.slot_us == ratelimit.earliest_slot(sorted(counts_at), res.now_us, cs, margin_us=7_000,
                                                      confirmed=confirmed, confirmed_margin_us=1_000)
        if answer_us is None:
            counts_at.append(res.slot_us)
            continue
        # What ratelimit_confirm.lua does when the answer comes answer_us after the slot (a
        # confirmed score is past its member, which is how the reserve script tells them apart)
        at = res.slot_us + answer_us + 1
        r.zadd(keys.limit("prop", "orders"), {str(res.slot_us): at}, xx=True)
        counts_at.append(at)
        confirmed.add(at)
    for cap in cs:
        assert ratelimit.max_in_window(counts_at, cap.period_s * US) <= cap.count


def test_an_ordinary_request_waits_behind_a_pending_one_and_an_urgent_one_does_not(fr) -> None:
    caps = [Cap(1, 1)]
    horizon = ratelimit.horizon_us(caps)
    first = ratelimit.reserve(fr, "a", "orders", caps, horizon_us_=horizon)
    assert first.verdict == "ok" and first.wait_us == 0
    # The next slot is a second away, beyond the horizon: not reserved, ask again later
    later = ratelimit.reserve(fr, "a", "orders", caps, horizon_us_=horizon)
    assert later.verdict == "later" and later.wait_us > 0
    assert fr.zcard(keys.limit("a", "orders")) == 1
    # An urgent request (horizon 0) takes the earliest slot however far
    urgent = ratelimit.reserve(fr, "a", "orders", caps, horizon_us_=0)
    assert urgent.verdict == "ok" and urgent.slot_us >= first.slot_us + US
    assert fr.zcard(keys.limit("a", "orders")) == 2


def test_a_slot_after_the_deadline_is_refused_and_not_taken(fr) -> None:
    caps = [Cap(1, 60)]
    first = ratelimit.reserve(fr, "a", "orders", caps)
    refused = ratelimit.reserve(fr, "a", "orders", caps, deadline_us=first.now_us + 5 * US)
    assert refused.verdict == "deadline" and refused.slot_us >= first.slot_us + 60 * US
    assert fr.zcard(keys.limit("a", "orders")) == 1


def test_a_confirmed_slot_counts_from_its_answer_and_never_moves_back(fr) -> None:
    caps = [Cap(1, 1)]
    res = ratelimit.reserve(fr, "a", "orders", caps)
    at = ratelimit.confirm(fr, "a", "orders", res.slot_us)
    assert at >= res.slot_us
    key = keys.limit("a", "orders")
    fr.zadd(key, {str(res.slot_us): at + 10 * US})  # already counted later than "now"
    assert ratelimit.confirm(fr, "a", "orders", res.slot_us) == at + 10 * US
    assert ratelimit.confirm(fr, "a", "orders", 12345) == 0  # not recorded: nothing to move
    nxt = ratelimit.reserve(fr, "a", "orders", caps, confirmed_margin_ms=2)
    assert nxt.slot_us == at + 10 * US + US + 2_000  # from the answer, plus the confirmed margin


def test_a_rate_limit_answer_backs_the_class_off_and_is_counted(fr) -> None:
    caps = [Cap(5, 1)]
    until = ratelimit.note_rate_limited(fr, "a", "orders", caps, retry_after_s=2)
    res = ratelimit.reserve(fr, "a", "orders", caps)
    assert res.verdict == "ok" and res.slot_us >= until >= res.now_us + US
    assert int(fr.hget(keys.stats("a"), "rate_limited") or 0) == 1


# --- the order store ---------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "to"), list(itertools.product(S, S)))
def test_transition_script_follows_the_table_exactly(fr, current: OrderState, to: OrderState) -> None:
    """Every (state, state) pair: the script moves exactly when the one table allows it, and an
    order that reaches a terminal state leaves the sweeper's index and wakes its handles."""
    o = make_order()
    orderstore.create(fr, o)
    fr.hset(keys.order(o.client_order_id), "state", current.value)
    moved = orderstore.transition(fr, o.client_order_id, to, source="test")
    assert moved == (to in TRANSITIONS[current] or to == current)
    got = orderstore.get(fr, o.client_order_id)
    assert got is not None and got["state"] == (to if moved else current).value
    if moved and to != current and to in orderstore.WAKE_STATES:
        assert to.value in fr.lrange(keys.order_done(o.client_order_id), 0, -1)
    indexed = fr.zscore(keys.ORDERS_ACTIVE, o.client_order_id) is not None
    if moved and to != current and to in orderstore.TERMINAL_STATES:
        assert not indexed


@pytest.mark.parametrize(("current", "pushed"), list(itertools.product(S, S)))
def test_a_pushed_update_applies_only_when_it_moves_the_order_forward(fr, current: OrderState,
                                                                       pushed: OrderState) -> None:
    o = make_order()
    orderstore.create(fr, o)
    fr.hset(keys.order(o.client_order_id), "state", current.value)
    upd = OrderUpdate(account=o.account, client_order_id=o.client_order_id, broker_order_id="B1", state=pushed,
                      source="test", filled_quantity=1 if pushed == S.COMPLETE else 0)
    changed = orderstore.apply_update(fr, upd)
    after = orderstore.get(fr, o.client_order_id)
    assert after is not None
    # Our own "not at the broker" verdicts (this order has no broker id, so CANCELLED is one too)
    # lose to a broker sighting (issue 15 item 2); nothing else moves backwards or out of a terminal.
    overturned = (current in OUR_VERDICTS or current == S.CANCELLED) and pushed in BROKER_STATES
    if overturned:
        assert changed and after["state"] == pushed.value and after["overturned_from"] == current.value
    elif RANK[pushed] < RANK[current] or current in orderstore.TERMINAL_STATES:
        assert not changed and after["state"] == current.value  # never backwards, never out of a terminal
    if changed and not overturned:
        assert RANK[S(after["state"])] >= RANK[current]
    # a replay of the same update changes nothing
    assert not orderstore.apply_update(fr, upd) or pushed == S.OPEN


def test_one_claim_owns_the_send_and_a_late_attempt_is_fenced(fr) -> None:
    o = make_order()
    orderstore.create(fr, o)
    assert orderstore.claim(fr, o.client_order_id, "a1").verdict == "claimed"
    assert orderstore.claim(fr, o.client_order_id, "a2").verdict == "claimed"  # redelivery takes over
    assert orderstore.mark_sent(fr, o.client_order_id, "a1")[0] == "lost"
    assert orderstore.mark_sent(fr, o.client_order_id, "a2")[0] == "ok"
    c = orderstore.claim(fr, o.client_order_id, "a3")
    assert c.verdict == "reconcile" and c.sent_at_ms > 0  # the request may have left: look it up first
    fr.hset(keys.order(o.client_order_id), "state", S.COMPLETE.value)
    assert orderstore.claim(fr, o.client_order_id, "a4").verdict == "done"
    assert orderstore.claim(fr, "nosuchorder", "a5").verdict == "missing"


def test_modifies_of_one_order_are_sequenced_and_fenced(fr) -> None:
    o = make_order(order_type="LIMIT", price="10")
    orderstore.create(fr, o)
    assert [orderstore.next_modify_seq(fr, o.client_order_id) for _ in range(3)] == [1, 2, 3]
    assert orderstore.modify_lock(fr, o.client_order_id, "t1", 1, 5000) == ("locked", 0)
    assert orderstore.modify_lock(fr, o.client_order_id, "t2", 2, 5000)[0] == "busy"  # one at a time
    assert not orderstore.modify_done(fr, o.client_order_id, "t2", 2)  # not the holder: fenced off
    assert orderstore.modify_done(fr, o.client_order_id, "t1", 1, {"price": "10.05"}, applied=True)
    assert orderstore.modify_lock(fr, o.client_order_id, "t3", 1, 5000)[0] == "stale"  # seq 1 is applied
    assert orderstore.modify_lock(fr, o.client_order_id, "t2", 2, 5000) == ("locked", 1)
    assert orderstore.modify_lock(fr, "nosuchorder", "t9", 9, 5000)[0] == "missing"


def test_the_claim_makes_the_same_risk_read_as_the_client_check_and_only_when_it_claims(fr) -> None:
    """The worker's authoritative risk read rides in its claim (order_claim.lua, order_lib.lua's
    risk_read): Given overrides on both scopes, a last price, a position and both counts, When
    the claim is taken with the read's keys, Then its reply is risk_read.lua's on the same state;
    a claim that does not take the order (reconcile, missing) reads nothing."""
    import json
    from decimal import Decimal

    from common import risk
    from common.portfolio import Position

    o = make_order(strategy="s1", side="SELL", reduce_only=True)  # an exit: the positions are read
    orderstore.create(fr, o)
    fr.hset(keys.risk_limits("account:acct1"), "max_open_orders", "3")
    fr.hset(keys.risk_limits("strategy:s1"), "max_orders_per_minute", "9")
    fr.hset(keys.LTP, "NSE:INFY", "1500.5")
    pos = Position("NSE", "INFY", "INTRADAY", 4, Decimal("1490"))
    fr.hset(keys.account_state("acct1", "positions"), "NSE:INFY:INTRADAY", json.dumps(pos.to_dict()))
    fr.sadd(keys.risk_open("acct1"), "OTHER")
    q = risk.read_query(o)
    c = orderstore.claim(fr, o.client_order_id, "a1", risk_read=(q.keys, q.args))
    alone = risk._script("risk_read")(fr, q.keys, q.args)
    assert c.verdict == "claimed" and c.risk_reply is not None
    assert c.risk_reply[:-1] == alone[:-1]  # all but the time it was read
    assert c.risk_reply[:3] == [["max_open_orders", "3"], ["max_orders_per_minute", "9"], "1500.5"]
    assert (c.risk_reply[4], c.risk_reply[5]) == (["1500.5"], 1)
    assert orderstore.mark_sent(fr, o.client_order_id, "a1")[0] == "ok"
    assert orderstore.claim(fr, o.client_order_id, "a2", risk_read=(q.keys, q.args)).risk_reply is None
    assert orderstore.claim(fr, "nosuchorder", "a3", risk_read=(q.keys, q.args)).risk_reply is None
