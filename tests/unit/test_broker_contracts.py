"""Every registered broker fulfils every contract of common/brokers/contracts.py.

Structurally (each part of its ``BROKER`` record is an instance of its Protocol: every member is
there, hooks included) and by behaviour where that is cheap: the pure parts are called on tiny
inputs (an empty subscription, an empty frame, an empty message) and must answer with the
contract's types without touching the network. The template package is held to the same
structural check, so a copy of it starts out complete. mypy (``make test``) checks signatures.
"""

from __future__ import annotations

import importlib

import pytest

from common.brokers import BROKER_NAMES, BrokerSpec, broker
from common.brokers.base import BrokerAdapter
from common.brokers.contracts import Broker, ErrorMap, FeedDialect, InstrumentSource, LoginFlow, OrderUpdates
from common.errors import BrokerError
from common.models import Instrument
from common.settings import Account, Secret

TEMPLATE = "_template"
# A token every broker's key_of can read: digits (an int for some), long enough for a
# segment-prefixed one (ten digits of exchange and segment, then the exchange's token).
INSTRUMENT = Instrument(exchange="NSE", symbol="INFY", token="10100000001594", broker_symbol="NSE:INFY-EQ")


def record(name: str) -> Broker:
    if name == TEMPLATE:
        return importlib.import_module(f"common.brokers.{TEMPLATE}").BROKER  # type: ignore[no-any-return]
    return broker(name)


@pytest.mark.parametrize("name", [*BROKER_NAMES, TEMPLATE])
def test_every_part_satisfies_its_protocol(name: str) -> None:
    b = record(name)
    assert isinstance(b, Broker)
    assert isinstance(b.spec, BrokerSpec)
    assert isinstance(b.feed, FeedDialect)
    assert isinstance(b.updates, OrderUpdates)
    assert isinstance(b.login, LoginFlow)
    assert isinstance(b.instruments, InstrumentSource)
    assert isinstance(b.errors, ErrorMap)
    assert callable(b.rest)


def test_the_template_is_not_registered() -> None:
    assert TEMPLATE not in BROKER_NAMES
    with pytest.raises(KeyError):
        broker(TEMPLATE)


@pytest.mark.parametrize("name", BROKER_NAMES)
def test_the_record_is_its_own_packages(name: str) -> None:
    b = broker(name)
    assert b.name == name
    for part in ("feed", "updates", "login", "instruments", "errors"):
        assert getattr(b, part).__name__ == f"common.brokers.{name}.{part}"


@pytest.mark.parametrize("name", BROKER_NAMES)
def test_the_adapter_is_a_broker_adapter(name: str) -> None:
    b = broker(name)
    spec = b.spec
    account = Account(name="contract", broker=name, user_id="U1", api_key="k", rest_url=spec.rest_url,
                      login_url=spec.login_url, ws_url=spec.ws_url, order_ws_url=spec.order_ws_url, caps={},
                      password=Secret("p"), totp_secret=Secret(""), api_secret=Secret(""))
    adapter = b.rest(account, lambda: None)
    assert isinstance(adapter, BrokerAdapter)
    assert adapter.account is account


@pytest.mark.parametrize("name", BROKER_NAMES)
def test_the_feed_dialect_on_tiny_inputs(name: str) -> None:
    feed = broker(name).feed
    assert feed.MAX_PER_SOCKET > 0 and feed.MAX_SOCKETS > 0 and feed.WATCHDOG_S > 0
    assert feed.PING_INTERVAL_S is None or 0 < feed.PING_INTERVAL_S < feed.WATCHDOG_S
    assert isinstance(feed.PING_MESSAGE, str | bytes)
    url, headers = feed.handshake("wss://feed.test", "key", "U1", "token", "feed")
    assert url.startswith("wss://feed.test") and all(isinstance(h, str) for h in headers)
    assert all(isinstance(m, str | bytes) for m in feed.login_messages("key", "U1", "token", "feed"))

    key = feed.key_of(INSTRUMENT)
    hash(key)
    table = feed.update_table(feed.symbol_table({}), {key: ("NSE", "INFY")}, {key: "quote"})
    for messages in (feed.subscribe_messages({"quote": [key]}), feed.unsubscribe_messages({"quote": [key]}),
                     feed.change_mode_messages({"quote": [key]}, {"full": [key]})):
        assert all(isinstance(m, str | bytes) for m in messages)
    assert feed.subscribe_messages({"quote": [key]})
    assert list(feed.subscribe_messages({})) == [] and list(feed.unsubscribe_messages({})) == []

    ticks, malformed = feed.decode(b"", table, 0)
    assert ticks == [] and malformed >= 0
    kind, _payload = feed.classify_text("{}")
    assert isinstance(kind, str)
    assert list(feed.reply_to(b"", table)) == []
    assert feed.binary_refusal(b"") is None


@pytest.mark.parametrize("name", BROKER_NAMES)
def test_order_updates_on_tiny_inputs(name: str) -> None:
    updates = broker(name).updates
    assert updates.parse_message("acct", {}, "socket") is None
    assert updates.socket_error({}) is None
    assert all(isinstance(m, str) for m in updates.order_socket_messages())
    headers = updates.order_socket_headers("jwt", api_key="key")
    assert all(isinstance(h, str) for h in headers)
    # A broker with a socket of its own must say how to authenticate on it.
    assert bool(headers) == updates.ORDER_SOCKET


@pytest.mark.parametrize("name", BROKER_NAMES)
def test_errors_and_login_on_tiny_inputs(name: str) -> None:
    b = broker(name)
    assert isinstance(b.errors.map_error(500, None, ""), BrokerError)
    issued_ms = 1_750_000_000_000
    assert b.login.token_expiry_ms(issued_ms) > issued_ms
