"""Fyers answers -> the error tree of ``common/errors.py``, at exactly one point.

Every Fyers answer is ``{"s": "ok" | "error", "code": <int>, "message": ...}`` with an HTTP
status (400 for refusals, 401 for a bad token, 429 for the rate limit, 5xx when the OMS
failed). The code table is data (``ERROR_CODES``, from the error sheet of Fyers'
``fyers-api-sample-code`` repository and the v3 docs); ``map_error`` adds what the status says:

* -429 / -353 or the message "request limit reached", or HTTP 429 -> RateLimited: not processed.
* an order from an IP other than the app's whitelisted static IP (the 2026 rule; Fyers publishes no
  wording or code for it) -> EgressRefused, read from the message (or the raw body) alone.
* -8 / -15 / -16 / -17 (token expired, invalid, not authenticated), or HTTP 401 -> TokenExpired.
* -201 / -202 / -204 / -205 ("Connection error. Please try again") and -96 ("an unexpected
  error occurred") -> Ambiguous: the OMS may have reached the exchange before the connection
  failed, so reconcile before any resend; with a 503 status (the gateway refused before
  the OMS) they are BrokerUnavailable (a 502 may come after forwarding: Ambiguous).
* an unknown code on a well-formed error -> OrderRejected, except with a 5xx status: Ambiguous.
* an answer that is not Fyers JSON -> ``base.status_error``: BrokerUnavailable for 503, Ambiguous otherwise.
* During login (``during_login=True``) nothing can have been placed: past the rate limit, a 5xx
  or an answer that is not JSON is BrokerUnavailable, and any refusal (a vagator code, -16 for
  the login session included) is LoginFailed: the same credentials fail again.
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

__all__ = ["ERROR_CODES", "IP_CONSOLE", "RATE_LIMIT_TEXT", "map_error"]

# Where a Fyers client registers its static IP (the runbook step of EgressRefused).
IP_CONSOLE = "myapi.fyers.in (the app's static IP; a family's shared IP through support)"

RATE_LIMIT_TEXT = "request limit reached"

ERROR_CODES: dict[int, type[BrokerError]] = {
    # rate limits
    -429: RateLimited,  # request limit reached
    -353: RateLimited,  # API limit exceeded (per second / minute / day)
    # session
    -8: TokenExpired,  # token expired
    -15: TokenExpired,  # invalid token / could not authenticate
    -16: TokenExpired,  # could not authenticate the user
    -17: TokenExpired,  # token invalid or expired
    # login (validate-authcode and the vagator steps)
    -352: LoginFailed,  # invalid app id
    -371: LoginFailed,  # appIdHash is not sha256(app_id:secret)
    -374: LoginFailed,  # invalid auth code
    -373: OrderRejected,  # the app lacks the permission for this call
    # the OMS may or may not have acted
    -96: Ambiguous,  # an unexpected error occurred
    -201: Ambiguous,  # connection error
    -202: Ambiguous,  # connection timed out
    -204: Ambiguous,  # HTTP error towards the exchange
    -205: Ambiguous,  # the market could not accept or process the request
    # refusals: the same request fails again
    -50: OrderRejected,  # invalid parameters
    -51: OrderRejected,  # invalid order id
    -53: OrderRejected,  # invalid position id
    -99: OrderRejected,  # order placement rejected
    -100: OrderRejected,  # invalid input
    -101: OrderRejected,  # invalid order type
    -157: OrderRejected,  # user does not exist
    -159: OrderRejected,  # no such order in the order book
    -161: OrderRejected,  # already cancelled
    -162: OrderRejected,  # already traded
    -163: OrderRejected,  # modification failed
    -164: OrderRejected,  # already rejected
    -209: OrderRejected,  # invalid order number
    -300: OrderRejected,  # invalid symbol
    -305: OrderRejected,  # CO: only market and limit orders
    -308: OrderRejected,  # invalid limitPrice
    -309: OrderRejected,  # invalid stop price
    -310: OrderRejected,  # invalid quantity
    -311: OrderRejected,  # invalid stop loss price
    -313: OrderRejected,  # invalid side
    -314: OrderRejected,  # invalid product type
    -315: OrderRejected,  # invalid price for a stop-limit order
    -316: OrderRejected,  # invalid stop loss (CO/BO)
    -323: OrderRejected,  # invalid stop loss value (BO)
    -325: OrderRejected,  # invalid target value
    -326: OrderRejected,  # invalid validity
    -327: OrderRejected,  # invalid disclosed quantity
    -328: OrderRejected,  # invalid offline flag
    -329: OrderRejected,  # exit positions already requested
    -372: OrderRejected,  # invalid price
    -390: OrderRejected,  # invalid stop price
    -392: OrderRejected,  # price not a multiple of the tick size
    -397: OrderRejected,  # position quantity is zero
    -398: OrderRejected,  # no open positions
    -399: OrderRejected,  # no pending orders
}


def _code(body: dict[str, Any]) -> int | None:
    try:
        return int(body.get("code"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def map_error(http_status: int, body: Any, text: str = "", *, during_login: bool = False) -> BrokerError:
    """The error for a Fyers answer that is not a success."""
    if during_login and http_status != 429 and not isinstance(body, dict):
        return BrokerUnavailable(f"Fyers: HTTP {http_status}", http_status=http_status)
    if isinstance(body, dict) and ("s" in body or during_login):
        code = _code(body)
        message = f"Fyers {code}: {body.get('message') or ''}".strip()
        kw: dict[str, Any] = {"code": None if code is None else str(code), "http_status": http_status}
        if code in (-429, -353) or RATE_LIMIT_TEXT in str(body.get("message") or "").lower() or http_status == 429:
            return RateLimited(message, retry_after_s=1.0, **kw)
        if not during_login and (egress := refusal("Fyers", message, console=IP_CONSOLE, **kw)):
            return egress
        if during_login:
            return (BrokerUnavailable if http_status >= 500 else LoginFailed)(message, **kw)
        kind = ERROR_CODES.get(code) if code is not None else None
        if kind is None and http_status == 401:
            return TokenExpired(message, **kw)
        if kind is None and http_status in NOT_FORWARDED:
            return BrokerUnavailable(message, **kw)
        return coded_error(kind, message, **kw)
    if http_status == 429:
        return RateLimited("Fyers: HTTP 429", retry_after_s=1.0, http_status=429)
    return (None if during_login else refusal("Fyers", text, console=IP_CONSOLE, http_status=http_status)) or \
        status_error("Fyers", http_status, text)
