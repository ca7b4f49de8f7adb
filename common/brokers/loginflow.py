"""The steps every broker's headless login shares: the TOTP of now, one HTTP step whose transport
failure is BrokerUnavailable, its answer (an error one raised as the broker's ``map_error(...,
during_login=True)`` types it), and a field the answer must carry (LoginFailed without it).

Messages name the step (``"<broker> login: <step>: ..."``, given by the caller) and never carry a
secret, a token or the exception's text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from common.brokers.base import json_or_none, request_once
from common.errors import BrokerError, LoginFailed
from common.settings import Account

__all__ = ["TIMEOUT_S", "answer", "call", "required", "totp_now"]

TIMEOUT_S = (3.05, 10.0)  # connect, read


def totp_now(account: Account, totp_code: Callable[[str], str], what: str) -> str:
    """The account's current TOTP; a secret that is not a TOTP secret is LoginFailed
    (``"<what>: totp: <why>"``: retrying cannot help)."""
    try:
        return totp_code(account.totp_secret.get())
    except ValueError as e:
        raise LoginFailed(f"{what}: totp: {e}") from None


def call(session: requests.Session, method: str, url: str, what: str, **kw: Any) -> requests.Response:
    """One login request (login timeouts); a transport failure is BrokerUnavailable (``"<what>:
    <exception type>"``): the caller retries the whole flow within its deadline."""
    return request_once(session, method, url, what, timeout=TIMEOUT_S, **kw)


def answer(resp: requests.Response, what: str, ok: Callable[[int, Any], bool],
           map_error: Callable[..., BrokerError]) -> Any:
    """The JSON of ``resp`` when ``ok(status, json)``; otherwise the error the broker's
    ``map_error(status, json, text, during_login=True)`` makes of it, raised with ``"<what>: "``
    leading its message."""
    body = json_or_none(resp)
    if ok(resp.status_code, body):
        return body
    error = map_error(resp.status_code, body, resp.text, during_login=True)
    error.args = (f"{what}: {error}",)
    raise error


def required(data: dict[str, Any], key: str, what: str) -> str:
    """``data[key]`` as text; LoginFailed (``"<what>: no <key> in the answer"``) when it is missing
    or empty."""
    value = str(data.get(key) or "")
    if not value:
        raise LoginFailed(f"{what}: no {key} in the answer")
    return value
