"""Kite ticker dialect: handshake, subscribe/mode messages, limits, heartbeat expectations.

``wss://ws.kite.trade?api_key=<key>&access_token=<token>``; JSON text commands
``{"a": "subscribe"|"unsubscribe", "v": [tokens]}`` and ``{"a": "mode", "v": [mode, [tokens]]}``
(subscribe alone gives quote); the server heartbeats with a 1-byte binary message about
every second, so 3 s of silence means a dead or stalled socket. 3,000 instruments a
connection, 3 connections an API key (docs/brokers.md). The socket also carries order updates as
``{"type": "order", "data": {...}}`` text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from common.brokers.contracts import no_binary_refusal, no_login_messages, no_replies
from common.brokers.kite import codec
from common.models import Instrument

MAX_PER_SOCKET = 3000
MAX_SOCKETS = 3
WATCHDOG_S = 3.0  # three missed heartbeats
PING_INTERVAL_S: float | None = None  # the server heartbeats; the client sends nothing
PING_MESSAGE = ""
PING_AS_FRAME = False
# The ticker also carries order updates, so a reconnect may have missed one: reconcile after it.
TICKER_CARRIES_ORDER_UPDATES = True
_CHUNK = 1000  # tokens per command message, to keep each message small

Key = int


def handshake(ws_url: str, api_key: str, user_id: str, access_token: str, feed_token: str) -> tuple[str, list[str]]:
    """(URL, extra headers) of the WebSocket handshake."""
    sep = "&" if "?" in ws_url else "?"
    return f"{ws_url}{sep}{urlencode({'api_key': api_key, 'access_token': access_token})}", []


# The handshake carries the credentials; the server wants no answers; a refusal is the handshake's.
login_messages = no_login_messages
reply_to = no_replies
binary_refusal = no_binary_refusal


def key_of(instrument: Instrument) -> Key:
    """The instrument_token, for every segment: an NFO or BFO contract's token carries its segment in
    the low byte (NFO 2, BFO 5) as an equity's does (NSE 1), so nothing else is needed. Open interest
    comes in full mode only (the 184-byte packet; quote and LTP packets have none)."""
    return int(instrument.token)


def _chunks(tokens: list[Key]) -> Iterable[list[Key]]:
    for i in range(0, len(tokens), _CHUNK):
        yield tokens[i : i + _CHUNK]


def subscribe_messages(by_mode: Mapping[str, Iterable[Key]]) -> list[str]:
    """Subscribe ``by_mode`` (mode → tokens) and set each mode."""
    out: list[str] = []
    for mode, tokens in by_mode.items():
        for chunk in _chunks(sorted(tokens)):
            out.append(json.dumps({"a": "subscribe", "v": chunk}))
            out.append(json.dumps({"a": "mode", "v": [mode, chunk]}))
    return out


def change_mode_messages(old_by_mode: Mapping[str, Iterable[Key]], by_mode: Mapping[str, Iterable[Key]]) -> list[str]:
    """Move already subscribed tokens to another mode (``old_by_mode`` is ignored on Kite)."""
    return [json.dumps({"a": "mode", "v": [m, c]}) for m, t in by_mode.items() for c in _chunks(sorted(t))]


def unsubscribe_messages(by_mode: Mapping[str, Iterable[Key]]) -> list[str]:
    toks = sorted(t for tokens in by_mode.values() for t in tokens)
    return [json.dumps({"a": "unsubscribe", "v": c}) for c in _chunks(toks)]


symbol_table = codec.symbol_table


def update_table(table: Any, symbols: Mapping[Key, tuple[str, str]], modes: Mapping[Key, str]) -> dict[Key, Any]:
    """A new table for each wanted set: every packet is whole, so nothing carries over."""
    return symbol_table(symbols)


decode = codec.decode_frame


def classify_text(message: str) -> tuple[str, Any]:
    """("order", data) | ("error", data) | ("message", data) | ("other", raw)."""
    data = codec.decode_text(message)
    if data is None:
        return "other", message
    kind = data.get("type")
    if kind in ("order", "error", "message"):
        return str(kind), data.get("data")
    return "other", data
