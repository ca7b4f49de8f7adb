"""Pure parts of the feed: message format, prices, sharding, backoff, watchdog, the subscribe API."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import redis as redis_lib
from hypothesis import given, settings
from hypothesis import strategies as st

from common import keys
from common.models import Tick
from common.ticks import decode_tick, encode_tick, price_str, subscribe, subscriptions, unsubscribe
from feed.session import backoff_s
from feed.shard import assign
from feed.watchdog import Watchdog

ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
text = st.text(min_size=0, max_size=12)
depth = st.one_of(st.just(()), st.tuples(*[ints] * 15), st.lists(ints, max_size=9).map(tuple))


@settings(max_examples=300, deadline=None)
@given(text, text, text, st.sampled_from(["ltp", "quote", "full"]), st.sampled_from([100, 10_000, 10_000_000]),
       st.lists(ints, min_size=15, max_size=15), depth, depth)  # fmt: skip
def test_message_round_trips_exactly_and_is_plain_json(ex, sym, tok, mode, div, nums, bids, asks) -> None:
    t = Tick(ex, sym, tok, mode, div, *nums, bids=bids, asks=asks)
    msg = encode_tick(t)
    assert decode_tick(msg) == t
    d = json.loads(msg)
    assert list(d) == list(Tick._fields)
    assert d["last_price"] == t.last_price and d["bids"] == list(bids)


def test_unknown_keys_in_a_message_are_ignored() -> None:
    t = Tick("NSE", "INFY", "408065", "ltp", 100, 157370)
    d = json.loads(encode_tick(t))
    d["added_later"] = 1
    assert decode_tick(json.dumps(d)) == t


@given(st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from([1, 100, 10_000, 10_000_000]))
def test_price_str_is_exact(value: int, div: int) -> None:
    assert Decimal(price_str(value, div)) == Decimal(value) / div


def test_price_str_shape() -> None:
    assert price_str(157370, 100) == "1573.70"
    assert price_str(5, 100) == "0.05"
    assert price_str(123456789, 10_000_000) == "12.3456789"


def test_shard_fills_to_the_limit_and_keeps_assignments_stable() -> None:
    wanted = list(range(9000))
    a, unplaced = assign(wanted, {}, 3000, 3)
    assert not unplaced and sorted(a.values()).count(0) == 3000 and set(a.values()) == {0, 1, 2}
    # adding one moves nobody; one over the limit is unplaced
    b, unplaced = assign([*wanted, 9000], a, 3000, 3)
    assert unplaced == [9000] and all(b[k] == a[k] for k in wanted)
    # fewer instruments use fewer sockets; a minimum can be asked for
    c, _ = assign(range(10), {}, 3000, 3)
    assert set(c.values()) == {0}
    d, _ = assign(range(10), {}, 3000, 3, min_sockets=2)
    assert set(d.values()) == {0, 1}
    # removing instruments keeps the rest where they were
    e, _ = assign(wanted[:5000], a, 3000, 3)
    assert all(e[k] == a[k] for k in wanted[:5000] if a[k] < 2)


def test_backoff_first_retry_immediate_then_full_jitter_capped() -> None:
    rng = random.Random(1)
    assert backoff_s(0, 0.25, 10, rng) == 0.0
    for attempt in range(1, 40):
        d = backoff_s(attempt, 0.25, 10, rng)
        assert 0 <= d <= min(10, 0.25 * 2**attempt)
    many = [backoff_s(20, 0.25, 10, rng) for _ in range(2000)]
    assert max(many) > 9 and min(many) < 1  # full jitter spreads over [0, cap]


def test_watchdog() -> None:
    now = [100.0]
    wd = Watchdog(3.0, clock=lambda: now[0])
    assert wd.remaining_s() == 3.0 and not wd.expired()
    now[0] = 102.9
    wd.kick()
    now[0] = 105.8
    assert not wd.expired()
    now[0] = 105.9
    assert wd.expired() and wd.fired == 1


def test_subscribe_writes_the_hash_and_announces_it(r: redis_lib.Redis) -> None:
    ps = r.pubsub(ignore_subscribe_messages=True)
    ps.subscribe(keys.FEED_CONTROL)
    subscribe(["NSE:INFY", "nse:SBIN"], "full", account="kite1", r=r)
    assert subscriptions("kite1", r) == {"NSE:INFY": "full", "NSE:SBIN": "full"}
    import time

    deadline = time.monotonic() + 2
    msg = None
    while msg is None and time.monotonic() < deadline:
        msg = ps.get_message(timeout=0.5)
    assert msg is not None and msg["data"] == "kite1"
    unsubscribe("NSE:INFY", account="kite1", r=r)
    assert subscriptions("kite1", r) == {"NSE:SBIN": "full"}
    ps.close()


def test_subscribe_refuses_bad_names_and_modes(r: redis_lib.Redis) -> None:
    import pytest

    with pytest.raises(ValueError):
        subscribe("INFY", "ltp", account="kite1", r=r)
    with pytest.raises(ValueError):
        subscribe("NSE:INFY", "depth", account="kite1", r=r)
