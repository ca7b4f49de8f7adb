"""The kill switch (common/safety.py, issue #18): a halted account takes exits only, entries behind
the halt end REJECTED without reaching the broker, open orders are cancelled, positions squared
off, and the halt survives in Redis until resumed. Against the paper broker with real workers."""

from __future__ import annotations

import subprocess
import sys
import threading
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from common import accountstate, keys, orderstore, safety
from common.client import place_order, send_task_by_name
from common.errors import Halted, InvalidOrder
from common.models import Order, OrderState
from common.portfolio import Position
from common.redis import get_redis, server_time_ms
from devtools.waiting import wait_for
from tests.brokers import ready
from tests.fixtures.accounts import paper_user_of
from tests.orders.helpers import order_requests
from tests.paths import REPO
from tests.safety import runaway

pytestmark = pytest.mark.slow


def test_a_halted_account_refuses_entries_at_the_client_and_still_takes_exits(make_accounts, r) -> None:
    """Given a halted account holding 5 INFY, When a strategy places an entry, Then Halted names the
    reason before anything is stored; a reduce_only SELL of 3 is taken, one of 6 (it would open a
    short) is refused naming reduce_only; after resume, entries are taken again."""
    make_accounts(kite=1, angel=0)
    accountstate.apply_fill(r, "kite1", {"exchange": "NSE", "symbol": "INFY", "product": "INTRADAY", "side": "BUY"},
                            quantity=5, price=Decimal(100), broker_order_id="B1", client_order_id="c1", filled_total=5)
    report = safety.halt(["kite1"], "test halt", by="test")
    assert report.accounts == ["kite1"] and safety.halted("kite1", r).reason == "test halt"
    with pytest.raises(Halted, match="test halt"):
        place_order(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1)
    assert r.zcard(keys.account_orders("kite1")) == 0
    assert place_order(account="kite1", exchange="NSE", symbol="INFY", side="SELL", quantity=3, reduce_only=True)
    with pytest.raises(InvalidOrder, match="reduce_only"):
        place_order(account="kite1", exchange="NSE", symbol="INFY", side="SELL", quantity=6, reduce_only=True)
    assert safety.resume(["kite1"], by="test") == ["kite1"] and safety.halted("kite1", r) is None
    assert place_order(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1)


def test_halt_all_covers_every_account_and_shows_in_status(make_accounts, r) -> None:
    """Given a halt of every account, Then each account is halted, ``brokergate status --json``
    lists the halt for each (a warning, not an outage), and ``resume --all`` lifts it."""
    make_accounts(kite=1, angel=1)
    out = subprocess.run([sys.executable, "-m", "brokergate", "halt", "--all", "--reason", "desk says stop"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(safety.halted(a, r).scope == "*" for a in ("kite1", "angel1"))
    status = subprocess.run([sys.executable, "-m", "brokergate", "status", "--json", "--timeout-s", "0.2"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    import json

    problems = json.loads(status.stdout)["problems"]
    assert {p["component"] for p in problems if "HALTED" in p["message"]} >= {"halt:kite1", "halt:angel1"}
    subprocess.run([sys.executable, "-m", "brokergate", "resume", "--all"], cwd=REPO, check=True, timeout=60,
                   capture_output=True)
    assert safety.halted("kite1", r) is None


def test_entries_queued_behind_a_halt_end_rejected_without_reaching_the_broker(make_accounts, celery_workers,
                                                                               paper) -> None:
    """Given 12 entries enqueued by task name (the client's check bypassed) on a 2/s cap, When the
    account is halted after the first are sent, Then every one not sent ends REJECTED ("halted:
    ...") at once, without waiting for a slot, and none of those reaches the broker."""
    acct = ready(make_accounts(kite=1, angel=0, caps={"orders": ["2/s"]})["kite1"])
    user = paper_user_of(acct).user_id
    celery_workers.start([keys.urgent_queue(acct.name), keys.orders_queue(acct.name)], concurrency=2)
    orders = [Order(account=acct.name, exchange="NSE", symbol="INFY", side="BUY", quantity=1, deadline_s=60)
              for _ in range(12)]
    r = get_redis()
    for o in orders:
        orderstore.create(r, o)
        send_task_by_name(keys.PLACE_TASK, args=[o.to_dict()], queue=keys.orders_queue(acct.name))
    wait_for(lambda: len(order_requests(paper.requests(), user)) >= 2, 10, what="the first orders sent")
    at = safety.halt([acct.name], "queued entries", by="test").at_ms
    wait_for(lambda: all((orderstore.get(r, o.client_order_id) or {}).get("state") in ("REJECTED", "OPEN", "COMPLETE")
                         for o in orders), 10, what="every order settled")
    got = {o.client_order_id: orderstore.get(r, o.client_order_id) for o in orders}
    rejected = [c for c, g in got.items() if g["state"] == "REJECTED"]
    assert len(rejected) >= 6 and all(got[c]["error"] == "halted: queued entries" for c in rejected)
    at_broker = {e["tag"] for e in order_requests(paper.requests(), user)}
    assert not at_broker & set(rejected)
    assert all(int(got[c].get("sent_at_ms") or 0) <= at for c in at_broker)


def test_square_off_sizes_its_exits_from_a_read_stored_after_the_halt(make_accounts, r, monkeypatch) -> None:
    """Given a positions read that was not stored (a fill pushed meanwhile: the snapshot still shows
    3 of the 5 the broker holds), When the account is halted with square-off, Then it reads again
    and closes the 5 the stored read shows, not the 3."""
    from common import client

    make_accounts(kite=1, angel=0)

    def snapshot(quantity: int, at_ms: int) -> accountstate.Snapshot:
        row = Position(exchange="NSE", symbol="INFY", product="INTRADAY", quantity=quantity, average_price=Decimal(100))
        return accountstate.Snapshot("positions", [row], at_ms=at_ms, pushed_ms=at_ms, now_ms=at_ms)

    reads = [snapshot(3, 1), snapshot(5, server_time_ms(r) + 60_000)]
    monkeypatch.setattr(accountstate, "get", lambda *a, **kw: reads.pop(0))
    exits: list[dict[str, Any]] = []
    monkeypatch.setattr(client, "place_order", lambda **kw: exits.append(kw) or SimpleNamespace(id="exit"))
    report = safety.halt(["kite1"], "stale read", square_off=True, by="test")
    assert [(e["side"], e["quantity"], e["reduce_only"]) for e in exits] == [("SELL", 5, True)]
    assert report.exits == ["exit"] and not reads
    safety.resume(["kite1"], by="test")


def test_square_off_reads_the_positions_once_the_halts_cancels_are_settled(make_accounts, r, monkeypatch) -> None:
    """Given an order OPEN at the broker whose fill is not learned yet (a MARKET entry answered
    OPEN), When the account is halted with square-off, Then the positions are read only once the
    halt's cancel of it has settled it (here COMPLETE, as a cancel that finds it filled leaves it):
    read before, the snapshot may miss that fill or count it twice."""
    make_accounts(kite=1, angel=0)
    o = Order(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1, deadline_s=60)
    orderstore.create(r, o)
    orderstore.transition(r, o.client_order_id, OrderState.OPEN, fields={"sent_at_ms": server_time_ms(r)})
    seen: list[str] = []

    def read(*_a: Any, **_kw: Any) -> accountstate.Snapshot:
        seen.append((orderstore.get(r, o.client_order_id) or {})["state"])
        return accountstate.Snapshot("positions", [], at_ms=server_time_ms(r) + 60_000, pushed_ms=0, now_ms=0)

    monkeypatch.setattr(accountstate, "get", read)
    settle = threading.Timer(0.3, lambda: orderstore.transition(r, o.client_order_id, OrderState.COMPLETE,
                                                                source="test"))
    settle.start()
    report = safety.halt(["kite1"], "fill learned late", square_off=True, by="test")
    settle.join()
    assert report.cancels == [o.client_order_id] and seen == ["COMPLETE"]
    safety.resume(["kite1"], by="test")


def test_a_runaway_strategy_is_stopped_by_halt_all(make_accounts, celery_workers, paper) -> None:
    """The short version of issue #18's runaway (make chaos runs 1,000 orders): 3 strategy
    processes place 40 orders each in a loop; ``brokergate halt --all --square-off`` stops them:
    no entry is sent after the halt, every open order is cancelled at the broker, the position is
    flat, nothing is lost or sent twice."""
    run_runaway(make_accounts, celery_workers, paper, processes=3, orders_each=40)


def run_runaway(make_accounts: Any, celery_workers: Any, paper: Any, *, processes: int, orders_each: int = 0,
                orders_total: int = 0) -> dict[str, int]:
    """Run the runaway (``orders_each`` per process, or ``orders_total`` between them), halt it from
    the CLI and check it stopped cleanly; returns the counts of the check, of the halt's report and
    how many processes the halt stopped in their loop (the rest had placed everything)."""
    acct = ready(make_accounts(kite=1, angel=0)["kite1"])
    user = paper_user_of(acct).user_id
    both = [keys.urgent_queue(acct.name), keys.orders_queue(acct.name)]
    celery_workers.start_many([(both, {"concurrency": 4}), ([keys.urgent_queue(acct.name)], {})])
    strategies = runaway.start(acct.name, processes, orders_each, orders_total=orders_total)
    wait_for(lambda: len(order_requests(paper.requests(), user)) >= 10, 30, what="the runaway under way")
    report = runaway.halt_all_from_the_cli("runaway strategy")
    results = strategies.results()
    placed = [coid for res in results for coid in res["placed"]]
    counts = runaway.check_halted_cleanly(paper, user, acct.name, placed, int(report["at_ms"]))
    assert report["exits"], "the long position was not squared off"
    safety.resume(None, by="test")
    return {**counts, "stopped_in_loop": sum(1 for res in results if res["halted"]), "cancels": len(report["cancels"]),
            "exits": len(report["exits"]), "dropped": int(report.get("dropped") or 0)}
