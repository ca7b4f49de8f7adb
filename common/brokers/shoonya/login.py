"""Shoonya headless login (docs/brokers.md § Finvasia Shoonya; NorenRestApiPy ``NorenApi.login``).

``POST {login_url}/NorenWClientTP/QuickAuth`` with the body ``jData=<json>``::

    {"source": "API", "apkversion": "1.0.0", "uid", "pwd": sha256(password) hex,
     "factor2": <TOTP now>, "vc": <vendor code>, "appkey": sha256(uid + "|" + API key) hex,
     "imei"}

-> ``{"stat": "Ok", "susertoken", "actid", ...}``. The susertoken is the ``jKey`` of every later
call and the ``susertoken`` of the WebSocket connect message. Account fields: ``api_key`` is the
vendor code, ``api_secret`` the API key (only its hash leaves), ``extra.imei`` the device id.

Errors are typed by ``errors.map_error(..., during_login=True)``: a refused credential is
:class:`LoginFailed`; the network, a 5xx and "Server Timeout" are :class:`BrokerUnavailable` and
the rate-limit answer :class:`RateLimited` (the caller retries those within its deadline). No
secret or token is logged or put in an exception.
"""

from __future__ import annotations

import hashlib
from typing import Any

import requests

from common import totp
from common.brokers.base import session_or_new
from common.brokers.loginflow import IST, answer, call, expiry_at, required, totp_now
from common.brokers.shoonya.errors import map_error
from common.brokers.shoonya.translate import jdata
from common.settings import Account

__all__ = ["APK_VERSION", "LOGIN_PATH", "app_key", "login", "login_values", "sha256_hex", "token_expiry_ms"]

LOGIN_PATH = "/NorenWClientTP/QuickAuth"
APK_VERSION = "1.0.0"
DEFAULT_IMEI = "abc1234"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def app_key(user_id: str, api_key: str) -> str:
    """Noren's ``appkey``: sha256(uid + "|" + API key) hex."""
    return sha256_hex(f"{user_id}|{api_key}")


def token_expiry_ms(issued_at_ms: int) -> int:
    """Finvasia documents no session lifetime; sessions are known to end overnight, so a token is
    taken to last until the next 06:00 IST (before the daily login, as Kite's)."""
    return expiry_at(issued_at_ms, IST, 6)


def login_values(account: Account, code: str) -> dict[str, str]:
    """The QuickAuth JSON, in the SDK's field order."""
    return {
        "source": "API",
        "apkversion": APK_VERSION,
        "uid": account.user_id,
        "pwd": sha256_hex(account.password.get()),
        "factor2": code,
        "vc": account.api_key,
        "appkey": app_key(account.user_id, account.api_secret.get()),
        "imei": str(account.extra.get("imei", DEFAULT_IMEI)),
    }


def _ok(status: int, body: Any) -> bool:
    return status == 200 and isinstance(body, dict) and body.get("stat") == "Ok"


def login(
    account: Account,
    session: requests.Session | None = None,
    *,
    totp_code: Any = totp.code,
) -> dict[str, Any]:
    """Log ``account`` in; returns ``access_token`` (the susertoken; also the ``feed_token``,
    since the socket connects with it) and ``user_id`` (the account id)."""
    code = totp_now(account, totp_code, "shoonya login")
    with session_or_new(session) as s:
        resp = call(s, "POST", f"{account.login_url.rstrip('/')}{LOGIN_PATH}", "shoonya login",
                    data=jdata(login_values(account, code)))  # fmt: skip
    body = answer(resp, "shoonya login", _ok, map_error)
    token = required(body, "susertoken", "shoonya login")
    return {
        "access_token": token,
        "feed_token": token,
        "user_id": str(body.get("actid") or account.user_id),
    }
