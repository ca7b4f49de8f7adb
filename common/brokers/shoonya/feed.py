"""Shoonya WebSocket dialect: connect message, touchline/depth subscriptions, limits, heartbeat.

``wss://api.shoonya.com/NorenWSTP/`` carries JSON text both ways (NorenRestApiPy
``start_websocket``): after the handshake the client sends ``{"t": "c", "uid", "actid",
"susertoken", "source": "API"}`` and the server acknowledges with ``{"t": "ck", "s": "OK"}`` (any
other ``s`` refuses the session key: the feed waits for a new token, as after a 403). Then
``{"t": "t", "k": "NSE|3045#NSE|2885"}`` subscribes touchline (``tk`` once, ``tf`` deltas),
``{"t": "d", ...}`` depth (``dk``/``df``), ``"u"``/``"ud"`` unsubscribe them; ``{"t": "o",
"actid"}`` subscribes order updates, which arrive as ``om`` messages on the same socket (so a
reconnect is followed by a reconciliation).

Modes: ltp and quote are touchline, full is depth; a move between ltp and quote sends nothing.
The codec's table keeps each key's mode and last fields (:mod:`.codec`), updated in place.

Heartbeat: as the SDK does (``run_forever(ping_interval=3, ping_payload='{"t":"h"}')``), a
WebSocket ping frame every 3 s carrying ``{"t":"h"}``; the pong (RFC 6455 makes the server
answer) is what proves the socket alive when no tick comes, so 7 s without any frame or pong
means a dead or stalled socket. Limits: Finvasia documents none; we keep 1,000 instruments a
socket and 3 sockets an account, the figures of the other brokers here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from common.brokers.contracts import no_binary_refusal, no_replies
from common.brokers.shoonya import codec
from common.models import Instrument

MAX_PER_SOCKET = 1000
MAX_SOCKETS = 3
PING_INTERVAL_S: float | None = 3.0
WATCHDOG_S = 7.0
PING_MESSAGE = '{"t":"h"}'
PING_AS_FRAME = True  # a WebSocket ping frame, whose pong counts as a sign of life
TICKER_CARRIES_ORDER_UPDATES = True
_CHUNK = 200  # keys per message, to keep each message small

Key = str  # "NSE|3045"

# mode -> (subscribe, unsubscribe) message type
_STREAMS = {"ltp": ("t", "u"), "quote": ("t", "u"), "full": ("d", "ud")}


def handshake(ws_url: str, api_key: str, user_id: str, access_token: str, feed_token: str) -> tuple[str, list[str]]:
    """(URL, extra headers): the session key travels in the connect message, not the handshake."""
    return ws_url, []


def login_messages(api_key: str, user_id: str, access_token: str, feed_token: str) -> list[str]:
    """Sent right after the handshake, before any subscription: connect, then order updates."""
    return [
        json.dumps({"t": "c", "uid": user_id, "actid": user_id, "susertoken": access_token, "source": "API"}),
        json.dumps({"t": "o", "actid": user_id}),
    ]


# A text wire: refusals come as text (classify_text), and the server wants no answers.
reply_to = no_replies
binary_refusal = no_binary_refusal


def key_of(instrument: Instrument) -> Key:
    return codec.key(instrument.exchange, str(instrument.token))


def _messages(index: int, by_mode: Mapping[str, Iterable[Key]]) -> list[str]:
    by_type: dict[str, list[Key]] = {}
    for mode, keys in by_mode.items():
        by_type.setdefault(_STREAMS.get(mode, _STREAMS["quote"])[index], []).extend(keys)
    out: list[str] = []
    for t, keys in by_type.items():
        ks = sorted(set(keys))
        for i in range(0, len(ks), _CHUNK):
            out.append(json.dumps({"t": t, "k": "#".join(ks[i : i + _CHUNK])}))
    return out


def subscribe_messages(by_mode: Mapping[str, Iterable[Key]]) -> list[str]:
    return _messages(0, by_mode)


def unsubscribe_messages(by_mode: Mapping[str, Iterable[Key]]) -> list[str]:
    return _messages(1, by_mode)


def change_mode_messages(old_by_mode: Mapping[str, Iterable[Key]], by_mode: Mapping[str, Iterable[Key]]) -> list[str]:
    """Only keys that move between touchline and depth change streams."""
    old_stream = {k: _STREAMS.get(m, _STREAMS["quote"]) for m, keys in old_by_mode.items() for k in keys}
    leave: dict[str, list[Key]] = {}
    join: dict[str, list[Key]] = {}
    for mode, keys in by_mode.items():
        for k in keys:
            before = old_stream.get(k)
            if before is not None and before == _STREAMS.get(mode, _STREAMS["quote"]):
                continue
            old_mode = next((m for m, ks in old_by_mode.items() if k in ks), "quote")
            leave.setdefault(old_mode, []).append(k)
            join.setdefault(mode, []).append(k)
    return _messages(1, leave) + _messages(0, join)


def symbol_table(symbols: Mapping[Key, tuple[str, str]], modes: Mapping[Key, str] | None = None) -> codec.Table:
    return codec.update_table(None, symbols, modes or dict.fromkeys(symbols, "quote"))


def update_table(table: Any, symbols: Mapping[Key, tuple[str, str]], modes: Mapping[Key, str]) -> codec.Table:
    """The socket's table with new subscriptions, keeping the state the deltas build on."""
    return codec.update_table(table if isinstance(table, codec.Table) else None, symbols, modes)


decode = codec.decode_message


def classify_text(message: str) -> tuple[str, Any]:
    """("ticks", data) | ("order", data) | ("refused", data) | ("error", data) | ("other", data).

    Text that is not a JSON object is handed to the decoder as ticks, which counts it malformed:
    this socket speaks nothing else."""
    try:
        data = json.loads(message)
    except ValueError:
        return "ticks", message
    if not isinstance(data, dict):
        return "ticks", message
    t = data.get("t")
    if t in codec.TICK_TYPES:
        return "ticks", data
    if t == "om":
        return "order", data
    if t == "ck":
        return ("other", data) if str(data.get("s", "")).upper() == "OK" else ("refused", data)
    if data.get("emsg") or str(data.get("s", "OK")).upper() not in ("OK", ""):
        return "error", data
    return "other", data
