"""``import brokergate``: the strategy's one import, its order-update listener and ``handle.updates()``,
against a real Redis."""

from __future__ import annotations

import ast
import fnmatch
import queue
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

import brokergate
from common import client, errors, models, orderstore, ticks
from common.models import Order, OrderState, OrderUpdate

REPO = Path(__file__).resolve().parents[2]
S = OrderState


def _order(account: str = "acct1") -> Order:
    return Order(account=account, exchange="NSE", symbol="INFY", side="BUY", quantity=1)


def _update(o: Order, state: S, source: str = "postback", **kw: object) -> OrderUpdate:
    return OrderUpdate(account=o.account, client_order_id=o.client_order_id, broker_order_id="B1",
                       state=state, source=source, **kw)  # type: ignore[arg-type]


# ----- the package ---------------------------------------------------------------------------


def test_the_public_names_are_explicit_and_are_commons_objects() -> None:
    # Given the package's declared surface
    public = set(brokergate.__all__)
    # Then everything a strategy needs is in it, by the documented names
    assert {"place_order", "cancel_order", "modify_order", "get_order", "subscribe_ticks", "OrderHandle",
            "on_order_update", "Order", "OrderUpdate", "Tick", "Instrument", "OrderState"} <= public
    # the whole error tree a strategy meets (IllegalTransition is the order store's own
    # programming-error guard, raised inside workers, never an answer to a strategy)
    assert set(errors.__all__) - {"IllegalTransition"} <= public
    # and each name is the implementation's own object (one class, so isinstance and except work)
    for name in brokergate.__all__:
        assert hasattr(brokergate, name), name
    assert brokergate.place_order is client.place_order and brokergate.OrderHandle is client.OrderHandle
    assert brokergate.Order is models.Order and brokergate.subscribe_ticks is ticks.subscribe_ticks
    assert brokergate.InvalidOrder is errors.InvalidOrder
    # and the documented older import keeps working
    assert {"place_order", "cancel_order", "modify_order", "get_order", "subscribe_ticks"} <= set(client.__all__)


def test_the_example_strategy_imports_nothing_from_common() -> None:
    tree = ast.parse((REPO / "examples" / "strategy.py").read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert "brokergate" in imported
    assert not [m for m in imported if m.split(".")[0] in ("common", "workers", "feed", "beat", "paper")], imported


def test_the_package_is_installed_with_the_project() -> None:
    # setuptools installs only the packages its find.include patterns name
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    include = cfg["tool"]["setuptools"]["packages"]["find"]["include"]
    assert any(fnmatch.fnmatch("brokergate", pat) for pat in include), include
    assert "COPY brokergate" in (REPO / "Dockerfile").read_text()


def test_every_order_field_is_documented_in_the_readme_api_section() -> None:
    readme = (REPO / "README.md").read_text()
    api = readme.split("## API", 1)[1].split("\n## ", 1)[0]
    for field in Order.__dataclass_fields__:
        assert f"`{field}`" in api, f"Order.{field} is not in the README's API section"
    for name in ("on_order_update", "updates(", "subscribe_ticks", "OrderUpdate"):
        assert name in api, name


# ----- on_order_update -------------------------------------------------------------------------


def test_on_order_update_calls_back_every_update_of_the_account_until_stopped(r) -> None:
    # Given an order of acct1, one of acct2, and a listener on acct1 whose callback fails once
    mine, other = _order("acct1"), _order("acct2")
    orderstore.create(r, mine)
    orderstore.create(r, other)
    got: queue.Queue[OrderUpdate] = queue.Queue()
    calls = 0

    def callback(u: OrderUpdate) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a strategy bug")  # logged and counted, the listener carries on
        got.put(u)

    listener = brokergate.on_order_update("acct1", callback, r=r)
    try:
        # When both orders move (the subscription is confirmed before on_order_update returns)
        orderstore.claim(r, mine.client_order_id, "a1")
        orderstore.apply_update(r, _update(other, S.OPEN))
        orderstore.apply_update(r, _update(mine, S.OPEN, pending_quantity=1))  # the callback raises on this one
        orderstore.apply_update(r, _update(mine, S.OPEN, filled_quantity=1))
        orderstore.apply_update(r, _update(mine, S.COMPLETE, filled_quantity=1, average_price=Decimal("1501.35")))
        # Then acct1's updates arrive, in order, decoded; acct2's never
        first = got.get(timeout=5)
        second = got.get(timeout=5)
    finally:
        listener.stop()
    assert calls == 3 and listener.errors == 1
    assert (first.state, first.filled_quantity, second.state) == (S.OPEN, 1, S.COMPLETE)
    assert {first.client_order_id, second.client_order_id} == {mine.client_order_id}
    assert second.average_price == Decimal("1501.35") and second.source == "postback"
    assert got.empty()
    # And stop() ended the thread
    assert not listener.running


def test_on_order_update_takes_several_accounts_and_works_as_a_context_manager(r) -> None:
    a, b = _order("acct1"), _order("acct2")
    orderstore.create(r, a)
    orderstore.create(r, b)
    got: queue.Queue[OrderUpdate] = queue.Queue()
    with brokergate.on_order_update(["acct1", "acct2"], got.put, r=r) as listener:
        orderstore.transition(r, a.client_order_id, S.FAILED, source="test")
        orderstore.transition(r, b.client_order_id, S.EXPIRED, source="test")
        seen = {got.get(timeout=5).account, got.get(timeout=5).account}
    assert seen == {"acct1", "acct2"}
    assert not listener.running


# ----- OrderHandle.updates -----------------------------------------------------------------------


def test_handle_updates_start_from_the_store_and_end_when_settled(r) -> None:
    # Given an order that was already acknowledged before anyone listened
    o = _order()
    orderstore.create(r, o)
    orderstore.claim(r, o.client_order_id, "a1")
    orderstore.apply_update(r, _update(o, S.OPEN, source="socket", pending_quantity=1))
    handle = brokergate.OrderHandle(o.client_order_id, o.account, r)
    # When the strategy iterates its updates
    it = handle.updates(timeout_s=5)
    first = next(it)
    # Then the first is the order as stored, with the source of its last change
    assert first.state == S.OPEN and first.source == "socket" and first.broker_order_id == "B1"
    # And a later push of this order arrives; another order's does not
    other = _order()
    orderstore.create(r, other)
    orderstore.transition(r, other.client_order_id, S.FAILED, source="test")
    orderstore.apply_update(r, _update(o, S.OPEN, pending_quantity=0, filled_quantity=1))
    orderstore.apply_update(r, _update(o, S.COMPLETE, filled_quantity=1, average_price=Decimal("10.05")))
    rest = list(it)  # ends by itself after the settling update
    assert [u.state for u in rest] == [S.OPEN, S.COMPLETE]
    assert rest[-1].average_price == Decimal("10.05")
    assert {u.client_order_id for u in rest} == {o.client_order_id}


def test_handle_updates_of_a_settled_order_is_just_its_stored_state(r) -> None:
    o = _order()
    orderstore.create(r, o)
    orderstore.transition(r, o.client_order_id, S.EXPIRED, source="sweeper")
    updates = list(brokergate.OrderHandle(o.client_order_id, o.account, r).updates(timeout_s=1))
    assert [(u.state, u.source) for u in updates] == [(S.EXPIRED, "sweeper")]


def test_handle_updates_time_out_when_nothing_happens(r) -> None:
    o = _order()
    orderstore.create(r, o)
    it = brokergate.OrderHandle(o.client_order_id, o.account, r).updates(timeout_s=0.3)
    assert next(it).state == S.NEW
    with pytest.raises(TimeoutError):
        next(it)
