"""Angel One SmartAPI login (docs/brokers.md § Angel One, Login).

``POST {rest_url}/rest/auth/angelbroking/user/v1/loginByPassword`` with JSON
``{clientcode, password (the MPIN), totp}`` and the SmartAPI headers -> ``jwtToken``,
``refreshToken``, ``feedToken``. Sessions end at midnight IST.

Errors are typed by ``errors.map_error(..., during_login=True)``: a refused credential is
:class:`LoginFailed`; the network, a 5xx and Angel's "try after sometime" codes are
:class:`BrokerUnavailable`, and the rate-limit 403 is :class:`RateLimited`; the caller retries
both within its deadline.
"""

from __future__ import annotations

from typing import Any

import requests

from common import totp
from common.brokers.angel.errors import map_error
from common.brokers.base import session_or_new
from common.brokers.loginflow import IST, answer, call, expiry_at, totp_now
from common.errors import LoginFailed
from common.settings import Account

__all__ = ["LOGIN_PATH", "headers", "login", "token_expiry_ms"]

LOGIN_PATH = "/rest/auth/angelbroking/user/v1/loginByPassword"


def headers(account: Account, jwt: str | None = None) -> dict[str, str]:
    """The headers SmartAPI wants on every call (the IP/MAC values are informational)."""
    h = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-UserType": "USER",
        "X-SourceID": "WEB",
        "X-ClientLocalIP": str(account.extra.get("client_local_ip", "127.0.0.1")),
        "X-ClientPublicIP": str(account.extra.get("client_public_ip", "127.0.0.1")),
        "X-MACAddress": str(account.extra.get("mac_address", "00:00:00:00:00:00")),
        "X-PrivateKey": account.api_key,
    }
    if jwt:
        h["Authorization"] = f"Bearer {jwt}"
    return h


def token_expiry_ms(issued_at_ms: int) -> int:
    """Angel sessions end at the next midnight IST."""
    return expiry_at(issued_at_ms, IST, 0)


def _ok(status: int, body: Any) -> bool:
    return status < 400 and isinstance(body, dict) and (body.get("status") is True or body.get("success") is True)


def _strip_bearer(token: str) -> str:
    return token[7:] if token.lower().startswith("bearer ") else token


def login(
    account: Account,
    session: requests.Session | None = None,
    *,
    totp_code: Any = totp.code,
) -> dict[str, Any]:
    """Log ``account`` in; returns ``access_token`` (the JWT, without ``Bearer``),
    ``feed_token``, ``refresh_token`` and ``user_id``."""
    code = totp_now(account, totp_code, "angel login")
    with session_or_new(session) as s:
        resp = call(
            s, "POST", f"{account.rest_url.rstrip('/')}{LOGIN_PATH}", "angel login",
            json={"clientcode": account.user_id, "password": account.password.get(), "totp": code},
            headers=headers(account),
        )
    body = answer(resp, "angel login", _ok, map_error)
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    jwt = _strip_bearer(str(data.get("jwtToken") or ""))
    if not jwt:
        raise LoginFailed("angel login: no jwtToken in the answer")
    return {
        "access_token": jwt,
        "feed_token": str(data.get("feedToken") or ""),
        "refresh_token": _strip_bearer(str(data.get("refreshToken") or "")),
        "user_id": account.user_id,
    }
