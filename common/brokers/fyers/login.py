"""Fyers headless login (docs/brokers.md § Fyers): the ``vagator`` auth service, then the app's auth code.

1. ``POST {login_url}/vagator/v2/send_login_otp_v2`` ``{fy_id: base64(user_id), app_id: "2"}``
   -> ``request_key``
2. ``POST {login_url}/vagator/v2/verify_otp`` ``{request_key, otp: <TOTP>}`` -> ``request_key``
3. ``POST {login_url}/vagator/v2/verify_pin_v2`` ``{request_key, identity_type: "pin",
   identifier: base64(PIN)}`` -> ``data.access_token`` (a login session, not the API token)
4. ``POST {rest_url}/api/v3/token`` with ``Authorization: Bearer <that session>`` and
   ``{fyers_id, app_id (without "-100"), redirect_uri, appType: "100", response_type: "code",
   ...}`` -> HTTP 308 whose JSON ``Url`` (or ``Location``) carries ``auth_code``
5. ``POST {rest_url}/api/v3/validate-authcode`` ``{grant_type: "authorization_code",
   appIdHash: sha256(app_id + ":" + secret), code}`` -> ``access_token`` (fyers_apiv3
   ``SessionModel.generate_token``).

The account's ``api_key`` is the app id as the SDK's ``client_id`` takes it ("ABCD1234-100");
``password`` is the 4-digit PIN. API calls then send ``Authorization: <app_id>:<access_token>``.

Errors are typed by ``errors.map_error(..., during_login=True)``: a refused credential is
:class:`LoginFailed`; the network or a 5xx is :class:`BrokerUnavailable`; a 429 / -429 is
:class:`RateLimited` (the caller retries both within its deadline). No secret or token is ever
logged or put into an exception.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC
from typing import Any

import requests

from common import totp
from common.brokers.base import session_or_new
from common.brokers.fyers.errors import map_error
from common.brokers.loginflow import answer, call, expiry_at, query_value, required, totp_now
from common.errors import LoginFailed
from common.settings import Account

__all__ = ["VAGATOR", "app_id_hash", "auth_code_from", "login", "split_app_id", "token_expiry_ms"]

VAGATOR = "/vagator/v2"
TOKEN_PATH = "/api/v3/token"
VALIDATE_PATH = "/api/v3/validate-authcode"
DEFAULT_REDIRECT_URI = "https://127.0.0.1/"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def split_app_id(api_key: str) -> tuple[str, str]:
    """("ABCD1234", "100") from "ABCD1234-100"; the app type defaults to "100" (a user app)."""
    app_id, _, app_type = api_key.partition("-")
    return app_id, app_type or "100"


def app_id_hash(api_key: str, api_secret: str) -> str:
    """``sha256(app_id + ":" + secret)`` hex, with the app id as the SDK's client_id has it."""
    return hashlib.sha256(f"{api_key}:{api_secret}".encode()).hexdigest()


def auth_code_from(url: str) -> str | None:
    return query_value(url, "auth_code")


def token_expiry_ms(issued_at_ms: int) -> int:
    """Fyers access tokens are valid for the trading day; their JWT ``exp`` is the next
    00:00 UTC (05:30 IST)."""
    return expiry_at(issued_at_ms, UTC, 0)


def _ok(status: int, body: Any) -> bool:
    return status < 400 and isinstance(body, dict) and str(body.get("s", "ok")).lower() != "error"


def _post(session: requests.Session, url: str, step: str, body: dict[str, Any],
          headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One login step; its JSON answer, or the error ``map_error`` makes of it."""
    resp = call(session, "POST", url, f"fyers login: {step}", json=body, headers=headers, allow_redirects=False)
    data: dict[str, Any] = answer(resp, f"fyers login: {step}", _ok, map_error)
    if resp.status_code in (301, 302, 303, 307, 308) and "Location" in resp.headers and "Url" not in data:
        data = {**data, "Url": resp.headers["Location"]}
    return data


def login(
    account: Account,
    session: requests.Session | None = None,
    *,
    totp_code: Any = totp.code,
) -> dict[str, Any]:
    """Log ``account`` in; returns ``access_token`` (the bare JWT), ``feed_token`` (the same:
    the data socket reads its key out of it), ``refresh_token`` and ``user_id``."""
    auth = account.login_url.rstrip("/") + VAGATOR
    api = account.rest_url.rstrip("/")
    with session_or_new(session) as s:
        data = _post(s, f"{auth}/send_login_otp_v2", "user id",
                     {"fy_id": _b64(account.user_id), "app_id": "2"})  # fmt: skip
        request_key = required(data, "request_key", "fyers login: user id")
        code = totp_now(account, totp_code, "fyers login")
        data = _post(s, f"{auth}/verify_otp", "totp", {"request_key": request_key, "otp": code})
        request_key = required(data, "request_key", "fyers login: totp")
        data = _post(s, f"{auth}/verify_pin_v2", "pin", {
            "request_key": request_key, "identity_type": "pin", "identifier": _b64(account.password.get()),
        })  # fmt: skip
        inner = data.get("data")
        if not isinstance(inner, dict):
            inner = {}
        session_token = required(inner, "access_token", "fyers login: pin")
        app_id, app_type = split_app_id(account.api_key)
        data = _post(s, f"{api}{TOKEN_PATH}", "auth code", {
            "fyers_id": account.user_id, "app_id": app_id,
            "redirect_uri": str(account.extra.get("redirect_uri", DEFAULT_REDIRECT_URI)),
            "appType": app_type, "code_challenge": "", "state": "None", "scope": "", "nonce": "",
            "response_type": "code", "create_cookie": True,
        }, headers={"Authorization": f"Bearer {session_token}"})  # fmt: skip
        auth_code = auth_code_from(str(data.get("Url") or ""))
        if not auth_code:
            raise LoginFailed("fyers login: auth code: no auth_code in the redirect")
        data = _post(s, f"{api}{VALIDATE_PATH}", "session", {
            "grant_type": "authorization_code",
            "appIdHash": app_id_hash(account.api_key, account.api_secret.get()),
            "code": auth_code,
        })  # fmt: skip
    access_token = required(data, "access_token", "fyers login: session")
    return {
        "access_token": access_token,
        "feed_token": access_token,
        "refresh_token": str(data.get("refresh_token") or ""),
        "user_id": account.user_id,
    }
