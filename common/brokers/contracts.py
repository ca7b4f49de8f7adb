"""The contracts a broker package fulfils, and the record that names its parts.

A broker is a package ``common/brokers/<broker>/`` whose ``__init__.py`` exports
``BROKER = Broker(...)`` (:class:`Broker`). Generic code reaches a broker only through that
record (:func:`common.brokers.broker`), never by module name, and each part is typed here:

- ``spec``: :class:`common.brokers.BrokerSpec` (hosts, caps, limiter scope);
- ``rest``: the REST adapter's class, ``rest(account, token_getter)`` a
  :class:`common.brokers.base.BrokerAdapter`;
- ``login``: :class:`LoginFlow` (the headless login and the token's lifetime);
- ``feed``: :class:`FeedDialect` (the market-data socket's wire, for ``feed/session.py``);
- ``updates``: :class:`OrderUpdates` (order updates in, :class:`OrderUpdate` out);
- ``instruments``: :class:`InstrumentSource` (the instrument list);
- ``errors``: :class:`ErrorMap` (a broker's answer to the error tree, at one point).

The parts are modules (a dialect is a set of pure functions and constants), so the
contracts are Protocols that a module satisfies structurally: mypy checks every ``BROKER``
against them, and ``tests/unit/test_broker_contracts.py`` checks every registered broker at
run time. Hooks that only some wires need are part of every contract all the same: a
module that has nothing to do names the shared default below (``login_messages =
no_login_messages``), so a reader sees the choice and the feed calls without probing.
``common/brokers/_template/`` is a broker with every part stubbed: the start of a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # only for annotations: base imports settings, which imports common.brokers
    import requests

    from common.brokers import BrokerSpec
    from common.brokers.base import BrokerAdapter, TokenGetter
    from common.errors import BrokerError
    from common.models import Instrument, OrderUpdate, Tick
    from common.settings import Account

__all__ = [
    "AdapterFactory",
    "Broker",
    "ErrorMap",
    "FeedDialect",
    "InstrumentSource",
    "LoginFlow",
    "OrderUpdates",
    "no_binary_refusal",
    "no_login_messages",
    "no_order_socket",
    "no_order_socket_messages",
    "no_replies",
    "no_socket_error",
]

# A message to the broker: text goes as a text frame, bytes as a binary frame.
Message = str | bytes
# A dialect's subscription key (its own type: a token, a (segment, token) pair, a topic...):
# generic code only hashes and sorts it, so the contract does not name it.
Key = Any
ByMode = Mapping[str, Sequence[Key]]

AdapterFactory = Callable[["Account", "TokenGetter"], "BrokerAdapter"]


@runtime_checkable
class FeedDialect(Protocol):
    """The market-data socket's wire (``common/brokers/<broker>/feed.py``). Pure: no socket here;
    ``feed/session.py`` moves the bytes. Keys are the dialect's own (see ``key_of``)."""

    # Read-only members (properties), so that a module constant of a narrower type fits.
    @property
    def MAX_PER_SOCKET(self) -> int: ...  # instruments one socket may carry
    @property
    def MAX_SOCKETS(self) -> int: ...  # sockets one account may open
    @property
    def WATCHDOG_S(self) -> float: ...  # silence after which the socket counts as dead
    @property
    def PING_INTERVAL_S(self) -> float | None: ...  # None: the client never pings
    @property
    def PING_MESSAGE(self) -> Message: ...
    @property
    def PING_AS_FRAME(self) -> bool: ...  # pings as WebSocket ping frames (their pongs prove life)
    @property
    def TICKER_CARRIES_ORDER_UPDATES(self) -> bool: ...  # so reconcile after a reconnect

    def handshake(self, ws_url: str, api_key: str, user_id: str, access_token: str,
                  feed_token: str) -> tuple[str, list[str]]:
        """(URL, extra headers) of the WebSocket handshake."""
        ...

    def login_messages(self, api_key: str, user_id: str, access_token: str,
                       feed_token: str) -> Sequence[Message]:
        """Sent after every handshake, before any subscription (a session opened in-band)."""
        ...

    def key_of(self, instrument: Instrument) -> Key:
        """The subscription key of an instrument of the master."""
        ...

    def symbol_table(self, symbols: Mapping[Key, tuple[str, str]]) -> Any:
        """The decoder's table for key → (exchange, symbol)."""
        ...

    def update_table(self, table: Any, symbols: Mapping[Key, tuple[str, str]],
                     modes: Mapping[Key, str]) -> Any:
        """The table for a new wanted set; a wire that sends deltas carries its state over."""
        ...

    def subscribe_messages(self, by_mode: ByMode) -> Sequence[Message]: ...

    def unsubscribe_messages(self, by_mode: ByMode) -> Sequence[Message]: ...

    def change_mode_messages(self, old_by_mode: ByMode, by_mode: ByMode) -> Sequence[Message]: ...

    def decode(self, frame: Any, table: Any, received_ns: int) -> tuple[list[Tick], int]:
        """(ticks, malformed count) of one frame (bytes, or a text wire's parsed message)."""
        ...

    def classify_text(self, message: str) -> tuple[str, Any]:
        """(kind, payload) of a text frame: ``"ticks"``, ``"order"``, ``"refused"``, ``"error"``,
        or anything else (ignored)."""
        ...

    def reply_to(self, frame: bytes, table: Any) -> Sequence[Message]:
        """What the client must answer to a binary frame (acknowledgements)."""
        ...

    def binary_refusal(self, frame: bytes) -> str | None:
        """Why the server refused the session, when a binary frame says so; else None."""
        ...


@runtime_checkable
class OrderUpdates(Protocol):
    """Order updates (``common/brokers/<broker>/updates.py``): pure, a broker's message in, an
    :class:`OrderUpdate` out. The push paths are flags; the order socket's hooks are defaults
    (:func:`no_order_socket` and friends) where the broker has none."""

    @property
    def HAS_POSTBACK(self) -> bool: ...  # signed postbacks: the receiver accepts them
    @property
    def ORDER_SOCKET(self) -> bool: ...  # a socket of its own (``feed/order_socket.py``)

    def parse_message(self, account: str, payload: dict[str, Any], source: str) -> OrderUpdate | None:
        """An update, or None when the payload is none (a greeting, an error, an unknown status)."""
        ...

    def order_socket_headers(self, jwt: str, api_key: str = "") -> list[str]: ...

    def order_socket_messages(self) -> list[str]:
        """Sent after every connect of the order socket."""
        ...

    def socket_error(self, payload: dict[str, Any]) -> str | None:
        """The error text of an order-socket message that reports a failure, else None."""
        ...


@runtime_checkable
class LoginFlow(Protocol):
    """The headless login (``common/brokers/<broker>/login.py``)."""

    def login(self, account: Account, session: requests.Session | None = None) -> dict[str, Any]:
        """Log in once: ``access_token`` and ``user_id``, and ``feed_token``/``refresh_token``
        where the broker has them. Raises LoginFailed (refused: not retried),
        BrokerUnavailable or RateLimited (retried by :func:`common.tokens.login_and_store`)."""
        ...

    def token_expiry_ms(self, issued_at_ms: int) -> int:
        """When a token issued at ``issued_at_ms`` dies (epoch ms)."""
        ...


@runtime_checkable
class InstrumentSource(Protocol):
    """The instrument list (``common/brokers/<broker>/instruments.py``)."""

    def fetch(self, account: Account, access_token: str | None,
              session: requests.Session | None = None) -> list[Instrument]:
        """Download and parse the broker's list; TokenExpired when the host refuses the token."""
        ...


@runtime_checkable
class ErrorMap(Protocol):
    """A broker's answer → the error tree (``common/brokers/<broker>/errors.py``)."""

    def map_error(self, http_status: int, body: Any, text: str = "") -> BrokerError: ...


@dataclass(frozen=True)
class Broker:
    """One broker's parts, named once (its package's ``BROKER``)."""

    spec: BrokerSpec
    rest: AdapterFactory
    login: LoginFlow
    feed: FeedDialect
    updates: OrderUpdates
    instruments: InstrumentSource
    errors: ErrorMap

    @property
    def name(self) -> str:
        return self.spec.name


# --- the defaults of the optional hooks (a module names the one it uses) ------------------------


def no_login_messages(api_key: str, user_id: str, access_token: str, feed_token: str) -> list[str]:
    """The handshake alone opens the session."""
    return []


def no_replies(frame: bytes, table: Any) -> list[bytes]:
    """The server wants no answers to its frames."""
    return []


def no_binary_refusal(frame: bytes) -> str | None:
    """The wire refuses a session only at the handshake (or in text)."""
    return None


def no_order_socket(jwt: str, api_key: str = "") -> list[str]:
    """No order socket (``ORDER_SOCKET = False``): never connected, so no headers."""
    return []


def no_order_socket_messages() -> list[str]:
    """The order socket pushes without being asked."""
    return []


def no_socket_error(payload: dict[str, Any]) -> str | None:
    """The broker reports no failures in order-socket messages."""
    return None
