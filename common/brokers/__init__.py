"""Broker adapters. Every broker difference lives under ``common/brokers/<broker>/``.

Each broker package has the same modules (``spec``, ``rest``, ``login``, ``codec``,
``errors``, ``translate``); ``spec.SPEC`` holds the defaults the settings need
(real hosts, caps, token expiry). ``spec_for(name)`` is the registry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

BROKER_NAMES = ("kite", "angel")
BROKER_NAMES += ("fyers",)
BROKER_NAMES += ("shoonya",)


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


def spec_for(broker: str) -> BrokerSpec:
    if broker not in BROKER_NAMES:
        raise KeyError(broker)
    return importlib.import_module(f"common.brokers.{broker}.spec").SPEC  # type: ignore[no-any-return]


def broker_module(broker: str, module: str):  # type: ignore[no-untyped-def]
    """The module ``common.brokers.<broker>.<module>``: how generic code reaches a broker's
    implementation without naming the broker (module is one of rest, login, codec,
    errors, translate, updates, instruments, feed)."""
    if broker not in BROKER_NAMES:
        raise KeyError(broker)
    return importlib.import_module(f"common.brokers.{broker}.{module}")
