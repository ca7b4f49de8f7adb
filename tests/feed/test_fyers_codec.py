"""The Fyers HSM codec and dialect against fyers_apiv3's own parser and message builders.

Random frames (hypothesis) go through both our decoder and the SDK's ``__response_msg``; after
every frame our last tick of a topic must equal the SDK parser's state for it (the raw
integers it keeps, over 10**precision * multiplier), and we must report at least every tick the
SDK reports (it stays silent when an update changes nothing; we do not compare values to skip).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.brokers.fyers import codec, feed
from common.models import Instrument, Tick
from paper.fyers import encode as enc

INT_MIN = -(2**31)
VALUE = st.integers(min_value=INT_MIN + 1, max_value=2**31 - 1)
MAYBE = st.one_of(VALUE, st.just(INT_MIN))
# Tick field ← the SDK's name, for symbol and index topics
SYMBOL_MAP = {"last_price": "ltp", "volume": "vol_traded_today", "bid_quantity": "bid_size",
              "ask_quantity": "ask_size", "bid_price": "bid_price", "ask_price": "ask_price",
              "last_quantity": "last_traded_qty", "average_price": "avg_trade_price", "low": "low_price",
              "high": "high_price", "open": "open_price", "close": "prev_close_price", "oi": "OI"}  # fmt: skip
INDEX_MAP = {"last_price": "ltp", "close": "prev_close_price", "high": "high_price", "low": "low_price",
             "open": "open_price"}  # fmt: skip


@pytest.fixture(scope="module")
def sdk_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from fyers_apiv3.FyersWebsocket import data_ws

    path = tmp_path_factory.mktemp("fyers")
    messages: list[dict[str, Any]] = []
    sock = data_ws.FyersDataSocket(access_token="x:y", log_path=str(path), reconnect=False,
                                   on_message=messages.append, on_error=lambda e: None)  # fmt: skip
    sock.collected = messages
    yield sock


def reset(sock: Any, lite: bool, symbols: dict[str, str]) -> None:
    sock.lite = lite
    sock.resp, sock.scrips_sym, sock.index_sym, sock.dp_sym = {}, {}, {}, {}
    sock.symbol_token = dict(symbols)
    sock.ack_count = 0
    sock.collected.clear()


def sdk_parse(sock: Any, frame: bytes) -> None:
    sock._FyersDataSocket__response_msg(bytearray(frame))


TOPICS = {"sf|nse_cm|3045": ("NSE", "SBIN", "10100000003045"), "sf|nse_cm|1594": ("NSE", "INFY", "10100000001594"),
          "if|nse_cm|Nifty 50": ("NSE", "NIFTY 50", "101000000026000")}  # fmt: skip


def table(mode: str) -> codec.SymbolTable:
    keys = {(topic, tok): (ex, sym) for topic, (ex, sym, tok) in TOPICS.items()}
    return feed.update_table(None, keys, dict.fromkeys(keys, mode))


def check_against_state(tick: Tick, state: dict[str, Any], lite: bool) -> None:
    """Our tick against the SDK parser's state for the topic (absent keys are 0 for us)."""
    assert tick.price_divisor == 10 ** state["precision"] * state["multiplier"]
    if lite:
        assert tick.mode == "ltp" and tick.last_price == state.get("ltp", 0)
        return
    names = INDEX_MAP if state["type"] == "if" else SYMBOL_MAP
    for ours, theirs in names.items():
        assert getattr(tick, ours) == state.get(theirs, 0), (ours, theirs)
    feed_time = state.get("exch_feed_time", 0)
    assert tick.exchange_ts_ms == feed_time * 1000


@st.composite
def sessions(draw: Any, lite: bool) -> list[bytes]:
    """A snapshot per topic, then random updates (85, or 76 in lite mode), framed at random."""
    names = draw(st.lists(st.sampled_from(sorted(TOPICS)), min_size=1, max_size=3, unique=True))
    ids = {name: (i + 1).to_bytes(2, "big") for i, name in enumerate(names)}
    packets: list[bytes] = []
    for name in names:
        count = enc.INDEX_FIELDS if name.startswith("if") else enc.SYMBOL_FIELDS
        values = draw(st.lists(MAYBE, min_size=count, max_size=count))
        if lite:
            values[0] = draw(VALUE)  # the SDK's lite path needs a snapshot ltp to compare with
        packets.append(enc.snapshot(ids[name], name, values, draw(st.integers(1, 3)), draw(st.integers(0, 4)),
                                    "NSE", name.rsplit("|", 1)[1], "X"))  # fmt: skip
    for _ in range(draw(st.integers(0, 8))):
        name = draw(st.sampled_from(names))
        if lite:
            packets.append(enc.lite(ids[name], draw(VALUE)))
        else:
            count = enc.INDEX_FIELDS if name.startswith("if") else enc.SYMBOL_FIELDS
            packets.append(enc.update(ids[name], draw(st.lists(MAYBE, min_size=count, max_size=count))))
    frames: list[bytes] = []
    i = 0
    while i < len(packets):
        n = draw(st.integers(1, 3))
        frames.append(enc.data_frame(len(frames) + 1, packets[i : i + n]))
        i += n
    return frames


def _run(sdk_socket: Any, frames: list[bytes], lite: bool) -> None:
    reset(sdk_socket, lite, {name: f"NSE:{sym}" for name, (_e, sym, _t) in TOPICS.items()})
    tab = table("ltp" if lite else "quote")
    ours: list[Tick] = []
    for frame in frames:
        ticks, bad = codec.decode_message(frame, tab, 1)
        assert bad == 0
        sdk_parse(sdk_socket, frame)
        ours.extend(ticks)
        last: dict[str, Tick] = {}
        for t in ticks:
            last[t.symbol] = t
        for name, (_ex, sym, _tok) in TOPICS.items():
            if sym in last:
                check_against_state(last[sym], sdk_socket.resp[name], lite)
    assert len(ours) >= len(sdk_socket.collected)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=sessions(lite=False))
def test_full_mode_frames_decode_as_the_sdk_parses_them(sdk_socket: Any, frames: list[bytes]) -> None:
    _run(sdk_socket, frames, lite=False)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=sessions(lite=True))
def test_lite_mode_frames_decode_as_the_sdk_parses_them(sdk_socket: Any, frames: list[bytes]) -> None:
    _run(sdk_socket, frames, lite=True)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    ticks, bad = codec.decode_message(data, table("quote"), 0)
    assert bad in (0, 1) and isinstance(ticks, list)
    # and with a data-frame head, so the packet parsers see the garbage
    frame = struct.pack(">HBIH", len(data) + 7, 6, 1, 3) + data
    ticks, bad = codec.decode_message(frame, table("quote"), 0)
    assert bad in (0, 1)


def test_depth_rides_on_full_mode_symbol_ticks(sdk_socket: Any) -> None:
    # Given a depth snapshot and a symbol snapshot of SBIN in one frame
    keys = {("sf|nse_cm|3045", "10100000003045"): ("NSE", "SBIN")}
    tab = feed.update_table(None, keys, dict.fromkeys(keys, "full"))
    depth = list(range(100, 130))
    sym = [5000 + i for i in range(enc.SYMBOL_FIELDS)]
    frame = enc.data_frame(1, [enc.snapshot(b"\0\1", "dp|nse_cm|3045", depth, 1, 2, "NSE", "3045", "SBIN-EQ"),
                               enc.snapshot(b"\0\2", "sf|nse_cm|3045", sym, 1, 2, "NSE", "3045", "SBIN-EQ")])  # fmt: skip
    (tick,), bad = codec.decode_message(frame, tab, 0)
    # Then the tick is full, with five levels of (price, quantity, orders) as the SDK reads them
    assert bad == 0 and tick.mode == "full" and tick.token == "10100000003045"
    assert tick.bids[:6] == (100, 110, 120, 101, 111, 121) and tick.asks[:3] == (105, 115, 125)
    reset(sdk_socket, False, {"dp|nse_cm|3045": "NSE:SBIN-EQ", "sf|nse_cm|3045": "NSE:SBIN-EQ"})
    sdk_parse(sdk_socket, frame)
    dp = sdk_socket.resp["dp|nse_cm|3045"]
    assert [dp[f"bid_price{i}"] for i in range(1, 6)] == list(tick.bids[0::3])
    assert [dp[f"ask_size{i}"] for i in range(1, 6)] == list(tick.asks[1::3])
    assert [dp[f"bid_order{i}"] for i in range(1, 6)] == list(tick.bids[2::3])
    # an update to the depth alone changes the next symbol tick's depth, and emits nothing itself
    ticks, _ = codec.decode_message(enc.data_frame(2, [enc.update(b"\0\1", [99] + [INT_MIN] * 29)]), tab, 0)
    assert ticks == []
    (tick,), _ = codec.decode_message(enc.data_frame(3, [enc.update(b"\0\2", [5001] + [INT_MIN] * 20)]), tab, 0)
    assert tick.last_price == 5001 and tick.bids[0] == 99


def test_a_cut_frame_keeps_the_ticks_before_it_and_counts_one_malformed() -> None:
    tab = table("quote")
    snap = enc.snapshot(b"\0\1", "sf|nse_cm|3045", [1] * 21, 1, 2, "NSE", "3045", "SBIN-EQ")
    frame = enc.data_frame(1, [snap, enc.update(b"\0\1", [2] * 21)])
    ticks, bad = codec.decode_message(frame[:-3], tab, 0)
    assert [t.last_price for t in ticks] == [1] and bad == 1
    # an update for a topic id no snapshot named is skipped, not guessed
    ticks, bad = codec.decode_message(enc.data_frame(2, [enc.update(b"\x00\x09", [2] * 21)]), tab, 0)
    assert ticks == [] and bad == 0
    # responses (auth, subscribe, pong) carry no ticks and are not malformed
    assert codec.decode_message(enc.auth_response(True), tab, 0) == ([], 0)
    assert codec.decode_message(enc.pong(), tab, 0) == ([], 0)


def test_decoder_state_survives_a_new_wanted_set() -> None:
    keys = {("sf|nse_cm|3045", "10100000003045"): ("NSE", "SBIN")}
    first = feed.update_table(feed.symbol_table({}), keys, dict.fromkeys(keys, "quote"))
    snap = enc.snapshot(b"\0\1", "sf|nse_cm|3045", [7] * 21, 1, 2, "NSE", "3045", "SBIN-EQ")
    codec.decode_message(enc.data_frame(1, [snap]), first, 0)
    more = {**keys, ("sf|nse_cm|1594", "10100000001594"): ("NSE", "INFY")}
    second = feed.update_table(first, more, dict.fromkeys(more, "ltp"))
    (tick,), _ = codec.decode_message(enc.data_frame(2, [enc.update(b"\0\1", [8] + [INT_MIN] * 20)]), second, 0)
    assert (tick.symbol, tick.mode, tick.last_price) == ("SBIN", "ltp", 8)


# ----- the client messages, against the SDK's own builders ---------------------------------------
def test_messages_match_the_sdk_builders(sdk_socket: Any) -> None:
    from fyers_apiv3.FyersWebsocket import data_ws

    sock = sdk_socket
    claims = '{"hsm_key":"abc123","exp":9999999999}'
    import base64

    token = "h." + base64.urlsafe_b64encode(claims.encode()).decode().rstrip("=") + ".s"
    assert feed.hsm_key(token) == "abc123" and feed.hsm_key(f"APP-100:{token}") == "abc123"
    assert feed.hsm_key("not a jwt") == ""
    sock._FyersDataSocket__hsm_token = "abc123"
    sock.source = feed.SOURCE
    assert feed.auth_message(token) == bytes(sock._FyersDataSocket__access_token_msg())
    sock.channel_num = 11
    # The SDK sends 0 (mode) or a miscounted length (subscribe); the rest is byte for byte the same.
    assert feed.mode_message(11, feed.FULL_MODE)[2:] == bytes(sock._FyersDataSocket__full_mode_msg())[2:]
    assert feed.mode_message(11, feed.LITE_MODE)[2:] == bytes(sock._FyersDataSocket__lite_mode_msg())[2:]
    topics = ["sf|nse_cm|3045", "if|nse_cm|Nifty 50"]
    keys = [(t, "x") for t in topics]
    sock.scrips_per_channel = {11: []}
    (ours,) = feed.subscribe_messages({"quote": keys})
    assert ours[2:] == bytes(sock._FyersDataSocket__subscription_msg(sorted(topics)))[2:]
    (ours,) = feed.unsubscribe_messages({"quote": keys})
    assert ours[2:] == bytes(sock._FyersDataSocket__unsubscription_msg(sorted(topics)))[2:]
    assert bytes([0, 1, 11]) == feed.PING_MESSAGE
    assert data_ws.FyersDataSocket is type(sock)


def test_topics_and_channels() -> None:
    sbin = Instrument("NSE", "SBIN", "10100000003045", broker_symbol="NSE:SBIN-EQ")
    tcs = Instrument("NSE", "TCS", "101000000011536", broker_symbol="NSE:TCS-EQ")
    nifty = Instrument("NSE", "NIFTY 50", "101000000026000", name="Nifty 50", instrument_type="INDEX",
                       broker_symbol="NSE:NIFTY50-INDEX")  # fmt: skip
    assert feed.key_of(sbin) == ("sf|nse_cm|3045", "10100000003045")
    assert feed.key_of(tcs) == ("sf|nse_cm|11536", "101000000011536")
    assert feed.key_of(nifty) == ("if|nse_cm|Nifty 50", "101000000026000")
    full = feed.subscribe_messages({"full": [feed.key_of(sbin), feed.key_of(nifty)]})
    ltp = feed.subscribe_messages({"ltp": [feed.key_of(sbin)]})
    assert b"dp|nse_cm|3045" in full[0] and b"dp|nse_cm|Nifty" not in full[0] and full[0][-1] == 11
    assert ltp[0][-1] == 12 and b"dp|" not in ltp[0]
    assert len(feed.login_messages("k", "u", "a.b.c", "")) == 3


def test_refusals_are_told_from_other_answers() -> None:
    assert feed.binary_refusal(enc.auth_response(False)) == "authentication failed"
    assert feed.binary_refusal(enc.auth_response(True)) is None
    assert feed.binary_refusal(enc.response(4, ok=False)) is None
    custom = struct.pack(">HBB", 0, 51, 3) + b"\x01\x00\x04" + struct.pack(">i", 11001) + b"\x02\x00\x03bad" + b"\x03\x00\x01\x01"
    assert feed.binary_refusal(custom) == "bad"


def test_paper_path_is_served(tmp_path: Path) -> None:
    # (the paper routes are the real paths the dialect's default URLs carry)
    from paper.fyers import ws as ws_fyers

    assert feed.MAX_PER_SOCKET * 2 <= ws_fyers.MAX_TOPICS
    assert ws_fyers.DATA_PATH == "/hsm/v1-5/prod" and ws_fyers.ORDER_PATH == "/trade/v3"


def test_acknowledgements_as_the_auth_answer_asks(sdk_socket: Any) -> None:
    tab = table("quote")
    assert feed.reply_to(enc.auth_response(True, 3), tab) == []
    frames = [enc.data_frame(n, []) for n in range(1, 8)]
    acks = [feed.reply_to(f, tab) for f in frames]
    assert acks == [[], [], [feed.ack_message(3)], [], [], [feed.ack_message(6)], []]
    # the SDK sends the same bytes at the same frames
    reset(sdk_socket, False, {})
    sent: list[bytes] = []
    sdk_socket.add_message = lambda m: sent.append(bytes(m))
    sdk_parse(sdk_socket, enc.auth_response(True, 3))
    for f in frames:
        sdk_parse(sdk_socket, f)
    assert sent == [feed.ack_message(3), feed.ack_message(6)]
    del sdk_socket.add_message
    # without an ack count (0) nothing is acknowledged
    assert feed.reply_to(enc.auth_response(True, 0), tab) == []
    assert all(feed.reply_to(f, tab) == [] for f in frames)
