"""The order state machine in one module: derived sets agree with the table, and a move the table
forbids, asked for by name, is an error (a lost compare-and-set is not)."""

from __future__ import annotations

import fakeredis
import pytest

from common import orderstore
from common.errors import IllegalTransition
from common.models import Order
from common.orderstate import TERMINAL_STATES, TRANSITIONS, WAKE_STATES, check_move
from common.orderstate import OrderState as S


def test_terminal_and_wake_states_come_from_the_table() -> None:
    assert {S.COMPLETE, S.REJECTED, S.CANCELLED, S.FAILED, S.EXPIRED} == TERMINAL_STATES
    assert all(not TRANSITIONS[s] for s in TERMINAL_STATES)
    assert TERMINAL_STATES | {S.OPEN} == WAKE_STATES


def test_check_move_raises_exactly_where_the_table_forbids() -> None:
    for cur in S:
        for to in S:
            if to == cur or to in TRANSITIONS[cur]:
                check_move(cur, to)
            else:
                with pytest.raises(IllegalTransition):
                    check_move(cur, to)


def test_an_illegal_move_by_name_raises_before_writing_and_a_lost_race_returns_false() -> None:
    r = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    o = Order(account="acct1", exchange="NSE", symbol="INFY", side="BUY", quantity=1)
    orderstore.create(r, o)
    # Given a caller that names COMPLETE as a state it moves to OPEN from: a bug, said at once
    with pytest.raises(IllegalTransition):
        orderstore.transition(r, o.client_order_id, S.OPEN, allowed_from={S.SENDING, S.COMPLETE})
    assert orderstore.get(r, o.client_order_id)["state"] == S.NEW  # type: ignore[index]
    # A legal move whose compare-and-set loses (the order is not SENDING) is a plain False
    assert orderstore.transition(r, o.client_order_id, S.OPEN, allowed_from={S.SENDING}) is False
