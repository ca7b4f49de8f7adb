"""Redis stays bounded (issue 15 item 12): terminal orders expire after the retention, an index
lists an account's orders until then, history is capped, and OPEN orders whose last update was
missed are settled against the book at the next trading day's login.

Time is never waited for: TTLs are read, and creation times are set in the past."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from common import keys, orderstore
from common import settings as bg_settings
from common.errors import ConfigError
from common.models import Order, OrderState, OrderUpdate
from tests.orders.helpers import make_order, make_update

S = OrderState
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS


def _ttl_ms(r: Any, o: Order) -> int:
    return int(r.pttl(keys.order(o.client_order_id)))


@pytest.fixture
def fresh_scripts() -> Iterator[None]:
    """The order scripts carry the retention (read from the settings once per process): rebuild
    them around a test that changes it."""
    orderstore._script.cache_clear()
    yield
    bg_settings.settings.cache_clear()
    orderstore._script.cache_clear()


# --- retention ----------------------------------------------------------------------------------


def test_the_retention_is_a_setting_of_seven_days_by_default() -> None:
    assert bg_settings.load_settings({}).order_retention_days == 7
    assert bg_settings.load_settings({"BROKERGATE_ORDER_RETENTION_DAYS": "0.5"}).order_retention_days == 0.5
    for bad in ("0", "-1", "seven", "nan"):
        with pytest.raises(ConfigError, match="BROKERGATE_ORDER_RETENTION_DAYS"):
            bg_settings.load_settings({"BROKERGATE_ORDER_RETENTION_DAYS": bad})


def test_every_script_that_settles_an_order_sets_its_expiry_and_a_live_order_has_none(r) -> None:
    # Given orders settled by each script that can settle one
    live, done, failed, expired, cancelled, unsent_cancel = (make_order() for _ in range(6))
    for o in (live, done, failed, expired, cancelled, unsent_cancel):
        orderstore.create(r, o)
    assert orderstore.apply_update(r, make_update(live, S.OPEN, pending_quantity=1))  # order_apply
    assert orderstore.apply_update(r, make_update(done, S.COMPLETE, filled_quantity=1))  # order_apply
    orderstore.claim(r, failed.client_order_id, "a1")
    assert orderstore.transition(r, failed.client_order_id, S.FAILED, message="boom")  # order_transition
    r.hset(keys.order(expired.client_order_id), "deadline_ms", 1)
    assert orderstore.claim(r, expired.client_order_id, "a1").verdict == "expired"  # order_claim
    orderstore.claim(r, cancelled.client_order_id, "a1")
    orderstore.request_cancel(r, unsent_cancel.client_order_id)  # order_request_cancel: NEW -> CANCELLED
    r.hset(keys.order(cancelled.client_order_id), "cancel_requested_ms", 1)
    assert orderstore.mark_sent(r, cancelled.client_order_id, "a1")[0] == "cancelled"  # order_mark_sent
    # Then the live order never expires, every settled one after the retention (7 days)
    assert _ttl_ms(r, live) == -1
    for o in (done, failed, expired, cancelled, unsent_cancel):
        assert WEEK_MS - 60_000 < _ttl_ms(r, o) <= WEEK_MS, o.client_order_id
    # and the wake-up list keeps its own short TTL
    assert 0 < r.ttl(keys.order_done(done.client_order_id)) <= orderstore.DONE_TTL_S
    # A later write to a settled order (a cancel's bookkeeping) keeps its expiry
    orderstore.annotate(r, done.client_order_id, {"cancel_error": "x"})
    assert _ttl_ms(r, done) > WEEK_MS - 60_000


def test_the_retention_comes_from_the_environment(r, monkeypatch: pytest.MonkeyPatch, fresh_scripts: None) -> None:
    monkeypatch.setenv("BROKERGATE_ORDER_RETENTION_DAYS", "2")
    bg_settings.settings.cache_clear()
    o = make_order()
    orderstore.create(r, o)
    assert orderstore.apply_update(r, make_update(o, S.REJECTED, message="no margin"))
    assert 2 * DAY_MS - 60_000 < _ttl_ms(r, o) <= 2 * DAY_MS


def test_an_overturned_verdict_loses_its_expiry_while_live_and_gets_it_back_when_settled(r) -> None:
    # Given an order we settled EXPIRED (it expires with the retention)
    o = make_order()
    orderstore.create(r, o)
    r.hset(keys.order(o.client_order_id), "deadline_ms", 1)
    assert orderstore.claim(r, o.client_order_id, "a1").verdict == "expired"
    assert _ttl_ms(r, o) > 0
    # When the broker reports it resting after all
    assert orderstore.apply_update(r, make_update(o, S.OPEN, pending_quantity=1))
    # Then it is live: it must not vanish while money is at risk
    assert orderstore.get(r, o.client_order_id)["state"] == "OPEN"  # type: ignore[index]
    assert _ttl_ms(r, o) == -1
    # And once it fills, it expires again after the retention
    assert orderstore.apply_update(r, make_update(o, S.COMPLETE, filled_quantity=1, average_price=Decimal("1.5")))
    assert WEEK_MS - 60_000 < _ttl_ms(r, o) <= WEEK_MS


# --- the account's index ------------------------------------------------------------------------


def test_an_accounts_orders_are_listed_newest_first_until_they_expire(r) -> None:
    from common.client import orders

    mine = [make_order() for _ in range(3)]
    other = make_order(account="acct2")
    for o in (*mine, other):
        orderstore.create(r, o)
    created = [orderstore.get(r, o.client_order_id)["created_ms"] for o in mine]  # type: ignore[index]
    # All of acct1's orders, newest first, each as get_order reads it; none of acct2's
    got = orders("acct1")
    assert [g["client_order_id"] for g in got] == [o.client_order_id for o in reversed(mine)]
    assert got[0]["state"] == "NEW" and got[0]["account"] == "acct1"
    assert [g["client_order_id"] for g in orders("acct2")] == [other.client_order_id]
    # since_ms: only orders created at or after it
    r.hset(keys.order(mine[0].client_order_id), "created_ms", created[0] - 10_000)
    r.zadd(keys.account_orders("acct1"), {mine[0].client_order_id: created[0] - 10_000})
    assert mine[0].client_order_id not in [g["client_order_id"] for g in orders("acct1", since_ms=created[0] - 5_000)]
    # An order whose hash has expired is not listed (and its entry goes)
    r.delete(keys.order(mine[1].client_order_id))
    assert mine[1].client_order_id not in [g["client_order_id"] for g in orders("acct1")]
    assert r.zscore(keys.account_orders("acct1"), mine[1].client_order_id) is None


def test_the_accounts_index_is_trimmed_by_the_retention(r) -> None:
    # Given an index entry of an order created longer ago than the retention
    old = make_order()
    orderstore.create(r, old)
    created = orderstore.get(r, old.client_order_id)["created_ms"]  # type: ignore[index]
    r.zadd(keys.account_orders("acct1"), {old.client_order_id: created - WEEK_MS - 1000})
    # When the account places another order
    new = make_order()
    orderstore.create(r, new)
    # Then the old entry is gone, the new one is there
    assert r.zrange(keys.account_orders("acct1"), 0, -1) == [new.client_order_id]


def test_the_accounts_index_does_not_collide_with_the_sweepers(r) -> None:
    # Account names may be "active": the sweeper's index must not be the account's.
    assert keys.account_orders("active") != keys.ORDERS_ACTIVE


# --- history ------------------------------------------------------------------------------------


def test_history_keeps_the_first_entry_and_the_latest_ones_and_stays_small(r) -> None:
    # Given an order with many partial fills
    o = make_order(quantity=1000)
    orderstore.create(r, o)
    orderstore.claim(r, o.client_order_id, "a1")
    for filled in range(1, 61):
        assert orderstore.apply_update(r, make_update(o, S.OPEN, filled_quantity=filled, pending_quantity=1000 - filled))
    size_at_60 = r.memory_usage(keys.order(o.client_order_id), samples=0)
    for filled in range(61, 301):
        assert orderstore.apply_update(r, make_update(o, S.OPEN, filled_quantity=filled, pending_quantity=1000 - filled))
    # Then the history holds the first entry (NEW) and the latest ones, at most HISTORY_MAX
    h = orderstore.get(r, o.client_order_id)["history"]  # type: ignore[index]
    assert len(h) == orderstore.HISTORY_MAX
    assert h[0]["state"] == "NEW"
    assert [e["state"] for e in h[1:]] == ["OPEN"] * (orderstore.HISTORY_MAX - 1)
    at = [e["at_ms"] for e in h]
    assert at == sorted(at)
    # and the stored order does not grow with the updates (samples=0: every field counted, not estimated)
    assert r.memory_usage(keys.order(o.client_order_id), samples=0) <= size_at_60 * 1.1
    # the last update is the last entry
    assert orderstore.get(r, o.client_order_id)["filled_quantity"] == 300  # type: ignore[index]


def test_history_written_before_the_cap_is_still_read(r) -> None:
    # An order stored by the previous version kept its history as one JSON list.
    o = make_order()
    orderstore.create(r, o)
    key = keys.order(o.client_order_id)
    for f in [f for f in r.hkeys(key) if f.startswith("history")]:
        r.hdel(key, f)
    r.hset(key, "history", '[{"state": "NEW", "at_ms": 1, "source": "client"}]')
    orderstore.claim(r, o.client_order_id, "a1")
    assert [e["state"] for e in orderstore.get(r, o.client_order_id)["history"]] == ["NEW", "SENDING"]  # type: ignore[index]


# --- stale orders at the next login -------------------------------------------------------------


@pytest.mark.slow
def test_open_orders_missing_from_the_book_at_the_next_days_login_are_settled(make_accounts, paper) -> None:
    from common.brokers.base import adapter_for
    from common.redis import get_redis
    from tests.fixtures.accounts import logged_in
    from workers import login as login_tasks

    accts = make_accounts(kite=2, angel=0)
    logged_in(accts)
    r = get_redis()
    # Given orders of kite1 left OPEN yesterday (their last update missed), one of which the
    # broker still has today, one of today's, and one of another account's
    gone, kept, today, others = (make_order(account=a) for a in ("kite1", "kite1", "kite1", "kite2"))
    for o in (gone, kept, today, others):
        orderstore.create(r, o)
        orderstore.claim(r, o.client_order_id, "a1")
        orderstore.mark_sent(r, o.client_order_id, "a1")
        assert orderstore.apply_update(r, OrderUpdate(account=o.account, client_order_id=o.client_order_id,
                                                      broker_order_id=f"X{o.client_order_id}", state=S.OPEN,
                                                      pending_quantity=1, source="test"))
    adapter_for(accts["kite1"]).place(kept, None)  # carried over: today's book shows it
    now_ms = orderstore.get(r, today.client_order_id)["created_ms"]  # type: ignore[index]
    for o in (gone, kept, others):
        r.hset(keys.order(o.client_order_id), "created_ms", now_ms - 2 * DAY_MS)
    # When the account's next daily login succeeds
    summary = login_tasks.login_now("kite1", force=False)
    assert not summary["skipped"] and summary["stale_settled"] == 1
    # Then the one the book no longer shows is settled, and counted; the rest are untouched
    got = {o.client_order_id: orderstore.get(r, o.client_order_id) for o in (gone, kept, today, others)}
    g = got[gone.client_order_id]
    assert g is not None and g["state"] == "EXPIRED" and "next trading day" in g["error"]
    assert _ttl_ms(r, gone) > 0
    assert got[kept.client_order_id]["state"] in ("OPEN", "COMPLETE")  # type: ignore[index]
    assert got[today.client_order_id]["state"] == "OPEN"  # type: ignore[index]
    assert got[others.client_order_id]["state"] == "OPEN"  # type: ignore[index]
    assert int(r.hget(keys.stats("kite1"), "stale_expired") or 0) == 1
    assert gone.client_order_id not in [i for i, _ in orderstore.active_ids(r)]
    # And a broker sighting still overturns that verdict (the order filled unseen)
    assert orderstore.apply_update(r, OrderUpdate(account="kite1", client_order_id=gone.client_order_id,
                                                  broker_order_id=f"X{gone.client_order_id}", state=S.COMPLETE,
                                                  filled_quantity=1, source="test"))
