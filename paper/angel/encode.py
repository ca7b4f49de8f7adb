"""Angel SmartWebSocketV2 packets for the paper broker: values in, bytes out, no I/O.

One little-endian packet per binary message; every layout mirrors what smartapi-python 1.5.5's
``SmartWebSocketV2._parse_binary_data`` reads, so the official client serves as the oracle in
tests. Prices are integers in paise; timestamps are epoch milliseconds.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

__all__ = [
    "ANGEL_LTP_LEN",
    "ANGEL_MODE_LTP",
    "ANGEL_MODE_QUOTE",
    "ANGEL_MODE_SNAP_QUOTE",
    "ANGEL_QUOTE_LEN",
    "ANGEL_SNAP_QUOTE_LEN",
    "angel_ltp",
    "angel_quote",
    "angel_snap_quote",
]


ANGEL_MODE_LTP = 1
ANGEL_MODE_QUOTE = 2
ANGEL_MODE_SNAP_QUOTE = 3
ANGEL_LTP_LEN = 51
ANGEL_QUOTE_LEN = 123
ANGEL_SNAP_QUOTE_LEN = 379

# mode, exchange type, token (25 bytes, null padded), sequence, exchange ts (ms), LTP
_ANGEL_HEAD = "<BB25sqqq"
_ANGEL_LTP = struct.Struct(_ANGEL_HEAD)
# + last traded qty, average price, volume (i64), total buy/sell qty (f64), OHLC (i64):
# the SDK reads exactly these types.
_ANGEL_QUOTE_TAIL = "qqqddqqqq"
_ANGEL_QUOTE = struct.Struct(_ANGEL_HEAD + _ANGEL_QUOTE_TAIL)
# + last traded time, OI (i64), OI change % (f64 per Angel's documentation; note
# smartapi-python 1.5.5 reads these 8 bytes as i64), 10 depth entries
# (flag u16, qty i64, price i64, orders u16), upper/lower circuit, 52-week high/low.
_ANGEL_SNAP = struct.Struct(_ANGEL_HEAD + _ANGEL_QUOTE_TAIL + "qqd" + "HqqH" * 10 + "qqqq")

assert _ANGEL_LTP.size == ANGEL_LTP_LEN
assert _ANGEL_QUOTE.size == ANGEL_QUOTE_LEN
assert _ANGEL_SNAP.size == ANGEL_SNAP_QUOTE_LEN

# Angel marks bids with flag 1 and asks with flag 0; the SDK files flag 0 under its
# internal "buy" list and then swaps the two lists, so its output is right.
ANGEL_FLAG_BUY = 1
ANGEL_FLAG_SELL = 0


def _angel_token(token: str) -> bytes:
    raw = token.encode("ascii")
    if len(raw) > 25:
        raise ValueError(f"Angel token longer than 25 bytes: {token!r}")
    return raw  # struct's "25s" pads with NULs


def angel_ltp(
    exchange_type: int, token: str, sequence: int, exchange_ts_ms: int, last_price: int
) -> bytes:
    """The 51-byte LTP packet (mode 1)."""
    return _ANGEL_LTP.pack(ANGEL_MODE_LTP, exchange_type, _angel_token(token), sequence, exchange_ts_ms, last_price)


def angel_quote(exchange_type: int, token: str, *fields: float) -> bytes:
    """The 123-byte Quote packet (mode 2); ``fields`` are :func:`angel_snap_quote`'s from
    ``sequence`` to ``close``, in its order."""
    return _ANGEL_QUOTE.pack(ANGEL_MODE_QUOTE, exchange_type, _angel_token(token), *fields)


def angel_snap_quote(
    exchange_type: int,
    token: str,
    sequence: int,
    exchange_ts_ms: int,
    last_price: int,
    last_quantity: int,
    average_price: int,
    volume: int,
    total_buy_quantity: float,
    total_sell_quantity: float,
    open_: int,
    high: int,
    low: int,
    close: int,
    last_trade_time_ms: int,
    oi: int,
    oi_change_pct: float,
    bids: Sequence[tuple[int, int, int]],
    asks: Sequence[tuple[int, int, int]],
    upper_circuit: int,
    lower_circuit: int,
    week52_high: int,
    week52_low: int,
) -> bytes:
    """The 379-byte Snap Quote packet (mode 3); ``bids``/``asks`` are 5 (quantity, price, orders)."""
    if len(bids) != 5 or len(asks) != 5:
        raise ValueError("Angel snap quote needs 5 bids and 5 asks")
    sides = ((ANGEL_FLAG_BUY, bids), (ANGEL_FLAG_SELL, asks))
    flat = [value for flag, side in sides for level in side for value in (flag, *level)]
    return _ANGEL_SNAP.pack(
        ANGEL_MODE_SNAP_QUOTE, exchange_type, _angel_token(token), sequence, exchange_ts_ms, last_price,
        last_quantity, average_price, volume, total_buy_quantity, total_sell_quantity,
        open_, high, low, close, last_trade_time_ms, oi, oi_change_pct, *flat,
        upper_circuit, lower_circuit, week52_high, week52_low,
    )
