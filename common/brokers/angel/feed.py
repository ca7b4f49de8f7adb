"""Angel SmartWebSocketV2 dialect: handshake headers, subscribe messages, limits, ping.

``wss://smartapisocket.angelone.in/smart-stream`` with headers ``Authorization`` (the JWT),
``x-api-key``, ``x-client-code``, ``x-feed-token``. Subscriptions are per mode (1 LTP,
2 Quote, 3 Snap Quote) and exchange type: ``{"correlationID", "action": 1|0, "params":
{"mode", "tokenList": [{"exchangeType", "tokens"}]}}``; a mode change is an unsubscribe in
the old mode and a subscribe in the new one. The client sends the text ``ping`` and the
server answers ``pong``; Angel's SDK pings every 10 s, we ping every 5 s (harmless, and a
stall is then seen in 7 s instead of 20). Limits (SmartAPI WebSocket 2.0 docs): 1,000
token subscriptions a session, 3 connections a client code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from common.brokers.angel import codec
from common.brokers.contracts import no_binary_refusal, no_login_messages, no_replies
from common.models import Instrument

MAX_PER_SOCKET = 1000
MAX_SOCKETS = 3
PING_INTERVAL_S: float | None = 5.0
WATCHDOG_S = 7.0  # a ping's pong (or a tick) must arrive within this
PING_MESSAGE = "ping"
PING_AS_FRAME = False  # a text frame, answered by the text "pong"
TICKER_CARRIES_ORDER_UPDATES = False  # order updates come on a socket of their own
_CHUNK = 500

# Exchange (as in EXCHANGE:SYMBOL) → Angel exchange type
EXCHANGE_TYPES = {"NSE": 1, "NFO": 2, "BSE": 3, "BFO": 4, "MCX": 5, "NCO": 7, "CDS": 13}

Key = tuple[int, str]  # (exchange type, token)


def handshake(ws_url: str, api_key: str, user_id: str, access_token: str, feed_token: str) -> tuple[str, list[str]]:
    return ws_url, [
        f"Authorization: Bearer {access_token.removeprefix('Bearer ')}",
        f"x-api-key: {api_key}",
        f"x-client-code: {user_id}",
        f"x-feed-token: {feed_token}",
    ]


# The handshake's headers carry the credentials; the server wants no answers; a refusal is the handshake's.
login_messages = no_login_messages
reply_to = no_replies
binary_refusal = no_binary_refusal


def key_of(instrument: Instrument) -> Key:
    return (EXCHANGE_TYPES.get(instrument.exchange.upper(), 1), str(instrument.token))


def _messages(action: int, by_mode: Mapping[str, Iterable[Key]]) -> list[str]:
    out: list[str] = []
    for mode, keys in by_mode.items():
        by_type: dict[int, list[str]] = {}
        for et, tok in sorted(keys):
            by_type.setdefault(et, []).append(tok)
        for et, toks in by_type.items():
            for i in range(0, len(toks), _CHUNK):
                out.append(
                    json.dumps({
                        "correlationID": "brokergate",
                        "action": action,
                        "params": {"mode": codec.MODES[mode], "tokenList": [{"exchangeType": et, "tokens": toks[i : i + _CHUNK]}]},
                    })
                )
    return out


def subscribe_messages(by_mode: Mapping[str, Iterable[Key]]) -> list[str]:
    return _messages(1, by_mode)


def unsubscribe_messages(by_mode: Mapping[str, Iterable[Key]]) -> list[str]:
    return _messages(0, by_mode)


def change_mode_messages(old_by_mode: Mapping[str, Iterable[Key]], by_mode: Mapping[str, Iterable[Key]]) -> list[str]:
    return _messages(0, old_by_mode) + _messages(1, by_mode)


symbol_table = codec.symbol_table


def update_table(table: Any, symbols: Mapping[Key, tuple[str, str]], modes: Mapping[Key, str]) -> dict[Any, Any]:
    """A new table for each wanted set: every packet is whole, so nothing carries over."""
    return symbol_table(symbols)


decode = codec.decode_message


def classify_text(message: str) -> tuple[str, Any]:
    """("pong", None) | ("error", data) | ("other", raw)."""
    if message == "pong":
        return "pong", None
    try:
        data = json.loads(message)
    except ValueError:
        return "other", message
    if isinstance(data, dict) and (data.get("errorCode") or data.get("errorMessage")):
        return "error", data
    return "other", data
