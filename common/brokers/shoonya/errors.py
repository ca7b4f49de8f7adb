"""Shoonya (Noren) answers -> the error tree of ``common/errors.py``, at exactly one point.

Noren gives no error codes: a refusal is ``{"stat": "Not_Ok", "emsg": "<Kind> : <detail>"}``
(usually HTTP 200), and the kind before the colon is what the message says about the request
(NorenRestApiPy README samples): ``Session Expired : Invalid Session Key``, ``Invalid Input :
Wrong Password``, ``Rejected : ORA:Order not found``, ``Error Occurred : 2 "invalid input"``,
``Server Timeout :``, ``No Data :``. The kinds are data (``KINDS``); the detail text never
decides anything except the two login cases below.

* HTTP 429, or an emsg about too many requests -> RateLimited (Finvasia documents no rate-limit
  answer; the paper broker sends a 429 with a Not_Ok body, and both shapes are read).
* An order from an IP other than the registered static IP (the 2026 rule; Finvasia publishes no
  wording for it) -> EgressRefused, read from the emsg (or the raw body) alone, whatever its kind.
* 503 -> BrokerUnavailable: the gateway refused before the OMS (a 502 may come after it
  forwarded the request: Ambiguous, as any other answer that is not Noren's).
* ``Server Timeout`` and 500 / 504 without a Noren body -> Ambiguous: the OMS may have acted.
* An unknown kind on a well-formed Not_Ok answer is a refusal (OrderRejected), except with a 5xx
  status (Ambiguous, as Angel's unknown codes); an unreadable answer is Ambiguous.
* During login (``during_login=True``) every refusal of the credentials is LoginFailed (named a
  TOTP refusal when the detail says OTP: one QuickAuth checks password and TOTP together), and a
  timeout, a 5xx or an answer that is not Noren's is BrokerUnavailable (the login retries those;
  nothing was placed).
"""

from __future__ import annotations

from typing import Any

from common.brokers.base import NOT_FORWARDED, coded_error, status_error
from common.brokers.egress import refusal
from common.errors import (
    Ambiguous,
    BrokerError,
    BrokerUnavailable,
    LoginFailed,
    OrderRejected,
    RateLimited,
    TokenExpired,
)

__all__ = ["IP_CONSOLE", "KINDS", "NO_DATA", "emsg_kind", "map_error"]

# Where a Shoonya client registers its static IP (the runbook step of EgressRefused).
IP_CONSOLE = "trade.shoonya.com (Profile > API Key: the static IP)"

KINDS: dict[str, type[BrokerError]] = {
    "session expired": TokenExpired,  # the susertoken is invalid or expired: log in again
    "invalid session key": TokenExpired,
    "invalid input": OrderRejected,  # a bad field: the same request fails again
    "rejected": OrderRejected,  # the OMS refused (order not found, not modifiable, RMS)
    "error occurred": OrderRejected,  # Noren's numbered validation errors ("2 invalid input")
    "no data": OrderRejected,  # nothing to act on (an empty book is read as empty, not an error)
    "server timeout": Ambiguous,  # the OMS did not answer in time: it may have acted
    "rate limit exceeded": RateLimited,
    "too many requests": RateLimited,
}
NO_DATA = "no data"


def emsg_kind(emsg: str) -> str:
    """The kind of a Noren message ("Session Expired : Invalid Session Key" -> "session expired"),
    lower-cased; ``Error Occurred : 5 "no data"`` is "no data", which is what it says."""
    text = " ".join(str(emsg).lower().split())
    kind = text.split(" :", 1)[0].split(":", 1)[0].strip()
    if kind == "error occurred" and '"no data"' in text:
        return NO_DATA
    return kind


def map_error(http_status: int, body: Any, text: str = "", *, during_login: bool = False) -> BrokerError:
    """The error for a Noren answer that is not a success."""
    emsg = str(body.get("emsg") or "") if isinstance(body, dict) else ""
    kind = emsg_kind(emsg) if emsg else ""
    message = f"Shoonya: {emsg}" if emsg else f"Shoonya: HTTP {http_status}"
    if http_status == 429 or KINDS.get(kind) is RateLimited:
        return RateLimited(message, retry_after_s=1.0, code=kind or "429", http_status=http_status)
    if not during_login and (egress := refusal("Shoonya", emsg or text, console=IP_CONSOLE, code=kind or None,
                                                 http_status=http_status)):
        return egress
    if http_status in NOT_FORWARDED:
        return BrokerUnavailable(message, code=kind or None, http_status=http_status)
    noren = isinstance(body, dict) and body.get("stat") == "Not_Ok"
    if during_login:
        if not noren or kind == "server timeout" or http_status >= 500:
            return BrokerUnavailable(message, code=kind or None, http_status=http_status)
        refused = "totp refused: " if "otp" in emsg.lower() else ""
        return LoginFailed(f"Shoonya: {refused}{emsg or 'refused'}", code=kind, http_status=http_status)
    if not noren:
        return status_error("Shoonya", http_status, text)
    return coded_error(KINDS.get(kind), message, code=kind, http_status=http_status)
