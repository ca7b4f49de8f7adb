"""Encoders against the official parsers: the fixtures round-trip and random values survive."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from kiteconnect import KiteTicker
from SmartApi.smartWebSocketV2 import SmartWebSocketV2

from paper.angel import encode as angel_encode
from paper.kite import encode as kite_encode
from tests.paths import KITE_FIXTURES

FIXTURES = KITE_FIXTURES
U32 = st.integers(min_value=0, max_value=2**32 - 1)
I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
U16 = st.integers(min_value=0, max_value=2**16 - 1)
# Epoch seconds that datetime.fromtimestamp accepts everywhere (the SDK swallows errors otherwise).
EPOCH = st.integers(min_value=0, max_value=2**31 - 1)


def kite_parser() -> KiteTicker:
    return KiteTicker("key", "token", root="ws://127.0.0.1:1/kite-ticker")


def angel_parse(packet: bytes) -> dict[str, Any]:
    # _parse_binary_data touches no instance state; skip __init__ (it writes log folders).
    return SmartWebSocketV2._parse_binary_data(object.__new__(SmartWebSocketV2), packet)


def test_kite_fixture_round_trip() -> None:
    # Given the decoded JSON and the packet Zerodha published for the same tick
    kt = kite_parser()
    for mode in ("full", "quote"):
        tick = json.loads((FIXTURES / f"ticker_{mode}.json").read_text())
        golden = base64.b64decode((FIXTURES / f"ticker_{mode}.packet").read_text())
        # When the JSON is encoded back into a packet
        mine = kite_encode.kite_packet_from_json(tick)
        # Then the official parser reads the same values from both
        assert len(mine) == len(golden)
        assert kt._parse_binary(kite_encode.kite_frame([mine])) == kt._parse_binary(kite_encode.kite_frame([golden]))
        assert mine == golden


def test_kite_frame_with_many_packets_and_heartbeat() -> None:
    kt = kite_parser()
    packets = [kite_encode.kite_ltp(408065, 157370), kite_encode.kite_quote(779521, *range(1, 11))]
    ticks = kt._parse_binary(kite_encode.kite_frame(packets))
    assert [t["mode"] for t in ticks] == ["ltp", "quote"]
    assert ticks[0]["last_price"] == 1573.70
    assert kt._parse_binary(kite_encode.KITE_HEARTBEAT) == []
    items = [kite_encode.kite_ltp_item(408065, 157370), kite_encode.kite_quote_item(779521, *range(1, 11))]
    assert kite_encode.kite_frame_items(items) == kite_encode.kite_frame(packets)


def test_kite_malformed_frame_is_inconsistent() -> None:
    packets = [kite_encode.kite_ltp(408065, 1), kite_encode.kite_ltp(779521, 2)]
    frame = kite_encode.kite_malformed_frame(packets)
    declared = struct.unpack(">H", frame[:2])[0]
    assert declared == 3  # one more than it carries
    assert len(frame) < 2 + sum(2 + len(p) for p in packets)


@settings(max_examples=200, deadline=None)
@given(
    seg=st.sampled_from([1, 2, 3, 4, 5, 6, 7, 12]),
    hi=st.integers(min_value=0, max_value=2**24 - 1),
    q=st.lists(U32, min_size=10, max_size=10),
    extra=st.lists(U32, min_size=3, max_size=3),
    times=st.lists(EPOCH, min_size=2, max_size=2),
    depth=st.lists(st.tuples(U32, U32, U16), min_size=10, max_size=10),
)
def test_kite_random_full_survives_official_parser(
    seg: int, hi: int, q: list[int], extra: list[int], times: list[int], depth: list[tuple[int, int, int]]
) -> None:
    token = hi << 8 | seg
    div = kite_encode.kite_price_divisor(token)
    packet = kite_encode.kite_full(token, *q, times[0], *extra, times[1], depth)
    (t,) = kite_parser()._parse_binary(kite_encode.kite_frame([packet]))
    assert t["instrument_token"] == token and t["mode"] == "full" and t["tradable"]
    assert t["last_price"] == q[0] / div
    assert t["last_traded_quantity"] == q[1]
    assert t["average_traded_price"] == q[2] / div
    assert (t["volume_traded"], t["total_buy_quantity"], t["total_sell_quantity"]) == tuple(q[3:6])
    assert t["ohlc"] == {"open": q[6] / div, "high": q[7] / div, "low": q[8] / div, "close": q[9] / div}
    assert (t["oi"], t["oi_day_high"], t["oi_day_low"]) == tuple(extra)
    assert t["last_trade_time"].timestamp() == times[0]
    assert t["exchange_timestamp"].timestamp() == times[1]
    got = [(d["quantity"], d["price"], d["orders"]) for d in t["depth"]["buy"] + t["depth"]["sell"]]
    assert got == [(qty, price / div, orders) for qty, price, orders in depth]


@settings(max_examples=100, deadline=None)
@given(hi=st.integers(min_value=0, max_value=2**24 - 1), v=st.lists(U32, min_size=5, max_size=5),
       change=st.integers(min_value=-(2**31), max_value=2**31 - 1), ts=EPOCH)
def test_kite_random_index_survives_official_parser(hi: int, v: list[int], change: int, ts: int) -> None:
    token = hi << 8 | kite_encode.KITE_INDEX_SEGMENT
    kt = kite_parser()
    quote, full = kt._parse_binary(
        kite_encode.kite_frame([kite_encode.kite_index_quote(token, *v, change), kite_encode.kite_index_full(token, *v, change, ts)])
    )
    for t in (quote, full):
        assert not t["tradable"]
        assert t["last_price"] == v[0] / 100
        assert t["ohlc"] == {"high": v[1] / 100, "low": v[2] / 100, "open": v[3] / 100, "close": v[4] / 100}
    assert (quote["mode"], full["mode"]) == ("quote", "full")
    assert full["exchange_timestamp"].timestamp() == ts


TOKEN = st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1, max_size=25)
FINITE = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=100, deadline=None)
@given(
    ex=st.sampled_from([1, 2, 3, 4, 5, 7, 13]),
    token=TOKEN,
    head=st.lists(I64, min_size=3, max_size=3),
    qv=st.lists(I64, min_size=3, max_size=3),
    bs=st.lists(FINITE, min_size=2, max_size=2),
    ohlc=st.lists(I64, min_size=4, max_size=4),
    snap=st.lists(I64, min_size=2, max_size=2),
    oi_pct=FINITE,
    bids=st.lists(st.tuples(I64, I64, U16), min_size=5, max_size=5),
    asks=st.lists(st.tuples(I64, I64, U16), min_size=5, max_size=5),
    limits=st.lists(I64, min_size=4, max_size=4),
)
def test_angel_random_packets_survive_official_parser(
    ex: int, token: str, head: list[int], qv: list[int], bs: list[float], ohlc: list[int],
    snap: list[int], oi_pct: float, bids: list[tuple[int, int, int]], asks: list[tuple[int, int, int]],
    limits: list[int],
) -> None:
    ltp = angel_parse(angel_encode.angel_ltp(ex, token, *head))
    expect_head = {"exchange_type": ex, "token": token, "sequence_number": head[0],
                   "exchange_timestamp": head[1], "last_traded_price": head[2]}
    assert ltp == {"subscription_mode": 1, "subscription_mode_val": "LTP", **expect_head}

    quote_packet = angel_encode.angel_quote(ex, token, *head, *qv, *bs, *ohlc)
    assert len(quote_packet) == angel_encode.ANGEL_QUOTE_LEN
    quote = angel_parse(quote_packet)
    expect_quote = {
        **expect_head, "last_traded_quantity": qv[0], "average_traded_price": qv[1],
        "volume_trade_for_the_day": qv[2], "total_buy_quantity": bs[0], "total_sell_quantity": bs[1],
        "open_price_of_the_day": ohlc[0], "high_price_of_the_day": ohlc[1],
        "low_price_of_the_day": ohlc[2], "closed_price": ohlc[3],
    }
    assert quote == {"subscription_mode": 2, "subscription_mode_val": "QUOTE", **expect_quote}

    snap_packet = angel_encode.angel_snap_quote(ex, token, *head, *qv, *bs, *ohlc, *snap, oi_pct, bids, asks, *limits)
    assert len(snap_packet) == angel_encode.ANGEL_SNAP_QUOTE_LEN
    s = angel_parse(snap_packet)
    assert s["subscription_mode"] == 3 and s["subscription_mode_val"] == "SNAP_QUOTE"
    assert {k: s[k] for k in expect_quote} == expect_quote
    assert (s["last_traded_timestamp"], s["open_interest"]) == tuple(snap)
    # The SDK reads the documented f64 OI change % as an i64: compare bit patterns.
    assert s["open_interest_change_percentage"] == struct.unpack("<q", struct.pack("<d", oi_pct))[0]
    assert [(d["quantity"], d["price"], d["no of orders"]) for d in s["best_5_buy_data"]] == bids
    assert [(d["quantity"], d["price"], d["no of orders"]) for d in s["best_5_sell_data"]] == asks
    assert (s["upper_circuit_limit"], s["lower_circuit_limit"], s["52_week_high_price"],
            s["52_week_low_price"]) == tuple(limits)


@settings(max_examples=100, deadline=None)
@given(seg=st.sampled_from([1, 2, 3, 4, 5, 6, 7, 12]), hi=st.integers(min_value=0, max_value=2**24 - 1),
       q=st.lists(U32, min_size=10, max_size=10))
def test_kite_random_ltp_and_quote_survive_official_parser(seg: int, hi: int, q: list[int]) -> None:
    token = hi << 8 | seg
    div = kite_encode.kite_price_divisor(token)
    ltp, quote = kite_parser()._parse_binary(kite_encode.kite_frame([kite_encode.kite_ltp(token, q[0]), kite_encode.kite_quote(token, *q)]))
    assert ltp == {"tradable": True, "mode": "ltp", "instrument_token": token, "last_price": q[0] / div}
    assert quote["mode"] == "quote" and quote["last_price"] == q[0] / div
    assert (quote["last_traded_quantity"], quote["volume_traded"], quote["total_buy_quantity"],
            quote["total_sell_quantity"]) == (q[1], q[3], q[4], q[5])
    assert quote["average_traded_price"] == q[2] / div
    assert quote["ohlc"] == {"open": q[6] / div, "high": q[7] / div, "low": q[8] / div, "close": q[9] / div}
