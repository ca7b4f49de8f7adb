"""Kite ticker frames for the paper broker: values in, bytes out, no I/O.

Kite (``ws.kite.trade``) speaks big-endian frames of several packets; every layout mirrors what
kiteconnect 5.2.2's ``KiteTicker._parse_binary`` reads, so the official client serves as the
oracle in tests. Prices are integers in the segment's smallest unit (paise; CDS 10^7 per rupee,
BCD/NCO 10^4, see :func:`kite_price_divisor`); timestamps are epoch seconds.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

__all__ = [
    "KITE_FULL_LEN",
    "KITE_HEARTBEAT",
    "KITE_INDEX_FULL_LEN",
    "KITE_INDEX_QUOTE_LEN",
    "KITE_INDEX_SEGMENT",
    "KITE_LTP_LEN",
    "KITE_QUOTE_LEN",
    "kite_frame",
    "kite_frame_items",
    "kite_full",
    "kite_index_full",
    "kite_index_quote",
    "kite_item",
    "kite_ltp",
    "kite_ltp_item",
    "kite_malformed_frame",
    "kite_packet_from_json",
    "kite_price_divisor",
    "kite_quote",
    "kite_quote_item",
]

KITE_LTP_LEN = 8
KITE_INDEX_QUOTE_LEN = 28
KITE_INDEX_FULL_LEN = 32
KITE_QUOTE_LEN = 44
KITE_FULL_LEN = 184
KITE_INDEX_SEGMENT = 9
# A one-byte binary message is Kite's heartbeat; the official client ignores it.
KITE_HEARTBEAT = b"\x00"

# The SDK reads every field as unsigned (">I"), so unsigned is what round-trips.
# The index net change is the one field that can be negative; the SDK ignores it
# (it recomputes change from close), and Kite sends it signed.
_KITE_LTP = struct.Struct(">II")
_KITE_INDEX_QUOTE = struct.Struct(">6Ii")
_KITE_INDEX_FULL = struct.Struct(">6IiI")
_KITE_QUOTE = struct.Struct(">11I")
# Full = quote (11) + last trade time, OI, OI day high, OI day low, exchange ts (5)
# + 10 depth entries (quantity, price, orders, 2 bytes padding), 5 bids then 5 asks.
_KITE_FULL = struct.Struct(">16I" + "IIH2x" * 10)
_KITE_COUNT = struct.Struct(">H")
_KITE_LEN = struct.Struct(">H")

assert _KITE_LTP.size == KITE_LTP_LEN
assert _KITE_INDEX_QUOTE.size == KITE_INDEX_QUOTE_LEN
assert _KITE_INDEX_FULL.size == KITE_INDEX_FULL_LEN
assert _KITE_QUOTE.size == KITE_QUOTE_LEN
assert _KITE_FULL.size == KITE_FULL_LEN

# Length prefix + packet in one precompiled struct: building a frame is then one
# pack call per packet, which keeps the ticker well above 30k packets/s.
_KITE_LTP_ITEM = struct.Struct(">H" + _KITE_LTP.format[1:])
_KITE_QUOTE_ITEM = struct.Struct(">H" + _KITE_QUOTE.format[1:])

_KITE_SEGMENT_DIVISORS = {3: 10_000_000, 6: 10_000, 12: 10_000}


def kite_price_divisor(token: int) -> int:
    """Integer units per rupee for the segment encoded in ``token`` (low byte)."""
    return _KITE_SEGMENT_DIVISORS.get(token & 0xFF, 100)


def kite_ltp(token: int, last_price: int) -> bytes:
    """The 8-byte LTP packet."""
    return _KITE_LTP.pack(token, last_price)


def kite_index_quote(
    token: int, last_price: int, high: int, low: int, open_: int, close: int, change: int
) -> bytes:
    """The 28-byte index quote packet (segment 9 tokens)."""
    return _KITE_INDEX_QUOTE.pack(token, last_price, high, low, open_, close, change)


def kite_index_full(*fields: int) -> bytes:
    """The 32-byte index full packet: :func:`kite_index_quote`'s fields, then the exchange timestamp
    (epoch s)."""
    return _KITE_INDEX_FULL.pack(*fields)


def kite_quote(*quote: int) -> bytes:
    """The 44-byte quote packet; ``quote`` is :func:`kite_full`'s first 11 fields, from ``token``
    to ``close``."""
    return _KITE_QUOTE.pack(*quote)


def kite_full(
    token: int,
    last_price: int,
    last_quantity: int,
    average_price: int,
    volume: int,
    buy_quantity: int,
    sell_quantity: int,
    open_: int,
    high: int,
    low: int,
    close: int,
    last_trade_time_s: int,
    oi: int,
    oi_day_high: int,
    oi_day_low: int,
    exchange_ts_s: int,
    depth: Sequence[tuple[int, int, int]],
) -> bytes:
    """The 184-byte full packet; ``depth`` is 10 (quantity, price, orders), 5 bids then 5 asks."""
    if len(depth) != 10:
        raise ValueError(f"Kite full depth needs 10 levels (5 bids, 5 asks), got {len(depth)}")
    flat = [value for level in depth for value in level]
    return _KITE_FULL.pack(
        token, last_price, last_quantity, average_price, volume, buy_quantity, sell_quantity,
        open_, high, low, close, last_trade_time_s, oi, oi_day_high, oi_day_low, exchange_ts_s,
        *flat,
    )


def kite_frame(packets: Iterable[bytes]) -> bytes:
    """One binary message: int16 packet count, then int16 length + packet for each."""
    return kite_frame_items([kite_item(packet) for packet in packets])


def kite_quote_item(*quote: int) -> bytes:
    """A quote packet (the 11 fields of :func:`kite_quote`, in its order) with its int16 length
    prefix, ready for :func:`kite_frame_items`."""
    return _KITE_QUOTE_ITEM.pack(KITE_QUOTE_LEN, *quote)


def kite_ltp_item(token: int, last_price: int) -> bytes:
    """An LTP packet with its int16 length prefix, ready for :func:`kite_frame_items`."""
    return _KITE_LTP_ITEM.pack(KITE_LTP_LEN, token, last_price)


def kite_item(packet: bytes) -> bytes:
    """Any packet with its int16 length prefix."""
    return _KITE_LEN.pack(len(packet)) + packet


def kite_frame_items(items: Sequence[bytes]) -> bytes:
    """A frame from already length-prefixed packets (the fast path of the ticker)."""
    return _KITE_COUNT.pack(len(items)) + b"".join(items)


def kite_malformed_frame(packets: Sequence[bytes]) -> bytes:
    """A frame whose header declares one packet more than it carries and whose last
    length overruns the message: what a decoder must survive without crashing."""
    body = b"".join(_KITE_LEN.pack(len(p)) + p for p in packets[:-1])
    last = packets[-1] if packets else b"\x00" * KITE_QUOTE_LEN
    # Declared length larger than the bytes that follow, then the message ends.
    body += _KITE_LEN.pack(len(last) + 100) + last[: len(last) // 2]
    return _KITE_COUNT.pack(len(packets) + 1) + body


def _kite_epoch_s(value: Any) -> int:
    """Epoch seconds from an ISO 8601 string (as in the fixtures), datetime or number."""
    if value is None:
        return 0
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, int | float):
        return int(value)
    return int(datetime.fromisoformat(str(value)).timestamp())


def kite_packet_from_json(tick: Mapping[str, Any]) -> bytes:
    """Encode a decoded Kite tick (the fixtures' JSON shape) back into one packet.

    Accepts both the fixture key names (``last_quantity``, ``volume``,
    ``buy_quantity``, ``timestamp``) and the SDK's (``last_traded_quantity``,
    ``volume_traded``, ``total_buy_quantity``, ``exchange_timestamp``). Prices are
    rupees here and are rounded to the segment's integer unit.
    """
    token = int(tick["instrument_token"])
    div = kite_price_divisor(token)

    def px(v: Any) -> int:
        return round(float(v) * div)

    def pick(*names: str) -> Any:
        return next((tick[name] for name in names if name in tick), 0)

    mode = tick.get("mode", "quote")
    last_price = px(tick["last_price"])
    if mode == "ltp":
        return kite_ltp(token, last_price)
    ohlc = tick.get("ohlc", {})
    o, h, low, c = px(ohlc.get("open", 0)), px(ohlc.get("high", 0)), px(ohlc.get("low", 0)), px(ohlc.get("close", 0))
    if token & 0xFF == KITE_INDEX_SEGMENT:
        change = last_price - c
        if mode == "full":
            ts = _kite_epoch_s(pick("exchange_timestamp", "timestamp"))
            return kite_index_full(token, last_price, h, low, o, c, change, ts)
        return kite_index_quote(token, last_price, h, low, o, c, change)
    quote_fields = (
        token,
        last_price,
        int(pick("last_traded_quantity", "last_quantity")),
        px(pick("average_traded_price", "average_price")),
        int(pick("volume_traded", "volume")),
        int(pick("total_buy_quantity", "buy_quantity")),
        int(pick("total_sell_quantity", "sell_quantity")),
        o, h, low, c,
    )
    if mode != "full":
        return kite_quote(*quote_fields)
    depth_json = tick.get("depth", {"buy": [], "sell": []})
    depth: list[tuple[int, int, int]] = []
    for side in ("buy", "sell"):
        levels = list(depth_json.get(side, []))[:5]
        levels += [{"quantity": 0, "price": 0, "orders": 0}] * (5 - len(levels))
        depth.extend((int(lv["quantity"]), px(lv["price"]), int(lv["orders"])) for lv in levels)
    return kite_full(
        *quote_fields,
        _kite_epoch_s(tick.get("last_trade_time")),
        int(tick.get("oi", 0)),
        int(tick.get("oi_day_high", 0)),
        int(tick.get("oi_day_low", 0)),
        _kite_epoch_s(pick("exchange_timestamp", "timestamp")),
        depth,
    )
