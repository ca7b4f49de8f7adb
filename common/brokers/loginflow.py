"""The steps every broker's headless login shares: the TOTP of now, one HTTP step whose transport
failure is BrokerUnavailable, its answer (an error one raised as the broker's ``map_error(...,
during_login=True)`` types it), a field the answer must carry (LoginFailed without it), a value in
a redirect's query, and when a token the broker ends daily at a fixed hour dies.

Messages name the step (``"<broker> login: <step>: ..."``, given by the caller) and never carry a
secret, a token or the exception's text.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import requests

from common.brokers.base import json_or_none, request_once
from common.errors import BrokerError, LoginFailed
from common.settings import Account

__all__ = ["IST", "TIMEOUT_S", "answer", "call", "expiry_at", "query_value", "required", "totp_now"]

TIMEOUT_S = (3.05, 10.0)  # connect, read
IST = ZoneInfo("Asia/Kolkata")


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


def query_value(url: str, name: str) -> str | None:
    """The value of ``name`` in the query of ``url`` (a redirect target), or None without one."""
    values = parse_qs(urlsplit(url).query).get(name)
    return values[0] if values and values[0] else None


def expiry_at(issued_at_ms: int, tz: tzinfo, hour: int) -> int:
    """The first ``hour``:00 in ``tz`` after ``issued_at_ms`` (epoch ms): when a token dies that
    the broker ends daily at that hour."""
    issued = datetime.fromtimestamp(issued_at_ms / 1000, tz)
    end = issued.replace(hour=hour, minute=0, second=0, microsecond=0)
    if end <= issued:
        end += timedelta(days=1)
    return int(end.timestamp() * 1000)
