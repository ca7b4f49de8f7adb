"""Order updates, pure: a broker message (postback, socket message, order-book row) in, an
:class:`OrderUpdate` out. An unknown status is ignored (None), never guessed.

Name the push paths the broker has: ``HAS_POSTBACK`` (signed postbacks the receiver can check),
``ORDER_SOCKET`` (a socket of its own: then give its headers, subscription messages and error
test instead of the defaults), or neither (updates on the market-data socket: the dialect's
``TICKER_CARRIES_ORDER_UPDATES``, and ``classify_text`` answers ``"order"``).
"""

from __future__ import annotations

from typing import Any

from common.brokers.contracts import no_order_socket, no_order_socket_messages, no_socket_error
from common.models import OrderUpdate

__all__ = [
    "HAS_POSTBACK", "ORDER_SOCKET", "order_socket_headers", "order_socket_messages", "parse_message", "socket_error",
]  # fmt: skip

HAS_POSTBACK = False
ORDER_SOCKET = False
order_socket_headers = no_order_socket
order_socket_messages = no_order_socket_messages
socket_error = no_socket_error


def parse_message(account: str, payload: dict[str, Any], source: str) -> OrderUpdate | None:
    """The update a message carries, or None (a greeting, an error, another kind of message)."""
    raise NotImplementedError
