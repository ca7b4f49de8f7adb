"""place_order_group (common/fanout.py): one signal on many accounts, each child validated, sized
to its account's lot, stored and queued exactly once, refusals reported per account. The first
tests stop at the queues (real Redis, no worker); the last run real workers against the paper
broker across brokers."""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import brokergate
from common import fanout, keys, orderstore, risk, safety
from common import settings as bg_settings
from common.derivatives import future_symbol
from common.errors import InvalidOrder
from common.instruments import store
from common.models import Instrument
from common.redis import get_redis
from common.sizing import CapitalProportional, Fixed, Multiplier
from feed.postback import create_app, serve_in_thread
from tests.brokers import ready
from tests.fixtures.accounts import paper_user_of
from tests.orders.helpers import order_requests

LIMIT = {"exchange": "NSE", "symbol": "INFY", "side": "BUY", "order_type": "LIMIT", "price": "1400.00"}


def add_group(name: str, members: list[str], multipliers: dict[str, Any] | None = None) -> None:
    """Append ``[groups.<name>]`` to the test's accounts file; the process reads it afresh."""
    path = Path(os.environ["BROKERGATE_ACCOUNTS"])
    table = f"\n[groups.{name}]\naccounts = {json.dumps(members)}\n"
    if multipliers:
        table += "multipliers = { " + ", ".join(f"{a} = {m}" for a, m in multipliers.items()) + " }\n"
    path.write_text(path.read_text() + table)
    bg_settings.accounts.cache_clear()


def queued(r: Any, account: str) -> list[str]:
    """The client_order_ids of the place messages waiting on the account's queue."""
    out = []
    for raw in r.lrange(keys.orders_queue(account), 0, -1):
        args = json.loads(base64.b64decode(json.loads(raw)["body"]))[0]
        out.append(args[0]["client_order_id"])
    return out


# --- at the queues (no worker) ---------------------------------------------------------------------
def test_a_bad_template_or_account_list_refuses_the_whole_group_and_stores_nothing(make_accounts) -> None:
    make_accounts(kite=1, angel=1)
    r = get_redis()
    with pytest.raises(InvalidOrder) as e:
        brokergate.place_order_group(["kite1", "angel1"], {**LIMIT, "side": "HOLD", "quantity": 1})
    assert e.value.field == "side"
    with pytest.raises(InvalidOrder) as e:
        brokergate.place_order_group(["kite1", "angel1"], {**LIMIT, "price": "-1", "quantity": 1})
    assert e.value.field == "price"
    with pytest.raises(InvalidOrder) as e:
        brokergate.place_order_group(["kite1", "angel1"], LIMIT)  # no quantity and no sizing
    assert e.value.field == "quantity"
    with pytest.raises(InvalidOrder) as e:
        brokergate.place_order_group([], {**LIMIT, "quantity": 1})
    assert e.value.field == "accounts"
    with pytest.raises(InvalidOrder) as e:
        brokergate.place_order_group(["kite1", "kite1"], {**LIMIT, "quantity": 1})
    assert e.value.field == "accounts"
    assert r.keys(keys.order("*")) == [] and r.keys(keys.group_order("*")) == []
    assert r.llen(keys.orders_queue("kite1")) == 0 and r.llen(keys.orders_queue("angel1")) == 0


def test_each_child_is_sized_to_its_accounts_lot_stored_and_queued_once(make_accounts) -> None:
    # Given three accounts whose masters disagree on the lot, and a group with multipliers
    make_accounts(kite=1, angel=1, fyers=1)
    r = get_redis()
    for name, lot in (("kite1", 1), ("angel1", 5), ("fyers1", 10)):
        store(name, [Instrument("NSE", "INFY", "1594", lot_size=lot)], r)
    add_group("family", ["kite1", "angel1", "fyers1"], {"angel1": 2.2, "fyers1": 0.5})
    # When one signal is placed on the group: 10 x each multiplier
    h = brokergate.place_order_group("family", LIMIT, sizing=Multiplier(10))
    # Then kite1 gets 10, angel1 22 rounded down to 20 (lots of 5), fyers1's 5 is under its lot of 10
    assert list(h.children) == ["kite1", "angel1", "fyers1"]
    report = h.report()
    assert {a: row["quantity"] for a, row in report.items()} == {"kite1": 10, "angel1": 20, "fyers1": 0}
    assert report["fyers1"]["state"] == fanout.REFUSED and "under one lot of 10" in report["fyers1"]["error"]
    assert h.refused["fyers1"].error == "Sizing"
    # And each placed child is stored NEW, marked enqueued and queued once on its own account's queue
    for a in ("kite1", "angel1"):
        child = h.children[a]
        assert isinstance(child, brokergate.OrderHandle)
        assert queued(r, a) == [child.id]
        got = orderstore.get(r, child.id)
        assert got and got["state"] == "NEW" and got["enqueued"] == "1" and got["request"]["account"] == a
    assert queued(r, "fyers1") == []
    assert len({c.id for c in h.placed.values()}) == 2  # each child its own client_order_id
    # And the group reads back by its id
    again = brokergate.get_group(h.id)
    assert again is not None and again.group == "family" and again.report() == report
    assert brokergate.get_group("nosuch") is None
    assert 0 < r.pttl(keys.group_order(h.id)) <= orderstore.retention_ms()


def test_a_child_above_the_freeze_quantity_is_sliced_and_settles_as_one(make_accounts) -> None:
    # Given a future with a lot of 65 and a freeze quantity of 1755 (27 lots) in both masters
    make_accounts(kite=1, angel=1)
    r = get_redis()
    expiry = date.today() + timedelta(days=20)
    fut = Instrument("NFO", future_symbol("NIFTY", expiry), "999", lot_size=65, kind="future", underlying="NIFTY",
                     expiry=expiry, freeze_quantity=1755)
    for name in ("kite1", "angel1"):
        store(name, [fut], r)
    add_group("pair", ["kite1", "angel1"], {"angel1": 2})
    # When 27 lots go to the group, twice that on angel1
    h = brokergate.place_order_group("pair", {"exchange": "NFO", "symbol": fut.symbol, "side": "BUY",
                                              "order_type": "LIMIT", "price": "100.00"}, sizing=Multiplier(1755))
    # Then kite1's child is one order, angel1's two slices of 1755 under one parent, each queued once
    kite, angel = h.children["kite1"], h.children["angel1"]
    assert isinstance(kite, brokergate.OrderHandle) and isinstance(angel, brokergate.SlicedHandle)
    assert queued(r, "kite1") == [kite.id] and sorted(queued(r, "angel1")) == sorted(angel.children)
    assert [orderstore.get(r, c)["request"]["quantity"] for c in angel.children] == [1755, 1755]  # type: ignore[index]
    assert brokergate.get_order(angel.id)["request"]["quantity"] == 3510  # type: ignore[index]
    report = h.report()
    assert {a: (row["state"], row["quantity"]) for a, row in report.items()} == {
        "kite1": ("NEW", 1755), "angel1": ("NEW", 3510)}
    again = brokergate.get_group(h.id)
    assert again is not None and isinstance(again.children["angel1"], brokergate.SlicedHandle)
    assert again.report() == report


def test_a_halted_unknown_or_risk_refused_account_is_reported_while_the_others_go(make_accounts) -> None:
    make_accounts(kite=1, angel=1, fyers=1)
    r = get_redis()
    safety.halt(["angel1"], "test halt")
    risk.set_limits("account:fyers1", {"max_order_quantity": 1})
    h = brokergate.place_order_group(["kite1", "angel1", "nosuch", "fyers1"], LIMIT, sizing=Fixed(2))
    refused = {a: (f.error, f.field) for a, f in h.refused.items()}
    assert refused == {"angel1": ("Halted", ""), "nosuch": ("InvalidOrder", "account"),
                       "fyers1": ("RiskRefused", "max_order_quantity")}
    assert "test halt" in h.refused["angel1"].message
    assert list(h.placed) == ["kite1"] and queued(r, "kite1") == [h.placed["kite1"].id]
    assert h.report()["kite1"]["state"] == "NEW"  # stored and queued; no worker runs here
    assert r.hget(keys.stats("fyers1"), "risk_refused") == "1"


def test_a_publish_that_fails_leaves_every_child_failed_never_queued(make_accounts, monkeypatch) -> None:
    make_accounts(kite=1, angel=1)

    class Down:
        def producer_or_acquire(self) -> Any:
            raise ConnectionError("broker down")

    monkeypatch.setattr(fanout, "_celery", lambda: Down())
    h = brokergate.place_order_group(["kite1", "angel1"], {**LIMIT, "quantity": 1})
    report = h.wait(1, final=True)  # settled at once: nothing will ever send them
    assert {row["state"] for row in report.values()} == {"FAILED"}
    assert all("not enqueued: broker down" in row["error"] for row in report.values())


# --- through workers to the paper broker -----------------------------------------------------------
def _worker_for(celery_workers: Any, names: list[str]) -> None:
    celery_workers.start([q for a in names for q in (keys.urgent_queue(a), keys.orders_queue(a))],
                         concurrency=len(names))


@pytest.mark.slow
def test_a_group_across_four_brokers_reaches_each_broker_once_with_its_share(make_accounts, celery_workers,
                                                                             paper) -> None:
    # Given an account at each broker, logged in with its master, and a group with multipliers
    accts = make_accounts(kite=1, angel=1, fyers=1, shoonya=1)
    for a in accts.values():
        ready(a)
    add_group("family", list(accts), {"angel1": 2, "fyers1": 3})
    _worker_for(celery_workers, list(accts))
    # When a marketable LIMIT buy (every broker takes it under the 2026 rules) goes to the group
    h = brokergate.place_order_group("family", {**LIMIT, "price": "10000.00"}, sizing=Multiplier(1))
    report = h.wait(30)
    # Then every child is at its broker with its account's share
    shares = {"kite1": 1, "angel1": 2, "fyers1": 3, "shoonya1": 1}
    assert {a: row["quantity"] for a, row in report.items()} == shares
    assert all(row["state"] in ("OPEN", "COMPLETE") for row in report.values()), report
    # And each reached its own broker exactly once, under its own tag, and filled there
    log = paper.requests()
    for a, acct in accts.items():
        tag = h.children[a].id  # type: ignore[union-attr]
        sent = [e for e in order_requests(log, paper_user_of(acct).user_id) if e["tag"] == tag]
        assert len(sent) == 1 and sent[0]["status"] == 200, (a, sent)
        (at_broker,) = paper.wait_for(lambda tag=tag: [o for o in paper.orders() if o["tag"] == tag
                                                       and o["filled_quantity"] == o["quantity"]], 10)
        assert at_broker["quantity"] == shares[a]
    assert Counter(o["tag"] for o in paper.orders()) == Counter({c.id: 1 for c in h.placed.values()})


@pytest.mark.slow
def test_the_handle_settles_with_each_accounts_fill_pushed_back(make_accounts, celery_workers, paper) -> None:
    # Given two accounts whose broker pushes fills to a postback receiver
    app = create_app(reconcile_on_start=False)
    receiver = serve_in_thread(app)
    try:
        for n in (1, 2):
            make_accounts(kite=1, angel=0, postback_url=f"{receiver.url}/postback/kite{n}")
        accts = {a: ready(acct) for a, acct in bg_settings.accounts().items()}
        _worker_for(celery_workers, list(accts))
        # When a marketable order goes to both, 2 each
        h = brokergate.place_order_group(list(accts), {**LIMIT, "price": "10000.00"}, sizing=Fixed(2))
        report = h.wait(30, final=True)
    finally:
        receiver.stop()
    # Then the report has each account's fill and price, as pushed
    assert {a: (row["state"], row["filled_quantity"]) for a, row in report.items()} == {
        "kite1": ("COMPLETE", 2), "kite2": ("COMPLETE", 2)}
    assert all(isinstance(row["average_price"], Decimal) and row["error"] == "" for row in report.values())


@pytest.mark.slow
def test_capital_proportional_sizing_and_cancel_of_every_live_child(make_accounts, celery_workers, paper) -> None:
    # Given two accounts at two brokers and their funds as the broker reports them
    accts = make_accounts(kite=1, fyers=1, angel=0)
    for a in accts.values():
        ready(a)
    margins = {a: brokergate.funds(a, max_age_s=0).available_margin for a in accts}  # type: ignore[union-attr]
    _worker_for(celery_workers, list(accts))
    # When a resting LIMIT buy is sized at 3 per 10 lakh of available margin
    rule = CapitalProportional(base_quantity=3, reference_capital=1_000_000)
    h = brokergate.place_order_group(list(accts), {**LIMIT, "price": "1.00"}, sizing=rule)
    # Then each account's quantity follows its own margin, and the children rest at the broker
    report = h.wait(20)
    for a, row in report.items():
        assert row["quantity"] == int(3 * margins[a] / 1_000_000) > 0, (a, row, margins)
        assert row["state"] == "OPEN"
    # And cancel() cancels each live child at its broker; the group read back agrees
    assert sorted(h.cancel()) == sorted(accts)
    final = h.wait(20, final=True)
    assert {row["state"] for row in final.values()} == {"CANCELLED"}
    assert brokergate.get_group(h.id).report() == final  # type: ignore[union-attr]
    assert h.cancel() == []  # nothing live is left


def test_an_account_whose_funds_cannot_be_read_is_refused_for_capital_sizing(make_accounts) -> None:
    # Given two accounts never logged in (no funds snapshot, and no token to read one with)
    make_accounts(kite=1, angel=1)
    h = brokergate.place_order_group(["kite1", "angel1"], LIMIT, sizing=CapitalProportional(1, 100_000))
    # Then each is refused with the reason, and nothing is stored or queued
    assert set(h.refused) == {"kite1", "angel1"} and not h.placed
    assert {f.error for f in h.refused.values()} == {"TokenExpired"}, h.refused  # no token to read funds with
    assert get_redis().keys(keys.order("*")) == []
