"""Broker logins of the paper broker: the default caps of each dialect and the `User` record
that holds a login's secrets and its live session tokens."""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CAPS: dict[str, dict[str, list[str]]] = {
    "kite": {
        "orders": ["10/s", "400/min", "5000/day"],
        "quote": ["1/s"],
        "orderbook": ["10/s"],
        "login": ["10/s"],
        "other": ["10/s"],
    },
    "angel": {
        "orders": ["10/s", "500/min", "1000/hour"],  # the 2026 rule's 10/s (common/brokers/angel/spec.py)
        "quote": ["10/s", "500/min", "5000/hour"],
        "orderbook": ["1/s"],
        "portfolio": ["1/s"],  # getPosition, getTradeBook, getHolding, getRMS (common/brokers/angel/spec.py)
        "margin": ["10/s"],  # margin/v1/batch (common/brokers/angel/spec.py)
        "login": ["1/s", "1000/hour"],
        "other": ["3/s"],
    },
    # Finvasia documents no caps: the conservative defaults of common/brokers/shoonya/spec.py.
    "shoonya": {
        "orders": ["10/s", "400/min"],
        "quote": ["5/s"],
        "orderbook": ["5/s"],
        "login": ["1/s"],
        "other": ["5/s"],
    },
    # Fyers counts every call of an app against one set of limits (common/brokers/fyers/spec.py).
    "fyers": {
        "orders": ["10/s", "200/min", "100000/day"],
        "quote": ["10/s", "200/min", "100000/day"],
        "orderbook": ["10/s", "200/min", "100000/day"],
        "login": ["1/s"],
        "other": ["10/s", "200/min", "100000/day"],
    },
}

# The dialects the paper broker speaks: one DEFAULT_CAPS entry each.
BROKERS: tuple[str, ...] = tuple(DEFAULT_CAPS)


def bearer_token(header: str) -> str:
    """The token of an ``Authorization`` value, with or without its "Bearer " prefix."""
    value = header.strip()
    return value[7:].strip() if value[:7].lower() == "bearer " else value


def jwt_shaped(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A token shaped as a JWT (header.claims.signature, base64url) with a random signature."""

    parts = [json.dumps(header).encode(), json.dumps(claims, separators=(",", ":")).encode(), secrets.token_bytes(32)]
    return ".".join(base64.urlsafe_b64encode(part).rstrip(b"=").decode() for part in parts)


@dataclass
class User:
    """A broker login. `caps` overrides DEFAULT_CAPS per endpoint class. `registered_ip`: the static
    IP the user registered at the broker (the 2026 rule); when set, its order requests from any other
    client address are refused (paper.gateway), as the brokers do. `registered_algo`: its strategy is
    registered with the exchange, so the 2026 rule of 10 order requests per second does not apply
    (paper.gateway refuses the 11th in a second of any other user); its caps still do.

    Session fields by dialect: `access_token` is Kite's and Fyers' access token and Shoonya's
    session key; `jwt_token` / `refresh_token` are Angel's (`refresh_token` also Fyers');
    `feed_token` is Angel's feed token and Fyers' data-socket key (`hsm_key`).
    """

    broker: str
    user_id: str
    # Secrets and tokens stay out of repr, so they never reach a log line.
    password: str = field(repr=False)
    totp_secret: str = field(repr=False)
    api_key: str = ""
    api_secret: str = field(default="", repr=False)
    caps: dict[str, list[str]] = field(default_factory=dict)
    postback_url: str | None = None
    registered_ip: str | None = None
    registered_algo: bool = False
    access_token: str | None = field(default=None, repr=False)
    request_tokens: dict[str, float] = field(default_factory=dict, repr=False)  # Kite: token -> issued epoch s
    jwt_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    feed_token: str | None = field(default=None, repr=False)
    token_expires_at: float = 0.0  # epoch seconds
    # Tokens invalidated by logout/expiry, so a dialect can answer "expired" rather than "invalid".
    expired_tokens: set[str] = field(default_factory=set, repr=False)

    def effective_caps(self) -> dict[str, list[str]]:
        merged = dict(DEFAULT_CAPS.get(self.broker, {}))
        merged.update(self.caps or {})
        return merged

    def clear_session(self) -> None:
        self.expired_tokens.update(t for t in (self.access_token, self.jwt_token) if t)
        self.access_token = None
        self.jwt_token = self.refresh_token = self.feed_token = None
        self.request_tokens.clear()
        self.token_expires_at = 0.0

    def public_dict(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "user_id": self.user_id,
            "api_key": self.api_key,
            "caps": self.effective_caps(),
            "postback_url": self.postback_url,
            "registered_ip": self.registered_ip,
            "registered_algo": self.registered_algo,
            "logged_in": self.token_expires_at > time.time(),
        }
