"""Limiter scope (issue 15, item 5): the limiter counts where the broker counts.

Kite counts orders per user across all of the user's API keys, Angel per client code, and Fyers
counts every endpoint of a user against one budget (docs/brokers.md, the caps of each broker). Two
accounts tables of one broker user must share one limiter state, and a shared budget must see a
request of every class."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from common import keys, ratelimit
from common.errors import DeadlineExceeded
from common.settings import Account, Cap, parse_accounts
from tests.fixtures.accounts import account_toml

US = 1_000_000
ENV = {"L_PASSWORD": "pw-123456", "L_TOTP": "JBSWY3DPEHPK3PXP", "L_SECRET": "s3cr3t-api"}


def _table(name: str, broker: str, user_id: str, api_key: str, caps: dict[str, list[str]]) -> str:
    return account_toml(name, broker, user_id, api_key, env="L", caps=caps)


def _limiter(r, acct: Account, endpoint_class: str) -> ratelimit.Limiter:
    # Before the fix this was Limiter(r, acct.name, endpoint_class, acct.caps_for(endpoint_class)),
    # and both tests below failed: 6 slots instead of 3, and 6 instead of 4.
    return ratelimit.Limiter.for_account(r, acct, endpoint_class)


def _granted_now(r, lim: ratelimit.Limiter, tries: int) -> int:
    """How many of ``tries`` requests get a slot within the next 2 s (the caps below are per
    minute, so a slot beyond that is the window being full; refused at once, never waited for)."""
    sec, usec = r.time()
    deadline_ms = (int(sec) * US + int(usec)) // 1000 + 2000
    n = 0
    for _ in range(tries):
        try:
            lim.acquire(deadline_ms, urgent=True)
            n += 1
        except DeadlineExceeded:
            pass
    return n


def test_two_accounts_of_one_broker_user_share_the_cap(r) -> None:
    """Given two accounts tables for one Kite user (two API keys) with orders capped at 3/min,
    When both send orders, Then together they get 3 slots in the minute, not 3 each."""
    accounts = parse_accounts(
        _table("k1", "kite", "AB1234", "key-one", {"orders": ["3/min"]})
        + _table("k2", "kite", "AB1234", "key-two", {"orders": ["3/min"]}), ENV)
    granted = sum(_granted_now(r, _limiter(r, accounts[n], "orders"), 3) for n in ("k1", "k2"))
    assert granted == 3


def test_a_shared_budget_counts_every_endpoint_class(r) -> None:
    """Given a broker whose caps span every endpoint (one budget of 4/min here), When orders
    take 3 slots and order-book reads ask for 3 more, Then only 4 requests in all get a slot."""
    accounts = parse_accounts(
        _table("f1", "fyers", "XY12345", "APPID-100", {"orders": ["3/min"], "orderbook": ["3/min"], "all": ["4/min"]}),
        ENV)
    f1 = accounts["f1"]
    granted = _granted_now(r, _limiter(r, f1, "orders"), 3) + _granted_now(r, _limiter(r, f1, "orderbook"), 3)
    assert granted == 4


def test_earliest_slot_in_is_the_latest_each_budget_allows() -> None:
    """Pure policy: a slot must suit the class's own windows and the shared ones."""
    own, shared = [Cap(3, 1)], [Cap(4, 60)]
    class_slots = [0, 1, 2]  # the class's second is full: next at 1 s
    shared_slots = [0, 1, 2, 3]  # the shared minute is full (one from another class): next at 60 s
    assert ratelimit.earliest_slot_in([(class_slots, own)], 5, margin_us=0) == US
    assert ratelimit.earliest_slot_in([(class_slots, own), (shared_slots, shared)], 5, margin_us=0) == 60 * US
    assert ratelimit.earliest_slot_in([], 5, margin_us=0) == 5


def test_accounts_of_different_users_do_not_share(r) -> None:
    accounts = parse_accounts(
        _table("k1", "kite", "AB1234", "key-one", {"orders": ["3/min"]})
        + _table("k2", "kite", "CD5678", "key-two", {"orders": ["3/min"]}), ENV)
    assert [_granted_now(r, _limiter(r, accounts[n], "orders"), 3) for n in ("k1", "k2")] == [3, 3]


def test_one_angel_client_code_on_two_api_keys_shares_the_cap(r) -> None:
    accounts = parse_accounts(
        _table("a1", "angel", "A123456", "key-one", {"orders": ["2/min"]})
        + _table("a2", "angel", "A123456", "key-two", {"orders": ["2/min"]}), ENV)
    granted = sum(_granted_now(r, _limiter(r, accounts[n], "orders"), 2) for n in ("a1", "a2"))
    assert granted == 2


def test_confirm_and_back_off_act_on_the_shared_budget(r) -> None:
    """A used slot is moved to its answer in every budget it counts in; a broker rate-limit
    answer on one class holds every class of a shared budget (one script call each)."""
    f1 = parse_accounts(_table("f1", "fyers", "XY12345", "APPID-100", {"all": ["100/s"]}), ENV)["f1"]
    orders, book = ratelimit.Limiter.for_account(r, f1, "orders"), ratelimit.Limiter.for_account(r, f1, "orderbook")
    assert [b.log_key for b in orders.budgets] == [keys.limit("fyers:app:APPID-100", "orders"),
                                                   keys.limit("fyers:app:APPID-100", "all")]
    slot = orders.acquire(urgent=True)
    with orders.used(slot):
        time.sleep(0.05)
    scores = [r.zscore(b.log_key, str(slot)) for b in orders.budgets]
    assert scores[0] == scores[1] and scores[0] >= slot + 40_000
    end = orders.note_rate_limited(retry_after_s=0.3)
    assert int(r.get(keys.backoff("fyers:app:APPID-100", "all"))) == end
    nxt = book.acquire(urgent=True)  # another class waits the back-off out too
    assert nxt >= end
    assert r.hget(keys.stats("f1"), "rate_limited") == "1"


@settings(max_examples=20, deadline=None)
@given(classes=st.lists(st.sampled_from(["orders", "orderbook"]), min_size=1, max_size=20),
       own=st.tuples(st.integers(1, 4), st.sampled_from([1, 60])),
       shared=st.tuples(st.integers(1, 6), st.sampled_from([1, 60])))
def test_lua_matches_policy_across_a_class_and_a_shared_budget(redis_server, classes, own, shared) -> None:
    """Given two classes that each have their own caps and share one budget, When requests of
    both reserve in any order, Then each slot is the policy's (earliest_slot_in over the two
    logs), and no window of the shared budget or of either class holds more than its count."""
    import redis as redis_lib

    r = redis_lib.Redis.from_url(redis_server.url)
    r.flushdb()
    own_caps, shared_caps = (Cap(*own),), (Cap(*shared),)
    budgets = {c: [ratelimit.Budget(keys.limit("p", c), keys.backoff("p", c), own_caps),
                   ratelimit.Budget(keys.limit("p", "all"), keys.backoff("p", "all"), shared_caps)]
               for c in ("orders", "orderbook")}
    slots: dict[str, list[int]] = {"orders": [], "orderbook": []}
    for c in classes:
        res = ratelimit.reserve_in(r, budgets[c], margin_ms=7)
        everything = sorted(slots["orders"] + slots["orderbook"])
        assert res.slot_us == ratelimit.earliest_slot_in([(slots[c], own_caps), (everything, shared_caps)],
                                                         res.now_us, margin_us=7_000)
        slots[c].append(res.slot_us)
    for c, ts in slots.items():
        assert ratelimit.max_in_window(ts, own[1] * US) <= own[0], c
    assert ratelimit.max_in_window(slots["orders"] + slots["orderbook"], shared[1] * US) <= shared[0]
    r.close()


def test_usage_and_status_show_the_shared_state_on_every_account(r) -> None:
    """Two accounts of one user show the same, true usage, and say they share it."""
    from common import health

    accounts = parse_accounts(
        _table("k1", "kite", "AB1234", "key-one", {"orders": ["3/min"]})
        + _table("k2", "kite", "AB1234", "key-two", {"orders": ["3/min"]})
        + _table("f1", "fyers", "XY12345", "APPID-100", {}), ENV)
    _granted_now(r, _limiter(r, accounts["k1"], "orders"), 1)
    _granted_now(r, _limiter(r, accounts["k2"], "orders"), 1)
    _granted_now(r, _limiter(r, accounts["f1"], "orderbook"), 2)
    snap = health.gather(r, accounts, ask_workers=False)["accounts"]
    assert snap["k1"]["limiter"]["orders"] == snap["k2"]["limiter"]["orders"] == {"3/min": 2}
    assert snap["k1"]["limiter_shared_with"] == ["k2"] and snap["k2"]["limiter_shared_with"] == ["k1"]
    assert snap["f1"]["limiter"]["all"] == {"10/s": 2, "200/min": 2, "100000/day": 2}
    assert snap["f1"]["limiter"]["orderbook"]["10/s"] == 2 and snap["f1"]["limiter"]["orders"]["10/s"] == 0
    assert [(c.count, n) for c, n in ratelimit.usage("k2", "orders", r=r, caps=accounts["k2"].caps_for("orders"),
                                                     scope=accounts["k2"].limit_scope())] == [(3, 2)]
