"""The order store's batched create and read (one round trip for a group's children), against a
real Redis: each order exactly as create() stores it alone."""

from __future__ import annotations

from typing import Any

from common import keys, orderstore
from common.errors import InvalidOrder
from tests.orders.helpers import make_order

_MOVING = {"created_ms", "updated_ms", "deadline_ms", "create_nonce", "history", "client_order_id", "request"}


def _fixed(stored: dict[str, Any]) -> dict[str, Any]:
    """What does not move between two creates of equal orders (times, ids and nonces do)."""
    return {k: v for k, v in stored.items() if k not in _MOVING}


def test_create_many_stores_each_order_as_create_does_in_one_round_trip(r) -> None:
    alone = make_order(account="acct1")
    orderstore.create(r, alone)
    batch = [make_order(account=f"acct{i}") for i in (1, 2, 3)]
    got = orderstore.create_many(r, batch)
    assert all(isinstance(d, int) and d > 0 for d in got), got
    stored = orderstore.get_many(r, [o.client_order_id for o in batch])
    one = orderstore.get(r, alone.client_order_id)
    assert one is not None and stored[0] is not None
    assert set(stored[0]) == set(one) and _fixed(stored[0]) == _fixed(one)  # state NEW, nothing else set
    assert stored[0]["deadline_ms"] - stored[0]["created_ms"] == one["deadline_ms"] - one["created_ms"]
    assert [s["account"] for s in stored if s] == ["acct1", "acct2", "acct3"]
    assert [s["history"][0]["state"] for s in stored if s] == ["NEW"] * 3
    assert set(r.zrange(keys.ORDERS_ACTIVE, 0, -1)) >= {o.client_order_id for o in batch}


def test_an_id_in_use_is_refused_in_its_slot_and_the_others_are_stored(r) -> None:
    taken = make_order()
    orderstore.create(r, taken)
    fresh = make_order()
    got = orderstore.create_many(r, [taken, fresh])
    assert isinstance(got[0], InvalidOrder) and got[0].field == "client_order_id"
    assert isinstance(got[1], int)
    assert orderstore.get(r, fresh.client_order_id) is not None


def test_a_server_that_forgot_the_script_gets_it_again(r) -> None:
    r.script_flush()  # a restarted or failed-over Redis: NOSCRIPT for every call of the pipeline
    batch = [make_order(), make_order()]
    got = orderstore.create_many(r, batch)
    assert all(isinstance(d, int) for d in got), got
    assert orderstore.get_many(r, [o.client_order_id for o in batch] + ["nosuch"])[2] is None
