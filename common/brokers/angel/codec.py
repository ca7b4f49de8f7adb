"""Angel SmartWebSocketV2 binary packets → :class:`~common.models.Tick`. Pure: bytes in, ticks out.

Wire format (little-endian, smartapi-python 1.5.5 ``SmartWebSocketV2._parse_binary_data``):
one packet per binary message. Mode ``u8`` (1 LTP, 2 Quote, 3 Snap Quote), exchange type
``u8``, token (25 bytes, NUL-padded ASCII), sequence ``i64``, exchange timestamp ``i64``
(ms), last price ``i64`` → 51 bytes. Quote (123) adds last traded qty, average price,
volume (``i64``), total buy/sell qty (``f64``), open, high, low, close (``i64``). Snap
Quote (379) adds last traded time, OI (``i64``), OI change % (8 bytes, ignored here), best
five (10 of ``u16`` flag, ``i64`` qty, ``i64`` price, ``u16`` orders; flag 1 = bid, 0 = ask),
upper/lower circuit and 52-week high/low. Prices are integers in paise (1/100 rupee), except
currency derivatives (exchange type 13, cde_fo) in 1/10^7 rupee.

Snap Quote is published as mode ``full`` (the same shape as Kite full). Unknown tokens
decode with exchange ``""`` and symbol = the token; the feed drops those. A message that
is too short for its mode, or has a mode this decoder does not read (4, depth 20, is never
subscribed), is counted as malformed; decoding never raises on bytes from the network.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from operator import itemgetter

from common.models import Tick

__all__ = [
    "CDE_FO",
    "LTP_LEN",
    "MODES",
    "QUOTE_LEN",
    "SNAP_QUOTE_LEN",
    "SymbolTable",
    "decode_message",
    "price_divisor",
    "symbol_table",
    "token_key",
]

LTP_LEN = 51
QUOTE_LEN = 123
SNAP_QUOTE_LEN = 379
CDE_FO = 13
MODES = {"ltp": 1, "quote": 2, "full": 3}  # our mode names → Angel's subscription modes

_HEAD = "<BB25sqqq"
_LTP = struct.Struct(_HEAD)
_QUOTE = struct.Struct(_HEAD + "qqqddqqqq")
_SNAP = struct.Struct(_HEAD + "qqqddqqqq" + "qq8x" + "HqqH" * 10 + "qqqq")
assert (_LTP.size, _QUOTE.size, _SNAP.size) == (LTP_LEN, QUOTE_LEN, SNAP_QUOTE_LEN)

# snap fields: 0 mode, 1 exch, 2 token, 3 seq, 4 ts, 5 ltp, 6 lq, 7 avg, 8 vol, 9 tbq, 10 tsq,
# 11 o, 12 h, 13 l, 14 c, 15 ltt, 16 oi, 17.. depth (flag, qty, price, orders) * 10
_DEPTH0 = 17
_FLAGS = itemgetter(*range(_DEPTH0, _DEPTH0 + 40, 4))
_FIRST5 = itemgetter(*[_DEPTH0 + 4 * i + k for i in range(5) for k in (2, 1, 3)])
_LAST5 = itemgetter(*[_DEPTH0 + 4 * i + k for i in range(5, 10) for k in (2, 1, 3)])
_BIDS_FIRST = (1,) * 5 + (0,) * 5

Prefix = tuple[str, str, str, int]
# (exchange type, 25-byte NUL-padded token as sent) → (exchange, symbol, token, divisor)
SymbolTable = Mapping[tuple[int, bytes], Prefix]


def price_divisor(exchange_type: int) -> int:
    return 10_000_000 if exchange_type == CDE_FO else 100


def token_key(exchange_type: int, token: str) -> tuple[int, bytes]:
    """The symbol-table key for a token: the exact bytes the packet carries."""
    return (int(exchange_type), token.encode("ascii").ljust(25, b"\0"))


def symbol_table(symbols: Mapping[tuple[int, str], tuple[str, str]]) -> dict[tuple[int, bytes], Prefix]:
    """Precompute the per-token tick prefix from (exchange type, token) → (exchange, symbol)."""
    return {
        token_key(et, tok): (ex, sym, str(tok), price_divisor(int(et))) for (et, tok), (ex, sym) in symbols.items()
    }


def _unknown(exchange_type: int, raw: bytes) -> Prefix:
    tok = raw.split(b"\0", 1)[0].decode("ascii", "replace")
    return ("", tok, tok, price_divisor(exchange_type))


def _depth(v: tuple) -> tuple[tuple[int, ...], tuple[int, ...]]:  # type: ignore[type-arg]
    flags = _FLAGS(v)
    if flags == _BIDS_FIRST:
        return _FIRST5(v), _LAST5(v)
    bids: list[int] = []
    asks: list[int] = []
    for i, flag in enumerate(flags):
        j = _DEPTH0 + 4 * i
        (bids if flag == 1 else asks).extend((v[j + 2], v[j + 1], v[j + 3]))
    return tuple(bids), tuple(asks)


def decode_message(data: bytes, symbols: SymbolTable, received_ns: int = 0) -> tuple[list[Tick], int]:
    """The ticks in one binary message (zero or one) and the count of malformed packets (0 or 1)."""
    n = len(data)
    if n < LTP_LEN:
        return [], 1
    mode = data[0]
    if mode == 1:
        _m, et, raw, _seq, ts, lp = _LTP.unpack_from(data)
        ex, sym, tok, div = symbols.get((et, raw)) or _unknown(et, raw)
        return [Tick(ex, sym, tok, "ltp", div, lp, exchange_ts_ms=ts, received_ns=received_ns)], 0
    if mode == 2 and n >= QUOTE_LEN:
        _m, et, raw, _seq, ts, lp, lq, avg, vol, _tbq, _tsq, o, h, lo, c = _QUOTE.unpack_from(data)
        ex, sym, tok, div = symbols.get((et, raw)) or _unknown(et, raw)
        return [Tick(ex, sym, tok, "quote", div, lp, lq, avg, vol, 0, 0, 0, 0, 0, o, h, lo, c, ts, received_ns)], 0
    if mode == 3 and n >= SNAP_QUOTE_LEN:
        v = _SNAP.unpack_from(data)
        et, raw = v[1], v[2]
        ex, sym, tok, div = symbols.get((et, raw)) or _unknown(et, raw)
        bids, asks = _depth(v)
        bp, bq = (bids[0], bids[1]) if bids else (0, 0)
        ap, aq = (asks[0], asks[1]) if asks else (0, 0)
        tick = Tick(
            ex, sym, tok, "full", div, v[5], v[6], v[7], v[8], v[16], bp, bq, ap, aq,
            v[11], v[12], v[13], v[14], v[4], received_ns, bids, asks,
        )  # fmt: skip
        return [tick], 0
    return [], 1
