"""Angel SmartAPI answers -> the error tree of ``common/errors.py``, at exactly one point.

Three shapes reach us: business errors ``{"status": false, "errorcode": "AB....", "message"}``
(usually HTTP 200), the gateway's ``{"success": false, "errorCode": "AG800x"}`` (HTTP 401),
and the rate limit: HTTP 403 with the plain text "Access denied because of exceeding access
rate" (not 429, not JSON). The code table is data (``ERROR_CODES``); an unknown code on a
well-formed error answer is a refusal (OrderRejected), except with a 5xx status: then the OMS may
have acted before it failed, so it is Ambiguous (reconcile first), as Kite's unknown types are; an
unreadable answer is Ambiguous.
AB1004 / AB2000 / AB2001 ("Something went wrong", "internal error") are BrokerUnavailable with
a 503 status (the gateway refused before the OMS) and Ambiguous otherwise, 500, 502 and 504
included (the OMS may have acted before it failed, timed out or the proxy lost its answer).
An order from an IP other than the app's registered primary static IP (the 2026 rule; Angel publishes
no wording or code for it) -> EgressRefused, read from the message (or the raw body) alone.
During login (``during_login=True``) nothing can have been placed: those codes, a 5xx and an
answer that is not JSON are BrokerUnavailable; every other code (a token code included) is
LoginFailed: the same credentials fail again.
"""

from __future__ import annotations

from typing import Any

from common.brokers.base import coded_error, status_error
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

__all__ = ["ERROR_CODES", "IP_CONSOLE", "RATE_LIMIT_TEXT", "map_error"]

# Where an Angel client registers its static IP (the runbook step of EgressRefused).
IP_CONSOLE = "smartapi.angelbroking.com (My Apps: the app's primary static IP, IPv4)"

RATE_LIMIT_TEXT = "access denied because of exceeding access rate"

ERROR_CODES: dict[str, type[BrokerError]] = {
    # session
    "AG8001": TokenExpired,  # invalid token
    "AG8002": TokenExpired,  # token expired
    "AG8003": TokenExpired,  # token missing
    "AB8050": TokenExpired,  # invalid refresh token
    "AB8051": TokenExpired,  # refresh token expired
    "AB1010": TokenExpired,  # AMX session expired
    "AB1011": TokenExpired,  # client not logged in
    # login
    "AB1000": LoginFailed,  # invalid email or password
    "AB1001": LoginFailed,  # invalid email
    "AB1002": LoginFailed,  # invalid password length
    "AB1007": LoginFailed,  # invalid client code or password (AMX error)
    "AB1050": LoginFailed,  # invalid TOTP
    "AG8004": LoginFailed,  # invalid API key
    "AB1031": LoginFailed,  # old password mismatch
    "AB1032": LoginFailed,  # user not found
    # the OMS may or may not have acted
    "AB1004": Ambiguous,  # something went wrong, please try after sometime
    "AB2000": Ambiguous,  # error not specified
    "AB2001": Ambiguous,  # internal error, please try after sometime
    # refusals: the same request fails again
    "AB1003": OrderRejected,  # client already exists
    "AB1005": OrderRejected,  # user type must be USER
    "AB1006": OrderRejected,  # client is blocked for trading
    "AB1008": OrderRejected,  # invalid order variety
    "AB1009": OrderRejected,  # symbol not found
    "AB1012": OrderRejected,  # invalid product type
    "AB1013": OrderRejected,  # order not found
    "AB1014": OrderRejected,  # trade not found
    "AB1015": OrderRejected,  # holding not found
    "AB1016": OrderRejected,  # position not found
    "AB1017": OrderRejected,  # position conversion failed
    "AB1018": OrderRejected,  # failed to get symbol details
    "AB2002": OrderRejected,  # ROBO order is blocked
    "AB4008": OrderRejected,  # order refused by the OMS (e.g. ordertag too long)
}


def map_error(http_status: int, body: Any, text: str = "", *, during_login: bool = False) -> BrokerError:
    """The error for an Angel answer that is not a success."""
    if http_status == 403 and RATE_LIMIT_TEXT in (text or "").lower():
        return RateLimited("Angel: access rate exceeded", retry_after_s=1.0, code="403", http_status=403)
    if during_login and (http_status >= 500 or not isinstance(body, dict)):
        return BrokerUnavailable(f"Angel: HTTP {http_status}", http_status=http_status)
    code = str(body.get("errorcode") or body.get("errorCode") or "") if isinstance(body, dict) else ""
    said = str(body.get("message") or "") if isinstance(body, dict) else text
    if not during_login and (egress := refusal("Angel", f"{code}: {said}" if code else said, console=IP_CONSOLE,
                                                code=code or None, http_status=http_status)):
        return egress
    if isinstance(body, dict):
        message = f"Angel {code}: {said}".strip()
        if during_login:
            retry_later = ERROR_CODES.get(code) is Ambiguous
            return (BrokerUnavailable if retry_later else LoginFailed)(message, code=code, http_status=http_status)
        if code:
            return coded_error(ERROR_CODES.get(code), message, code=code, http_status=http_status)
        if http_status == 401:
            return TokenExpired(message, http_status=http_status)
    return status_error("Angel", http_status, text)
