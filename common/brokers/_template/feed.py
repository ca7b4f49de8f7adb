"""The market-data socket's wire (:class:`common.brokers.contracts.FeedDialect`): handshake,
subscription messages, limits, heartbeat, and the decoder (a pure ``codec.py`` beside this).

``feed/session.py`` moves the bytes: it connects with :func:`handshake`, sends
:func:`login_messages`, then the subscription messages, and hands every frame to
:func:`decode` (binary) or :func:`classify_text` (text). Each constant cites docs/brokers.md.
The hooks below that a wire does not need keep the contract's defaults.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from common.brokers.contracts import no_binary_refusal, no_login_messages, no_replies
from common.models import Instrument, Tick

MAX_PER_SOCKET = 1000  # instruments a socket may carry
MAX_SOCKETS = 3  # sockets an account may open
WATCHDOG_S = 7.0  # silence (no frame, no pong) after which the socket is dead
PING_INTERVAL_S: float | None = 5.0  # None: the server heartbeats and the client sends nothing
PING_MESSAGE = "ping"
PING_AS_FRAME = False  # True: pings as WebSocket ping frames, whose pongs prove the socket alive
TICKER_CARRIES_ORDER_UPDATES = False  # True: reconcile after every reconnect

Key = str  # the broker's subscription key of an instrument

login_messages = no_login_messages  # a session opened by a message after the handshake
reply_to = no_replies  # acknowledgements the server wants
binary_refusal = no_binary_refusal  # a session refused in a binary frame


def handshake(ws_url: str, api_key: str, user_id: str, access_token: str, feed_token: str) -> tuple[str, list[str]]:
    """(URL, extra headers) of the WebSocket handshake."""
    raise NotImplementedError


def key_of(instrument: Instrument) -> Key:
    raise NotImplementedError


def symbol_table(symbols: Mapping[Key, tuple[str, str]]) -> dict[Key, Any]:
    """The decoder's table: key -> what a tick needs (exchange, symbol, price divisor)."""
    raise NotImplementedError


def update_table(table: Any, symbols: Mapping[Key, tuple[str, str]], modes: Mapping[Key, str]) -> dict[Key, Any]:
    """The table for a new wanted set: a wire of whole packets builds a new one; a wire of deltas
    carries its state over from ``table``."""
    return symbol_table(symbols)


def subscribe_messages(by_mode: Mapping[str, Iterable[Key]]) -> list[str]:
    """Subscribe ``by_mode`` (mode -> keys; modes ``ltp``, ``quote``, ``full``)."""
    raise NotImplementedError


def unsubscribe_messages(by_mode: Mapping[str, Iterable[Key]]) -> list[str]:
    raise NotImplementedError


def change_mode_messages(old_by_mode: Mapping[str, Iterable[Key]], by_mode: Mapping[str, Iterable[Key]]) -> list[str]:
    raise NotImplementedError


def decode(frame: bytes, table: Any, received_ns: int) -> tuple[list[Tick], int]:
    """(ticks, malformed packets) of one frame; never raises on a bad frame."""
    raise NotImplementedError


def classify_text(message: str) -> tuple[str, Any]:
    """("ticks" | "order" | "refused" | "error" | anything else, payload) of a text frame."""
    raise NotImplementedError
