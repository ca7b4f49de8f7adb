"""Kite ticker binary frames → :class:`~common.models.Tick`. Pure: bytes in, ticks out.

Wire format (big-endian, kiteconnect 5.2.2 ``KiteTicker._parse_binary``): a 1-byte
message is a heartbeat; otherwise ``uint16`` packet count, then for each packet a
``uint16`` length and the packet. Lengths: 8 LTP, 28 index quote, 32 index full,
44 quote, 184 full (quote + last trade time, OI, OI day high/low, exchange timestamp,
then 10 depth levels of ``uint32`` quantity, ``uint32`` price, ``uint16`` orders and
2 bytes padding: 5 bids, then 5 asks). Every field is read unsigned, as the official
parser does. Segment = ``token & 0xFF``; 9 is indices; prices are integers in
1/divisor rupee: CDS (3) 10^7, BCD (6) and NCO (12) 10^4, everything else 100.

The hot loop is one precompiled ``unpack_from`` per packet, one dict lookup and one
tuple display (``itemgetter`` reorders the depth levels in C): no per-field Python code. A frame
whose packets are all full-mode takes :meth:`struct.Struct.iter_unpack` over the whole
frame, which is the fastest path CPython offers.

Unknown tokens (not in the symbol table) decode with exchange ``""`` and symbol
``str(token)``; the feed counts and drops those rather than publish them. A malformed
frame or packet (truncated, an unknown packet length, a count that overruns the
message) is counted and skipped; decoding never raises on bytes from the network.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from operator import itemgetter
from typing import Any

from common.models import Tick

__all__ = [
    "FULL_LEN",
    "INDEX_FULL_LEN",
    "INDEX_QUOTE_LEN",
    "LTP_LEN",
    "QUOTE_LEN",
    "SymbolTable",
    "decode_frame",
    "decode_text",
    "prefix",
    "price_divisor",
    "symbol_table",
]

LTP_LEN = 8
INDEX_QUOTE_LEN = 28
INDEX_FULL_LEN = 32
QUOTE_LEN = 44
FULL_LEN = 184
_DIVISORS = {3: 10_000_000, 6: 10_000, 12: 10_000}

_U16 = struct.Struct(">H")
_LTP = struct.Struct(">II")
_INDEX_QUOTE = struct.Struct(">7I")
_INDEX_FULL = struct.Struct(">8I")
_QUOTE = struct.Struct(">11I")
_FULL = struct.Struct(">16I" + "IIH2x" * 10)
# A full packet with its length prefix: a frame of full packets is a run of these.
_FULL_ITEM = struct.Struct(">H16I" + "IIH2x" * 10)
assert (_LTP.size, _INDEX_QUOTE.size, _INDEX_FULL.size, _QUOTE.size, _FULL.size) == (8, 28, 32, 44, 184)

# A symbol table entry is what every tick of that token starts with:
# (exchange, symbol, token as str, price divisor).
Prefix = tuple[str, str, str, int]
SymbolTable = Mapping[int, Prefix]

_new = tuple.__new__


def price_divisor(token: int) -> int:
    """Integer units per rupee for the segment in the token's low byte."""
    return _DIVISORS.get(token & 0xFF, 100)


def prefix(token: int, exchange: str, symbol: str) -> Prefix:
    return (exchange, symbol, str(token), price_divisor(token))


def symbol_table(symbols: Mapping[int, tuple[str, str]]) -> dict[int, Prefix]:
    """Precompute the per-token tick prefix from token → (exchange, symbol)."""
    return {int(t): prefix(int(t), ex, sym) for t, (ex, sym) in symbols.items()}


def _unknown(token: int) -> Prefix:
    return prefix(token, "", str(token))


def _depth_getters(first: int) -> tuple[itemgetter[Any], itemgetter[Any]]:
    """Bids and asks as flat (price, quantity, orders) * 5 from the unpacked packet, whose
    depth starts at index ``first`` as (quantity, price, orders) * 10."""
    bids = itemgetter(*[first + 3 * i + k for i in range(5) for k in (1, 0, 2)])
    asks = itemgetter(*[first + 3 * i + k for i in range(5, 10) for k in (1, 0, 2)])
    return bids, asks


_BIDS, _ASKS = _depth_getters(16)
_ITEM_BIDS, _ITEM_ASKS = _depth_getters(17)


def decode_frame(frame: bytes, symbols: SymbolTable, received_ns: int = 0) -> tuple[list[Tick], int]:
    """Every tick in one binary message, and how many packets (or frame parts) were malformed.

    ``symbols`` maps the token to ``(exchange, symbol, str(token), divisor)``; build it with
    :func:`symbol_table`. ``received_ns`` is stamped on every tick of the frame.
    """
    n = len(frame)
    if n < 2:
        return [], 0  # heartbeat
    count = _U16.unpack_from(frame, 0)[0]
    if count and n == 2 + count * (2 + FULL_LEN) and _U16.unpack_from(frame, 2)[0] == FULL_LEN:
        ticks = _decode_all_full(frame, symbols, received_ns)
        if ticks is not None:
            return ticks, 0
    return _decode_mixed(frame, symbols, received_ns, count)


def _decode_all_full(frame: bytes, symbols: SymbolTable, received_ns: int) -> list[Tick] | None:
    """The fast path: a frame of full packets only, one ``iter_unpack`` over all of it."""
    out: list[Tick] = []
    append = out.append
    get = symbols.get
    bids, asks = _ITEM_BIDS, _ITEM_ASKS
    for v in _FULL_ITEM.iter_unpack(memoryview(frame)[2:]):
        if v[0] != FULL_LEN:
            return None  # not homogeneous after all: the general path sorts it out
        tok = v[1]
        ex, sym, ts, div = get(tok) or _unknown(tok)
        # v: length, token, last price, last qty, average, volume, buy qty, sell qty, o, h, l, c,
        #    last trade time, oi, oi high, oi low, exchange ts, depth (qty, price, orders) * 10
        append(_new(Tick, (
            ex, sym, ts, "full", div, v[2], v[3], v[4], v[5], v[13], v[18], v[17], v[33], v[32],
            v[8], v[9], v[10], v[11], v[16] * 1000, received_ns, bids(v), asks(v),
        )))  # fmt: skip
    return out


def _decode_mixed(frame: bytes, symbols: SymbolTable, received_ns: int, count: int) -> tuple[list[Tick], int]:
    out: list[Tick] = []
    append = out.append
    get = symbols.get
    n = len(frame)
    pos = 2
    malformed = 0
    for _ in range(count):
        if pos + 2 > n:
            return out, malformed + 1  # the count overruns the message
        length = _U16.unpack_from(frame, pos)[0]
        pos += 2
        end = pos + length
        if end > n:
            return out, malformed + 1  # the packet overruns the message
        if length == FULL_LEN:
            v = _FULL.unpack_from(frame, pos)
            tok = v[0]
            ex, sym, ts, div = get(tok) or _unknown(tok)
            append(_new(Tick, (
                ex, sym, ts, "full", div, v[1], v[2], v[3], v[4], v[12], v[17], v[16], v[32], v[31],
                v[7], v[8], v[9], v[10], v[15] * 1000, received_ns, _BIDS(v), _ASKS(v),
            )))  # fmt: skip
        elif length == QUOTE_LEN:
            tok, lp, lq, avg, vol, _tbq, _tsq, o, h, lo, c = _QUOTE.unpack_from(frame, pos)
            ex, sym, ts, div = get(tok) or _unknown(tok)
            append(Tick(ex, sym, ts, "quote", div, lp, lq, avg, vol, 0, 0, 0, 0, 0, o, h, lo, c, 0, received_ns))
        elif length == LTP_LEN:
            tok, lp = _LTP.unpack_from(frame, pos)
            ex, sym, ts, div = get(tok) or _unknown(tok)
            append(Tick(ex, sym, ts, "ltp", div, lp, received_ns=received_ns))
        elif length in (INDEX_QUOTE_LEN, INDEX_FULL_LEN):
            if length == INDEX_FULL_LEN:
                tok, lp, h, lo, o, c, _chg, xts = _INDEX_FULL.unpack_from(frame, pos)
                mode, xts_ms = "full", xts * 1000
            else:
                tok, lp, h, lo, o, c, _chg = _INDEX_QUOTE.unpack_from(frame, pos)
                mode, xts_ms = "quote", 0
            ex, sym, ts, div = get(tok) or _unknown(tok)
            append(Tick(ex, sym, ts, mode, div, lp, 0, 0, 0, 0, 0, 0, 0, 0, o, h, lo, c, xts_ms, received_ns))
        else:
            malformed += 1  # a length this decoder does not know: skip exactly that packet
        pos = end
    return out, malformed


def decode_text(message: str | bytes) -> dict[str, Any] | None:
    """A text message (``{"type": "order"|"error"|"message", "data": ...}``) as a dict, or
    None when it is not a JSON object."""
    try:
        data = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None

