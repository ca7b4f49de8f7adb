"""Kite headless login (docs/brokers.md § Zerodha, Login): password, TOTP, request_token, session.

1. ``POST {login_url}/api/login`` (user_id, password) -> ``data.request_id``
2. ``POST {login_url}/api/twofa`` (user_id, request_id, twofa_value, twofa_type=totp) -> cookies
3. ``GET {login_url}/connect/login?api_key=..&v=3``, following redirects by hand until a
   ``Location`` carries ``request_token`` (the last hop goes to the app's redirect URL,
   which may be a host we cannot reach, so it is read, never followed)
4. ``POST {rest_url}/session/token`` (api_key, request_token, checksum) -> access_token

Errors are typed by ``errors.map_error(..., during_login=True)``: a refused credential is
:class:`LoginFailed` (retrying cannot help); a network failure or a 5xx is :class:`BrokerUnavailable`
and a 429 :class:`RateLimited` (the caller retries the whole flow within its deadline). No secret
or token is ever logged or put into an exception.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urljoin

import requests

from common import totp
from common.brokers.base import session_or_new
from common.brokers.kite.errors import map_error
from common.brokers.loginflow import IST, answer, call, expiry_at, query_value, required, totp_now
from common.errors import LoginFailed
from common.settings import Account

__all__ = ["checksum", "login", "request_token_from", "token_expiry_ms"]

MAX_REDIRECTS = 10
_HEADERS = {"X-Kite-Version": "3", "User-Agent": "brokergate"}


def checksum(api_key: str, request_token: str, api_secret: str) -> str:
    """``sha256(api_key + request_token + api_secret)`` hex, as /session/token wants it."""
    return hashlib.sha256(f"{api_key}{request_token}{api_secret}".encode()).hexdigest()


def token_expiry_ms(issued_at_ms: int) -> int:
    """Kite tokens die at the next 06:00 IST (the daily regulatory flush)."""
    return expiry_at(issued_at_ms, IST, 6)


def request_token_from(location: str) -> str | None:
    """The ``request_token`` in a redirect target, if it carries one."""
    return query_value(location, "request_token")


def _call(session: requests.Session, method: str, url: str, step: str, **kw: Any) -> requests.Response:
    return call(session, method, url, f"kite login: {step}", allow_redirects=False, **kw)


def _ok(status: int, body: Any) -> bool:
    return status < 400 and isinstance(body, dict) and body.get("status") == "success"


def _json(resp: requests.Response, step: str) -> dict[str, Any]:
    """The ``data`` of a success answer; the error ``map_error`` makes of any other."""
    data = answer(resp, f"kite login: {step}", _ok, map_error).get("data")
    return data if isinstance(data, dict) else {}


def login(
    account: Account,
    session: requests.Session | None = None,
    *,
    totp_code: Any = totp.code,
) -> dict[str, Any]:
    """Log ``account`` in and return the token fields: ``access_token``, ``feed_token``
    (Kite's ticker takes the access token), ``user_id``, ``public_token``, ``login_time``."""
    base = account.login_url.rstrip("/")
    with session_or_new(session) as s:
        s.headers.update(_HEADERS)
        # 1. password
        data = _json(_call(s, "POST", f"{base}/api/login", "password",
                           data={"user_id": account.user_id, "password": account.password.get()}), "password")  # fmt: skip
        request_id = required(data, "request_id", "kite login: password")
        # 2. TOTP
        code = totp_now(account, totp_code, "kite login")
        _json(_call(s, "POST", f"{base}/api/twofa", "totp", data={
            "user_id": account.user_id, "request_id": request_id, "twofa_value": code, "twofa_type": "totp",
        }), "totp")  # fmt: skip
        # 3. the connect redirect chain, up to the Location that carries the request_token
        url = f"{base}/connect/login?api_key={account.api_key}&v=3"
        request_token = None
        for _ in range(MAX_REDIRECTS):
            resp = _call(s, "GET", url, "connect")
            location = resp.headers.get("Location")
            if resp.status_code not in (301, 302, 303, 307, 308) or not location:
                # A page instead of a redirect: the session was not accepted (or a bad api_key).
                if resp.status_code >= 500 or resp.headers.get("Content-Type", "").startswith("application/json"):
                    _json(resp, "connect")
                raise LoginFailed(
                    f"kite login: connect: HTTP {resp.status_code} without a redirect to the app"
                )
            request_token = request_token_from(location)
            if request_token:
                break
            url = urljoin(url, location)
        if not request_token:
            raise LoginFailed("kite login: connect: no request_token after the redirects")
        # 4. the session
        api_secret = account.api_secret.get()
        data = _json(_call(s, "POST", f"{account.rest_url.rstrip('/')}/session/token", "session", data={
            "api_key": account.api_key, "request_token": request_token,
            "checksum": checksum(account.api_key, request_token, api_secret),
        }), "session")  # fmt: skip
    access_token = required(data, "access_token", "kite login: session")
    return {
        "access_token": access_token,
        "feed_token": access_token,  # KiteTicker authenticates with the access token itself
        "user_id": str(data.get("user_id") or account.user_id),
        "public_token": str(data.get("public_token") or ""),
        "login_time": str(data.get("login_time") or ""),
    }
