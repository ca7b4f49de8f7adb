"""Binary frames of Fyers' HSM data socket, as its server sends them (the layout fyers_apiv3's
``data_ws.py`` parses; ``common/brokers/fyers/codec.py`` documents it).

Responses: ``>H`` length, ``B`` type, ``B`` field count, fields (``B`` id, ``>H`` length, value),
status field ``"K"`` for success. Data frames: ``>H`` length, ``B`` 6, ``>I`` message number,
``>H`` packet count, packets (83 snapshot, 85 update, 76 lite). Topic ids are 2 bytes; values
``>i``, ``-2**31`` meaning "no value / unchanged".
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "INDEX_FIELDS",
    "NO_VALUE",
    "SYMBOL_FIELDS",
    "data_frame",
    "depth_values",
    "index_values",
    "lite",
    "pong",
    "response",
    "snapshot",
    "symbol_values",
    "update",
]

NO_VALUE = -(2**31)
DATA_FEED = 6
PING = 11
SNAPSHOT, UPDATE, LITE = 83, 85, 76
SYMBOL_FIELDS = 21
INDEX_FIELDS = 6
_I32_MAX = 2**31 - 1


def _field(fid: int, value: bytes) -> bytes:
    return bytes([fid]) + struct.pack(">H", len(value)) + value


def response(req_type: int, ok: bool = True, extra: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """The answer to a request: field 1 "K" (or "N" refused), then ``extra`` fields."""
    body = _field(1, b"K" if ok else b"N") + b"".join(_field(fid, v) for fid, v in extra)
    return struct.pack(">HBB", 2 + len(body), req_type, 1 + len(extra)) + body


def auth_response(ok: bool, ack_count: int = 0) -> bytes:
    """Type 1; field 2 is how many data frames the client may take before acknowledging (0: never)."""
    return response(1, ok, [(2, struct.pack(">I", ack_count))])


def pong() -> bytes:
    return bytes([0, 1, PING])


def _i32(v: int) -> int:
    # Values that do not fit a signed 32-bit field cannot be sent; clamp rather than crash.
    return max(NO_VALUE + 1, min(_I32_MAX, int(v)))


def _values(values: Iterable[int]) -> bytes:
    vals = list(values)
    return struct.pack(f">{len(vals)}i", *(v if v == NO_VALUE else _i32(v) for v in vals))


def _string(text: str) -> bytes:
    raw = text.encode()[:255]
    return bytes([len(raw)]) + raw


def snapshot(topic_id: bytes, name: str, values: Sequence[int], multiplier: int, precision: int,
             exchange: str, exchange_token: str, symbol: str) -> bytes:  # fmt: skip
    raw = name.encode()
    return (
        bytes([SNAPSHOT]) + topic_id + bytes([len(raw)]) + raw + bytes([len(values)]) + _values(values)
        + b"\0\0" + struct.pack(">HB", multiplier, precision)
        + _string(exchange) + _string(exchange_token) + _string(symbol)
    )  # fmt: skip


def update(topic_id: bytes, values: Sequence[int]) -> bytes:
    return bytes([UPDATE]) + topic_id + bytes([len(values)]) + _values(values)


def lite(topic_id: bytes, ltp: int) -> bytes:
    return bytes([LITE]) + topic_id + _values([ltp])


def data_frame(message_number: int, packets: Sequence[bytes]) -> bytes:
    body = struct.pack(">BIH", DATA_FEED, message_number & 0xFFFFFFFF, len(packets)) + b"".join(packets)
    return struct.pack(">H", len(body)) + body


def symbol_values(v: dict[str, Any], tick: int) -> list[int]:
    """The 21 symbol fields from a tick clock value set (prices in 1/price_divisor rupee)."""
    depth = v.get("depth")
    if depth is not None:
        bid, ask = depth["buy"][0], depth["sell"][0]
        bid_price, bid_size, ask_price, ask_size = bid["price"], bid["quantity"], ask["price"], ask["quantity"]
    else:  # light values carry no depth: a one-tick spread around the last price
        last = v["last_price"]
        bid_price, ask_price = max(tick, last - tick), last + tick
        bid_size, ask_size = v["buy_quantity"] % 1000 + 1, v["sell_quantity"] % 1000 + 1
    return [
        v["last_price"], v["volume"], v["last_trade_time"], v["exchange_timestamp"], bid_size, ask_size,
        bid_price, ask_price, v["last_quantity"], v["buy_quantity"], v["sell_quantity"], v["average_price"],
        v["oi"], v["low"], v["high"], v.get("week52_high", NO_VALUE), v.get("week52_low", NO_VALUE),
        v.get("lower_circuit", NO_VALUE), v.get("upper_circuit", NO_VALUE), v["open"], v["close"],
    ]  # fmt: skip


def index_values(v: dict[str, Any]) -> list[int]:
    """The 6 index fields: ltp, previous close, feed time, high, low, open."""
    return [v["last_price"], v["close"], v["exchange_timestamp"], v["high"], v["low"], v["open"]]


def depth_values(v: dict[str, Any]) -> list[int] | None:
    """The 30 depth fields (5 bid prices, 5 ask prices, sizes, orders), or None without depth."""
    depth = v.get("depth")
    if depth is None:
        return None
    buy, sell = depth["buy"][:5], depth["sell"][:5]
    return (
        [d["price"] for d in buy] + [d["price"] for d in sell]
        + [d["quantity"] for d in buy] + [d["quantity"] for d in sell]
        + [d["orders"] for d in buy] + [d["orders"] for d in sell]
    )  # fmt: skip
