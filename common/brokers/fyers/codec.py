"""Fyers HSM data-socket frames → :class:`~common.models.Tick`. Bytes in, ticks out.

Wire format (fyers_apiv3 ``FyersWebsocket/data_ws.py``, ``__datafeed_resp``): a data frame is
``>H`` length, ``B`` response type 6, ``>I`` message number, ``>H`` packet count, then packets:

* 83 snapshot: ``B`` 83, 2-byte topic id, ``B`` name length, the topic name (``sf|nse_cm|3045``
  symbol, ``if|nse_cm|Nifty 50`` index, ``dp|nse_cm|3045`` depth), ``B`` field count, that many
  ``>i`` values, 2 bytes skipped, ``>H`` multiplier, ``B`` precision, then three strings
  (``B`` length + bytes: exchange, exchange token, symbol).
* 85 update: ``B`` 85, topic id, ``B`` field count, ``>i`` values; -2**31 means "unchanged".
* 76 lite: ``B`` 76, topic id, one ``>i``: the last price.

Field order (``map.json``): symbols 0 ltp, 1 volume, 2 last traded time, 3 exchange feed time
(epoch s), 4 bid size, 5 ask size, 6 bid, 7 ask, 8 last traded qty, 9 total buy qty, 10 total
sell qty, 11 average price, 12 OI, 13 low, 14 high, 15/16 52-week high/low, 17/18 circuits,
19 open, 20 previous close; indices 0 ltp, 1 previous close, 2 feed time, 3 high, 4 low, 5
open; depth 0-4 bid prices, 5-9 ask prices, 10-19 bid/ask sizes, 20-29 bid/ask orders.
Prices are integers in 1/(10**precision * multiplier) rupee, so that is the Tick's
price_divisor and nothing is rounded.

Updates and lite packets name only the topic id of an earlier snapshot, so decoding keeps
per-connection state (topic id → the last values) in the symbol table's shared
:class:`DecoderState`; an update for an id no snapshot introduced is skipped. A depth packet
only updates state: a full-mode symbol tick carries the latest depth of its instrument. A
frame cut short, or a packet type this decoder does not know, is counted as malformed (the
ticks before it are kept); decoding never raises on bytes from the network.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from common.models import Tick

__all__ = [
    "DATA_FEED",
    "DEPTH",
    "INDEX",
    "LITE",
    "NO_VALUE",
    "SNAPSHOT",
    "SYMBOL",
    "UPDATE",
    "DecoderState",
    "SymbolTable",
    "decode_message",
    "symbol_table",
]

DATA_FEED = 6
SNAPSHOT, UPDATE, LITE = 83, 85, 76
SYMBOL, INDEX, DEPTH = "sf", "if", "dp"
NO_VALUE = -(2**31)
FIELD_COUNTS = {SYMBOL: 21, INDEX: 6, DEPTH: 30}

_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")

Prefix = tuple[str, str, str, str]  # (exchange, symbol, token, mode)


@dataclass(slots=True)
class Topic:
    name: str
    kind: str
    divisor: int
    values: list[int]


@dataclass
class DecoderState:
    """What one connection's snapshots introduced: topic id (2 raw bytes) → Topic, and name → Topic."""

    by_id: dict[bytes, Topic] = field(default_factory=dict)
    by_name: dict[str, Topic] = field(default_factory=dict)
    ack_every: int = 0  # data frames between acknowledgements, from the auth answer (0: none)
    unacked: int = 0


@dataclass
class SymbolTable:
    """Topic name → tick prefix, plus the decoder state (shared by the tables of one socket)."""

    names: dict[str, Prefix] = field(default_factory=dict)
    state: DecoderState = field(default_factory=DecoderState)


def symbol_table(symbols: Mapping[str, Prefix], state: DecoderState | None = None) -> SymbolTable:
    """From topic name → (exchange, symbol, token, mode) (the token is the Fytoken)."""
    return SymbolTable(dict(symbols), state if state is not None else DecoderState())


def _values(count: int, data: bytes, off: int) -> list[int]:
    return [_I32.unpack_from(data, off + 4 * i)[0] for i in range(count)]


def _depth(state: DecoderState, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    dp = state.by_name.get(DEPTH + name[2:])
    if dp is None:
        return (), ()
    v = dp.values
    bids = tuple(x for i in range(5) for x in (v[i], v[10 + i], v[20 + i]))
    asks = tuple(x for i in range(5) for x in (v[5 + i], v[15 + i], v[25 + i]))
    return bids, asks


def _tick(table: SymbolTable, topic: Topic, lite: bool, received_ns: int) -> Tick | None:
    name = topic.name
    prefix = table.names.get(name)
    ex, sym, tok, mode = prefix if prefix is not None else ("", name, name.rsplit("|", 1)[-1], "quote")
    v = topic.values
    div = topic.divisor
    if lite or mode == "ltp":
        return Tick(ex, sym, tok, "ltp", div, v[0], received_ns=received_ns)
    if topic.kind == INDEX:
        return Tick(ex, sym, tok, mode, div, v[0], open=v[5], high=v[3], low=v[4], close=v[1],
                    exchange_ts_ms=v[2] * 1000, received_ns=received_ns)  # fmt: skip
    bids, asks = _depth(table.state, name) if mode == "full" else ((), ())
    return Tick(
        ex, sym, tok, mode, div, v[0], v[8], v[11], v[1], v[12], v[6], v[4], v[7], v[5],
        v[19], v[14], v[13], v[20], v[3] * 1000, received_ns, bids, asks,
    )  # fmt: skip


def _snapshot(data: bytes, off: int, table: SymbolTable, received_ns: int) -> tuple[int, Tick | None]:
    tid = bytes(data[off : off + 2])
    (name_len,) = struct.unpack_from("B", data, off + 2)
    off += 3
    name = bytes(data[off : off + name_len]).decode("utf-8")
    if len(name) != name_len or name[:2] not in FIELD_COUNTS:
        raise ValueError("bad topic name")
    off += name_len
    (count,) = struct.unpack_from("B", data, off)
    off += 1
    raw = _values(count, data, off)
    off += 4 * count + 2
    (multiplier,) = _U16.unpack_from(data, off)
    (precision,) = struct.unpack_from("B", data, off + 2)
    off += 3
    for _ in range(3):
        (n,) = struct.unpack_from("B", data, off)
        if off + 1 + n > len(data):
            raise ValueError("truncated string")
        off += 1 + n
    kind = name[:2]
    if multiplier == 0 or count > FIELD_COUNTS[kind]:
        raise ValueError("bad snapshot")
    values = [0] * FIELD_COUNTS[kind]
    for i, x in enumerate(raw):
        if x != NO_VALUE:
            values[i] = x
    topic = Topic(name, kind, 10**precision * multiplier, values)
    state = table.state
    old = state.by_name.get(name)
    if old is not None and state.by_id.get(tid) is not old:
        state.by_id = {k: t for k, t in state.by_id.items() if t is not old}
    state.by_id[tid] = topic
    state.by_name[name] = topic
    return off, None if kind == DEPTH else _tick(table, topic, False, received_ns)


def decode_message(data: bytes, table: SymbolTable, received_ns: int = 0) -> tuple[list[Tick], int]:
    """The ticks in one binary message and the count of malformed packets (0 or 1)."""
    n = len(data)
    if n < 3:
        return [], 1
    if data[2] != DATA_FEED:
        return [], 0  # a response (auth, subscribe, mode, pong, ...): no ticks
    if n < 9:
        return [], 1
    (count,) = _U16.unpack_from(data, 7)
    off = 9
    ticks: list[Tick] = []
    state = table.state
    try:
        for _ in range(count):
            kind = data[off]
            if kind == SNAPSHOT:
                off, tick = _snapshot(data, off + 1, table, received_ns)
            elif kind == UPDATE:
                tid = bytes(data[off + 1 : off + 3])
                (fields,) = struct.unpack_from("B", data, off + 3)
                raw = _values(fields, data, off + 4)
                off += 4 + 4 * fields
                topic = state.by_id.get(tid)
                tick = None
                if topic is not None:
                    if fields > len(topic.values):
                        return ticks, 1
                    vals = topic.values
                    for i, x in enumerate(raw):
                        if x != NO_VALUE:
                            vals[i] = x
                    if topic.kind != DEPTH:
                        tick = _tick(table, topic, False, received_ns)
            elif kind == LITE:
                tid = bytes(data[off + 1 : off + 3])
                (ltp,) = _I32.unpack_from(data, off + 3)
                off += 7
                topic = state.by_id.get(tid)
                tick = None
                if topic is not None and topic.kind != DEPTH:
                    if ltp != NO_VALUE:
                        topic.values[0] = ltp
                    tick = _tick(table, topic, True, received_ns)
            else:
                return ticks, 1
            if tick is not None:
                ticks.append(tick)
    except (IndexError, struct.error, ValueError):
        return ticks, 1
    return ticks, 0
