"""The decoders against the official parsers (kiteconnect, smartapi-python) as oracles:
Zerodha's golden packets, and random packets of every mode (hypothesis)."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from kiteconnect import KiteTicker
from SmartApi.smartWebSocketV2 import SmartWebSocketV2

from common.brokers.angel import codec as angel
from common.brokers.kite import codec as kite
from common.models import Tick
from tests.paths import KITE_FIXTURES

FIXTURES = KITE_FIXTURES
U32 = st.integers(min_value=0, max_value=2**32 - 1)
U16 = st.integers(min_value=0, max_value=2**16 - 1)
I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
EPOCH = st.integers(min_value=0, max_value=2**31 - 1)
KT = KiteTicker("key", "token", root="ws://127.0.0.1:1/kite-ticker")


def frame(packets: list[bytes]) -> bytes:
    return struct.pack(">H", len(packets)) + b"".join(struct.pack(">H", len(p)) + p for p in packets)


def rupees(v: int, div: int) -> float:
    return v / div


def assert_kite_agrees(tick: Tick, ref: dict[str, Any]) -> None:
    """Our integer tick and the SDK's float dict describe the same values."""
    div = tick.price_divisor
    assert tick.token == str(ref["instrument_token"])
    assert tick.mode == ref["mode"]
    assert rupees(tick.last_price, div) == ref["last_price"]
    if ref["mode"] == "ltp":
        return
    ohlc = ref["ohlc"]
    assert [rupees(x, div) for x in (tick.open, tick.high, tick.low, tick.close)] == [
        ohlc["open"], ohlc["high"], ohlc["low"], ohlc["close"],
    ]  # fmt: skip
    if "last_traded_quantity" in ref:  # not an index
        assert tick.last_quantity == ref["last_traded_quantity"]
        assert rupees(tick.average_price, div) == ref["average_traded_price"]
        assert tick.volume == ref["volume_traded"]
    if ref["mode"] == "full":
        ts = ref["exchange_timestamp"]
        assert tick.exchange_ts_ms == (int(ts.timestamp()) * 1000 if ts else tick.exchange_ts_ms)
        if "depth" in ref:
            assert tick.oi == ref["oi"]
            for side, flat in (("buy", tick.bids), ("sell", tick.asks)):
                ours = [(rupees(flat[i], div), flat[i + 1], flat[i + 2]) for i in range(0, 15, 3)]
                theirs = [(d["price"], d["quantity"], d["orders"]) for d in ref["depth"][side]]
                assert ours == theirs
            assert (tick.bid_price, tick.bid_quantity) == (tick.bids[0], tick.bids[1])
            assert (tick.ask_price, tick.ask_quantity) == (tick.asks[0], tick.asks[1])


def test_kite_golden_packets_match_the_official_parser_and_the_fixture_json() -> None:
    # Given Zerodha's published packets and their decoded JSON
    table = kite.symbol_table({408065: ("NSE", "INFY")})
    for mode in ("full", "quote"):
        packet = base64.b64decode((FIXTURES / f"ticker_{mode}.packet").read_text())
        doc = json.loads((FIXTURES / f"ticker_{mode}.json").read_text())
        # When both parsers read the frame
        ticks, bad = kite.decode_frame(frame([packet]), table, 42)
        ref = KT._parse_binary(frame([packet]))
        # Then they agree, and the prices are exact integers
        assert bad == 0 and len(ticks) == 1
        t = ticks[0]
        assert (t.exchange, t.symbol, t.received_ns) == ("NSE", "INFY", 42)
        assert_kite_agrees(t, ref[0])
        assert t.ltp == __import__("decimal").Decimal(str(doc["last_price"]))
        assert t.volume == doc["volume"]


def test_kite_heartbeat_and_unknown_token() -> None:
    assert kite.decode_frame(b"\x00", {}) == ([], 0)
    ticks, bad = kite.decode_frame(frame([struct.pack(">II", 12345 << 8 | 3, 7)]), {})
    assert bad == 0
    assert ticks[0][:5] == ("", str(12345 << 8 | 3), str(12345 << 8 | 3), "ltp", 10_000_000)


kite_ltp = st.builds(lambda tok, p: struct.pack(">II", tok, p), U32, U32)
kite_quote = st.builds(lambda v: struct.pack(">11I", *v), st.lists(U32, min_size=11, max_size=11))
kite_full = st.builds(
    lambda v, ts, depth: struct.pack(">16I" + "IIH2x" * 10, *v, *ts, *[x for d in depth for x in d]),
    st.lists(U32, min_size=11, max_size=11),
    st.lists(EPOCH, min_size=5, max_size=5),
    st.lists(st.tuples(U32, U32, U16), min_size=10, max_size=10),
)
kite_index = st.builds(
    lambda tok, v, ts, full: struct.pack(">8I" if full else ">7I", (tok << 8) | 9, *v, *([ts] if full else [])),
    st.integers(0, 2**24 - 1),
    st.lists(U32, min_size=6, max_size=6),
    EPOCH,
    st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(kite_ltp, kite_quote, kite_full, kite_index), min_size=1, max_size=12))
def test_kite_random_frames_agree_with_the_official_parser(packets: list[bytes]) -> None:
    data = frame(packets)
    ticks, bad = kite.decode_frame(data, {})
    ref = KT._parse_binary(data)
    assert bad == 0
    assert len(ticks) == len(ref)
    for t, r in zip(ticks, ref, strict=True):
        assert_kite_agrees(t, r)


@settings(max_examples=50, deadline=None)
@given(st.lists(kite_full, min_size=2, max_size=20))
def test_kite_all_full_fast_path_equals_the_general_path(packets: list[bytes]) -> None:
    data = frame(packets)
    fast = kite.decode_frame(data, {}, 9)
    general = kite._decode_mixed(data, {}, 9, len(packets))
    assert fast == general and fast[1] == 0


def test_kite_malformed_frames_are_counted_not_fatal() -> None:
    good = struct.pack(">II", 408065, 157370)
    table = kite.symbol_table({408065: ("NSE", "INFY")})
    # a count that promises more packets than the message carries
    ticks, bad = kite.decode_frame(struct.pack(">H", 3) + struct.pack(">H", 8) + good, table)
    assert [t.last_price for t in ticks] == [157370] and bad == 1
    # a length that overruns the message
    ticks, bad = kite.decode_frame(struct.pack(">HH", 1, 184) + good, table)
    assert ticks == [] and bad == 1
    # an unknown packet length in the middle: skipped exactly, the rest decoded
    ticks, bad = kite.decode_frame(frame([good, b"\x01" * 13, good]), table)
    assert len(ticks) == 2 and bad == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_kite_never_raises_on_garbage(data: bytes) -> None:
    ticks, bad = kite.decode_frame(data, {})
    assert bad >= 0 and all(isinstance(t, Tick) for t in ticks)


# ---------------------------------------------------------------- Angel

def angel_ref(packet: bytes) -> dict[str, Any]:
    # _parse_binary_data touches no instance state; skip __init__ (it writes log folders).
    return SmartWebSocketV2._parse_binary_data(object.__new__(SmartWebSocketV2), packet)


HEAD = "<BB25sqqq"
token_st = st.text(alphabet="0123456789", min_size=1, max_size=10)
quote_tail = st.tuples(I64, I64, I64, st.floats(allow_nan=False), st.floats(allow_nan=False), I64, I64, I64, I64)
depth_st = st.lists(st.tuples(st.sampled_from([0, 1]), I64, I64, U16), min_size=10, max_size=10)


@st.composite
def angel_packets(draw: Any) -> bytes:
    mode = draw(st.sampled_from([1, 2, 3]))
    et = draw(st.sampled_from([1, 2, 3, 5, 13]))
    head = (mode, et, draw(token_st).encode(), draw(I64), draw(I64), draw(I64))
    if mode == 1:
        return struct.pack(HEAD, *head)
    tail = draw(quote_tail)
    if mode == 2:
        return struct.pack(HEAD + "qqqddqqqq", *head, *tail)
    depth = draw(depth_st)
    return struct.pack(
        HEAD + "qqqddqqqq" + "qqq" + "HqqH" * 10 + "qqqq",
        *head, *tail, draw(I64), draw(I64), draw(I64), *[x for d in depth for x in d],
        draw(I64), draw(I64), draw(I64), draw(I64),
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(angel_packets())
def test_angel_random_packets_agree_with_the_official_parser(packet: bytes) -> None:
    ref = angel_ref(packet)
    key = (ref["exchange_type"], ref["token"])
    table = angel.symbol_table({key: ("NSE", "SYM")})
    ticks, bad = angel.decode_message(packet, table, 5)
    assert bad == 0 and len(ticks) == 1
    t = ticks[0]
    assert (t.exchange, t.symbol, t.token) == ("NSE", "SYM", ref["token"])
    assert t.mode == {1: "ltp", 2: "quote", 3: "full"}[ref["subscription_mode"]]
    assert t.price_divisor == (10_000_000 if ref["exchange_type"] == 13 else 100)
    assert t.last_price == ref["last_traded_price"]
    assert t.exchange_ts_ms == ref["exchange_timestamp"]
    if t.mode != "ltp":
        assert (t.last_quantity, t.average_price, t.volume) == (
            ref["last_traded_quantity"], ref["average_traded_price"], ref["volume_trade_for_the_day"],
        )  # fmt: skip
        assert (t.open, t.high, t.low, t.close) == (
            ref["open_price_of_the_day"], ref["high_price_of_the_day"], ref["low_price_of_the_day"], ref["closed_price"],
        )  # fmt: skip
    if t.mode == "full":
        assert t.oi == ref["open_interest"]
        for flat, side in ((t.bids, ref["best_5_buy_data"]), (t.asks, ref["best_5_sell_data"])):
            assert [(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)] == [
                (d["price"], d["quantity"], d["no of orders"]) for d in side
            ]


def test_angel_unknown_token_and_malformed() -> None:
    packet = struct.pack(HEAD, 1, 1, b"1594", 1, 2, 157370)
    ticks, bad = angel.decode_message(packet, {})
    assert ticks[0][:4] == ("", "1594", "1594", "ltp") and bad == 0
    assert angel.decode_message(b"\x03" + packet[1:], {}) == ([], 1)  # snap quote header, LTP size
    assert angel.decode_message(b"\x01\x02", {}) == ([], 1)
    assert angel.decode_message(b"\x04" + b"\x00" * 500, {}) == ([], 1)  # depth-20 is never subscribed


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500))
def test_angel_never_raises_on_garbage(data: bytes) -> None:
    ticks, bad = angel.decode_message(data, {})
    assert len(ticks) + bad == 1
