"""Broker adapters. Every broker difference lives under ``common/brokers/<broker>/``.

Each broker package has the same modules (``spec``, ``rest``, ``login``, ``feed``,
``updates``, ``instruments``, ``errors``, and its own ``codec`` and ``translate``) and exports
one record, ``BROKER``, that names them (:class:`common.brokers.contracts.Broker`, whose
Protocols say what each part provides). :func:`broker` is the registry: a configured broker
name to its record; ``spec.SPEC`` holds the defaults the settings need (real hosts, caps).
``_template/`` is a new broker's starting point (not registered).
"""

from __future__ import annotations

import importlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:  # the records import the adapters, which import settings, which imports this
    from common.brokers.contracts import Broker

BROKER_NAMES: tuple[str, ...] = ("kite", "angel", "fyers", "shoonya")

# Whose requests a broker counts together against its caps (the limiter's scope):
COUNTED_PER_USER: Final = "user"  # the broker's client id (``user_id``), across all of that user's API keys/apps
COUNTED_PER_APP: Final = "app"  # the API key / app id (``api_key``), across every user logged in through it
CountedPer = Literal["user", "app"]
# The pseudo endpoint class of a budget that every request counts in, whatever its class (a broker
# whose caps span all its endpoints); in an accounts file: ``caps = { all = ["10/s"] }``.
SHARED_BUDGET = "all"

# How a broker takes MARKET and SL-M orders from API clients under the SEBI retail-algo rules in
# force since 1 April 2026 (docs/brokers.md § "The 2026 retail-algo rules"):
# "protected": only with the broker's market-protection field, which its translate always adds;
# "refused": not at all, so brokergate refuses them at the client (InvalidOrder naming order_type)
#   instead of letting the broker count a rejection;
# "plain": as they are (the broker applies its own protection, or asks for nothing);
# "limit": an account's choice where its broker refuses them: brokergate's own protection sends a
#   MARKET as a LIMIT at the last price +/- extra.market_protection_pct (common/marketprotection.py).
MarketOrders = Literal["protected", "refused", "plain", "limit"]
# The account's `extra` key that overrides its broker's policy (see :func:`market_orders`).
MARKET_ORDERS_EXTRA = "market_orders"


@dataclass(frozen=True)
class BrokerSpec:
    """What configuration needs to know about a broker before talking to it."""

    name: str
    rest_url: str
    login_url: str
    ws_url: str
    order_ws_url: str = ""
    # endpoint class -> caps like "10/s"; defaults from docs/brokers.md, overridable per account
    caps: dict[str, list[str]] = field(default_factory=dict)
    secrets: tuple[str, ...] = ("password", "totp_secret", "api_secret")
    # Limiter scope. Two accounts with the same broker and the same identity (user_id when
    # counted per user, api_key when per app) are one counter at the broker, so they share one
    # limiter state; settings refuses them when their caps disagree. Default: per user, the
    # conservative reading when a broker does not say (a user's several keys never add capacity).
    caps_counted_per: CountedPer = COUNTED_PER_USER
    # Caps that EVERY request counts in, whatever its endpoint class (on top of its class's own
    # caps); empty when the broker counts each class separately. Stored in the account's caps
    # under SHARED_BUDGET, so an account can lower them like any class.
    shared_caps: list[str] = field(default_factory=list)
    # The account's `extra` keys this broker reads, with their types (checked when the accounts
    # file is read, so a typo is a start-up error naming the key, not a silently ignored setting).
    extras: dict[str, ExtraType] = field(default_factory=dict)
    # The endpoint class each account-state read (positions, holdings, funds, trades) counts in,
    # where it is not ``portfolio`` (common.brokers.base.PORTFOLIO): a broker that counts its trade
    # book with its order book says so here, so the limiter counts it where the broker does.
    read_classes: dict[str, str] = field(default_factory=dict)

    # MARKET and SL-M orders under the 2026 rules. "refused" by default: a broker whose rules are
    # not known yet must not be sent an order it may count as a rule violation.
    market_orders: MarketOrders = "refused"

    def extra_problem(self, key: str, value: Any) -> str | None:
        """What is wrong with an account's ``extra.<key> = value`` for this broker (a key it does not
        read, or a value not of the key's type), or None when it is fine."""
        known = {**GENERIC_EXTRAS, **self.extras}
        kind = known.get(key)
        if kind is None:
            return f"not a setting of {self.name} (known: {', '.join(sorted(known))})"
        return extra_problem(kind, value)


# The `extra` keys every broker reads (the order path's read timeout, the market-order policy),
# with their types.
ExtraType = Literal["str", "float", "list[str]", "ip", "proxy_url"]
GENERIC_EXTRAS: dict[str, ExtraType] = {"read_timeout_s": "float", MARKET_ORDERS_EXTRA: "str",
                                         "market_protection_pct": "float"}
# The order egress of the 2026 static-IP rule (common/brokers/base.py): place, modify and cancel leave
# from this local address and/or through this proxy; every other request keeps the default route.
GENERIC_EXTRAS["order_source_address"] = "ip"  # an IP of this host to bind the order requests' sockets to
GENERIC_EXTRAS["order_proxy"] = "proxy_url"  # an http:// or https:// proxy for the order requests


def extra_problem(kind: ExtraType, value: Any) -> str | None:
    """What is wrong with ``value`` as an `extra` of type ``kind`` (what it must be and what it was,
    never a proxy's password), or None when it is fine."""
    if kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        return None if ok else f"must be a number >= 0, got {value!r}"
    if kind == "list[str]":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else f"must be list[str], got {value!r}"
    if not isinstance(value, str):
        return f"must be a string, got {value!r}"
    if kind == "ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return f"must be an IP address of this host, like 203.0.113.7 or 2001:db8::7, got {value!r}"
    elif kind == "proxy_url" and not _proxy_url_ok(value):
        return f"must be an http:// or https:// proxy URL like http://proxy.example:3128, got {redact_url(value)!r}"
    return None


def _proxy_url_ok(value: str) -> bool:
    url = urlsplit(value)
    try:
        url.port  # noqa: B018 (reading it validates it: ValueError for a port that is not a number)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.hostname)


def redact_url(url: str) -> str:
    """``url`` with the password of its user part replaced by ``***`` (safe to log or show)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def market_orders(spec: BrokerSpec, extra: Mapping[str, Any]) -> MarketOrders:
    """An account's market-order policy: its broker's (``BrokerSpec.market_orders``) unless its
    ``extra.market_orders`` says otherwise. An account may always refuse them, and where its
    broker's policy is "refused" may send them "limit" (brokergate's own protection) or
    "plain" (the operator's broker accepts them after
    all); nothing else, since no other field is known. ValueError names what is allowed."""
    value = extra.get(MARKET_ORDERS_EXTRA)
    if value is None or value == spec.market_orders:
        return spec.market_orders
    if value == "refused" or (value in ("plain", "limit") and spec.market_orders == "refused"):
        chosen: MarketOrders = value
        return chosen
    allowed = sorted({spec.market_orders, "refused"}
                     | ({"plain", "limit"} if spec.market_orders == "refused" else set()))
    raise ValueError(f"{MARKET_ORDERS_EXTRA} = {value!r} is not possible for {spec.name} "
                     f"(its broker's is {spec.market_orders!r}; allowed: {', '.join(allowed)})")


def broker(name: str) -> Broker:
    """The record of a configured broker (its package's ``BROKER``). Imported on first use, so a
    process loads only the brokers it has accounts of."""
    if name not in BROKER_NAMES:
        raise KeyError(name)
    record: Broker = importlib.import_module(f"common.brokers.{name}").BROKER
    return record


def spec_for(name: str) -> BrokerSpec:
    return broker(name).spec
