"""Angel One SmartAPI login (docs/brokers.md § Angel One, Login).

``POST {rest_url}/rest/auth/angelbroking/user/v1/loginByPassword`` with JSON
``{clientcode, password (the MPIN), totp}`` and the SmartAPI headers -> ``jwtToken``,
``refreshToken``, ``feedToken``. Sessions end at midnight IST.

A refused credential (``status: false`` with a credential error code) is
:class:`LoginFailed`; the network, a 5xx and Angel's "something
went wrong" codes are :class:`BrokerUnavailable`, and the rate-limit 403 is
:class:`RateLimited`; the caller retries both within its deadline.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import requests

from common import totp
from common.brokers.base import json_or_none, session_or_new
from common.brokers.loginflow import call, totp_now
from common.errors import BrokerUnavailable, LoginFailed, RateLimited
from common.settings import Account

__all__ = ["LOGIN_PATH", "headers", "login", "token_expiry_ms"]

log = logging.getLogger(__name__)
IST = ZoneInfo("Asia/Kolkata")
LOGIN_PATH = "/rest/auth/angelbroking/user/v1/loginByPassword"
# Angel's own "try again later" answers; every other error code refuses the credentials.
TRANSIENT_CODES = frozenset({"AB1004", "AB2000", "AB1012"})


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
    issued = datetime.fromtimestamp(issued_at_ms / 1000, IST)
    midnight = issued.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return int(midnight.timestamp() * 1000)


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
    if resp.status_code >= 500:
        raise BrokerUnavailable(f"angel login: HTTP {resp.status_code}", http_status=resp.status_code)
    body = json_or_none(resp)
    if not isinstance(body, dict):
        if resp.status_code == 403:
            # Angel's rate-limit answer: a 403 with a plain-text body (loginByPassword is 1/s).
            raise RateLimited("angel login: rate limited", retry_after_s=1.0, http_status=403)
        raise BrokerUnavailable(
            f"angel login: HTTP {resp.status_code} without a JSON body", http_status=resp.status_code
        )
    code_ = str(body.get("errorcode") or body.get("errorCode") or "")
    ok = body.get("status") is True or body.get("success") is True
    if not ok or resp.status_code >= 400:
        message = str(body.get("message") or "refused")
        if code_ in TRANSIENT_CODES:
            raise BrokerUnavailable(
                f"angel login: {code_} {message}", code=code_, http_status=resp.status_code
            )
        raise LoginFailed(
            f"angel login: {code_} {message}".replace("  ", " "), code=code_, http_status=resp.status_code
        )
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
