"""Fyers HSM data-socket dialect: topics, the binary client messages, limits, ping.

``wss://socket.fyers.in/hsm/v1-5/prod`` takes no credentials in the handshake. Every client
message is binary (fyers_apiv3 ``data_ws.py``): ``>H`` length, ``B`` request type, ``B``
field count, then fields (``B`` id, ``>H`` length, value). After connecting: 1 auth (field 1
the ``hsm_key`` claim of the access token's JWT, 2 ``"P"``, 3 ``1``, 4 the source name), then
12 mode per channel (field 1 a ``>Q`` channel bit mask, field 2 ``70`` full or ``76`` lite);
then 4 subscribe / 5 unsubscribe (field 1 ``>H`` count + ``B``-length-prefixed topic names,
field 2 the channel). The ping is the 3 bytes ``00 01 0b`` (type 11).

Topics: ``sf|<segment>|<exchange token>`` for a symbol, ``if|<segment>|<index name>`` for an
index, ``dp|...`` for its five-level depth; the segment comes from the Fytoken's first four
digits and the exchange token is the Fytoken after its tenth digit, as the SDK derives them
from ``/data/symbol-token`` (whose answer we can compute, so we skip that call). Modes live
on channels: ``ltp`` subscribes on channel 12 in lite mode (snapshot, then ``76`` ltp
packets); ``quote`` and ``full`` on channel 11 in full mode, ``full`` adding the depth topic.
The SDK caps a connection at 5,000 topics; a full-mode instrument takes two.

In-band answers (hooks of feed/session.py): :func:`login_messages` authenticate after each
connect; :func:`reply_to` acknowledges data frames as often as the auth answer asks (type 3,
the last frame's message number, as the SDK does; a server may stop sending to a client
that does not); :func:`binary_refusal` tells a refused ``hsm_key`` (an expired token) from
other answers, so the session waits for a new token instead of reconnecting in a loop.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from common.brokers.fyers import codec
from common.models import Instrument

MAX_TOPICS = 5000
MAX_PER_SOCKET = MAX_TOPICS // 2  # a full-mode instrument is two topics (symbol + depth)
MAX_SOCKETS = 3
PING_INTERVAL_S: float | None = 5.0  # the SDK pings every 10 s; 5 s sees a stall sooner
WATCHDOG_S = 7.0  # a ping's answer (or a tick) must arrive within this
PING_MESSAGE = bytes([0, 1, 11])
PING_AS_FRAME = False  # a binary message of the protocol, answered in kind
TICKER_CARRIES_ORDER_UPDATES = False  # order updates come on the order socket
SOURCE = "brokergate"
_CHUNK = 1500  # topics per subscribe message, as the SDK sends them

AUTH, ACK, SUBSCRIBE, UNSUBSCRIBE, MODE, CUSTOM_MESSAGE = 1, 3, 4, 5, 12, 51
FULL_MODE, LITE_MODE = 70, 76
CHANNELS = {"ltp": 12, "quote": 11, "full": 11}
MODE_OF_CHANNEL = {11: FULL_MODE, 12: LITE_MODE}

# Fytoken exchange+segment digits → HSM segment (fyers_apiv3 map.json ``exch_seg_dict``)
SEGMENTS = {"1010": "nse_cm", "1011": "nse_fo", "1120": "mcx_fo", "1210": "bse_cm", "1012": "cde_fo",
            "1211": "bse_fo", "1212": "bcs_fo", "1020": "nse_com"}
# Index tickers → the exchange's index name the HSM topic carries (map.json ``index_dict``)
INDEX_NAMES = {
    "NSE:NIFTY50-INDEX": "Nifty 50",
    "NSE:NIFTYBANK-INDEX": "Nifty Bank",
    "NSE:FINNIFTY-INDEX": "Nifty Fin Service",
    "NSE:MIDCPNIFTY-INDEX": "NIFTY MID SELECT",
    "NSE:NIFTYNXT50-INDEX": "Nifty Next 50",
    "NSE:INDIAVIX-INDEX": "India VIX",
    "BSE:SENSEX-INDEX": "SENSEX",
    "BSE:BANKEX-INDEX": "BANKEX",
}

Key = tuple[str, str]  # (the symbol or index topic name, the Fytoken)


def handshake(ws_url: str, api_key: str, user_id: str, access_token: str, feed_token: str) -> tuple[str, list[str]]:
    return ws_url, []


def hsm_key(access_token: str) -> str:
    """The ``hsm_key`` claim of the access token (a JWT), or "" when it has none."""
    token = access_token.split(":", 1)[1] if ":" in access_token else access_token
    parts = token.split(".")
    if len(parts) != 3:
        return ""
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return ""
    return str(claims.get("hsm_key") or "") if isinstance(claims, dict) else ""


def _message(req_type: int, fields: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes([fid]) + struct.pack(">H", len(v)) + v for fid, v in fields)
    return struct.pack(">HBB", 2 + len(body), req_type, len(fields)) + body


def auth_message(access_token: str) -> bytes:
    return _message(AUTH, [(1, hsm_key(access_token).encode()), (2, b"P"), (3, b"\x01"), (4, SOURCE.encode())])


def mode_message(channel: int, mode: int) -> bytes:
    return _message(MODE, [(1, struct.pack(">Q", 1 << channel)), (2, bytes([mode]))])


def login_messages(api_key: str, user_id: str, access_token: str, feed_token: str) -> list[bytes]:
    """Sent after every connect, before any subscription: authenticate, then set each channel's mode."""
    return [auth_message(access_token)] + [mode_message(ch, m) for ch, m in sorted(MODE_OF_CHANNEL.items())]


def key_of(instrument: Instrument) -> Key:
    """The HSM topic of an instrument and its Fytoken: ``sf|nse_fo|46945`` for the NFO contract
    of Fytoken ``101126090146945`` (``bse_fo`` for BFO), ``if|nse_cm|Nifty 50`` for an index."""
    fytoken = str(instrument.token)
    segment = SEGMENTS.get(fytoken[:4], "nse_cm")
    if instrument.instrument_type == "INDEX" or instrument.kind == "index":
        ticker = instrument.broker_symbol
        name = INDEX_NAMES.get(ticker) or instrument.name or ticker.split(":")[-1].split("-")[0]
        return f"{codec.INDEX}|{segment}|{name}", fytoken
    return f"{codec.SYMBOL}|{segment}|{fytoken[10:]}", fytoken


def _topics(mode: str, keys: Iterable[Key]) -> list[str]:
    out: list[str] = []
    for topic, _fytoken in sorted(keys):
        out.append(topic)
        if mode == "full" and topic.startswith(codec.SYMBOL + "|"):
            out.append(codec.DEPTH + topic[2:])
    return out


def _scrips_message(req_type: int, topics: list[str], channel: int) -> bytes:
    scrips = struct.pack(">H", len(topics)) + b"".join(bytes([len(t.encode())]) + t.encode() for t in topics)
    return _message(req_type, [(1, scrips), (2, bytes([channel]))])


def _messages(req_type: int, by_mode: Mapping[str, Iterable[Key]]) -> list[bytes]:
    out: list[bytes] = []
    for mode, keys in by_mode.items():
        topics = _topics(mode, keys)
        for i in range(0, len(topics), _CHUNK):
            out.append(_scrips_message(req_type, topics[i : i + _CHUNK], CHANNELS[mode]))
    return out


def subscribe_messages(by_mode: Mapping[str, Iterable[Key]]) -> list[bytes]:
    return _messages(SUBSCRIBE, by_mode)


def unsubscribe_messages(by_mode: Mapping[str, Iterable[Key]]) -> list[bytes]:
    return _messages(UNSUBSCRIBE, by_mode)


def change_mode_messages(old_by_mode: Mapping[str, Iterable[Key]], by_mode: Mapping[str, Iterable[Key]]) -> list[bytes]:
    return _messages(UNSUBSCRIBE, old_by_mode) + _messages(SUBSCRIBE, by_mode)


def symbol_table(symbols: Mapping[Key, tuple[str, str]]) -> codec.SymbolTable:
    return codec.symbol_table({topic: (ex, sym, tok, "quote") for (topic, tok), (ex, sym) in symbols.items()})


def update_table(table: Any, symbols: Mapping[Key, tuple[str, str]], modes: Mapping[Key, str]) -> codec.SymbolTable:
    """The table for a new wanted set: ticks carry the subscribed mode, and the decoder state
    of the socket's connection (topic ids of earlier snapshots) carries over from ``table``."""
    names: dict[str, tuple[str, str, str, str]] = {}
    for key, (ex, sym) in symbols.items():
        mode = modes.get(key, "quote")
        for topic in _topics(mode, [key]):
            names[topic] = (ex, sym, key[1], mode)
    state = table.state if isinstance(table, codec.SymbolTable) else None
    return codec.symbol_table(names, state)


decode = codec.decode_message


def classify_text(message: str) -> tuple[str, Any]:
    """The HSM socket speaks binary only; a text message is nothing we act on."""
    return "other", message


def ack_message(message_number: int) -> bytes:
    return _message(ACK, [(1, struct.pack(">I", message_number))])


def reply_to(frame: bytes, table: Any) -> list[bytes]:
    """What the client must answer to ``frame``: the server's auth answer says after how many
    data frames it wants an acknowledgement (of the last one's message number), as the SDK
    sends them; without one it may stop sending. Counted per connection in the table's state."""
    if len(frame) < 3 or not isinstance(table, codec.SymbolTable):
        return []
    state = table.state
    kind = frame[2]
    if kind == codec.DATA_FEED and state.ack_every > 0 and len(frame) >= 7:
        state.unacked += 1
        if state.unacked >= state.ack_every:
            state.unacked = 0
            return [ack_message(struct.unpack_from(">I", frame, 3)[0])]
    elif kind == AUTH:
        fields = _fields(frame)
        every = fields.get(2, b"")
        state.ack_every = struct.unpack(">I", every)[0] if len(every) == 4 else 0
        state.unacked = 0
    return []


def binary_refusal(frame: bytes) -> str | None:
    """Why the server refused the session, when ``frame`` is a failed auth answer (type 1 whose
    status field is not "K", or a type-51 custom message about the auth request); else None."""
    if len(frame) < 8:
        return None
    if frame[2] == AUTH:
        (n,) = struct.unpack_from(">H", frame, 5)
        return None if frame[7 : 7 + n] == b"K" else "authentication failed"
    if frame[2] == CUSTOM_MESSAGE:
        fields = _fields(frame)
        ref_type = fields.get(3, b"")
        if ref_type[:1] == bytes([AUTH]):
            return fields.get(2, b"").decode("utf-8", "replace") or "authentication failed"
    return None


def _fields(frame: bytes) -> dict[int, bytes]:
    """The fields of a response frame (``B`` id, ``>H`` length, value), as far as they go."""
    out: dict[int, bytes] = {}
    off = 4
    for _ in range(frame[3]):
        if off + 3 > len(frame):
            break
        fid = frame[off]
        (n,) = struct.unpack_from(">H", frame, off + 1)
        out[fid] = bytes(frame[off + 3 : off + 3 + n])
        off += 3 + n
    return out
