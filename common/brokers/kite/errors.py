"""Kite's answers -> the error tree of ``common/errors.py``, at exactly one point.

Kite errors are ``{"status": "error", "message", "error_type"}`` with an HTTP status. The
table is data (``ERROR_TYPES``); ``map_error`` adds what the status says:

* 429 (a NetworkException "Too many requests") -> RateLimited: not processed.
* an order from an IP not on the developer console's IP whitelist (the 2026 static-IP rule; the one
  wording seen is "IP (<address>) is not allowed", status and error_type unpublished) -> EgressRefused,
  read from the message alone, before a 403 could pass for an expired token (a re-login cannot help).
* 504 / "timed out" NetworkException -> Ambiguous: "order request timed out" may still have
  placed the order; look it up by tag before any retry (docs/brokers.md).
* 503 NetworkException -> BrokerUnavailable: the gateway could not reach the OMS, nothing was
  placed. A 502 is Ambiguous: a proxy answers it also after forwarding (issue 15, item 14).
* an error_type missing from the table -> Ambiguous (a 403 -> TokenExpired): with a 5xx above all,
  the OMS may have acted (Angel's unknown codes with a 5xx are Ambiguous too).
* an answer that is not Kite JSON -> ``base.status_error``: BrokerUnavailable for 503 (not
  forwarded), Ambiguous otherwise (something answered, we cannot tell what happened).
* During login (``during_login=True``) nothing can have been placed: a 5xx or an answer that is
  not JSON is BrokerUnavailable, and any refusal (a TokenException for a stale request_id or a
  bad checksum included) is LoginFailed: the same credentials fail again.
"""

from __future__ import annotations

from typing import Any

from common.brokers.base import NOT_FORWARDED, status_error
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

__all__ = ["ERROR_TYPES", "IP_CONSOLE", "map_error"]

# Where a Kite client registers its static IP (the runbook step of EgressRefused).
IP_CONSOLE = "developers.kite.trade (Profile > IP Whitelist; one change per calendar week)"

ERROR_TYPES: dict[str, type[BrokerError]] = {
    "TokenException": TokenExpired,  # session expired or invalidated: log in again
    "PermissionException": OrderRejected,  # 403: the app may not make this call; a new session cannot help
    "UserException": OrderRejected,  # account problem (blocked, not enabled): retrying cannot help
    "OrderException": OrderRejected,  # the OMS refused the order
    "InputException": OrderRejected,  # a bad field: the same request fails again
    "MarginException": OrderRejected,  # not enough funds
    "HoldingException": OrderRejected,  # not enough holdings to sell
    "NetworkException": Ambiguous,  # the OMS could not be reached, or did not answer in time
    "DataException": Ambiguous,  # the OMS answer could not be read: it may have acted
    "GeneralException": Ambiguous,  # unclassified: assume it may have acted, reconcile
}


def map_error(http_status: int, body: Any, text: str = "", *, during_login: bool = False) -> BrokerError:
    """The error for a Kite answer that is not a success."""
    if http_status == 429:
        return RateLimited("Kite: too many requests", retry_after_s=1.0, code="429", http_status=429)
    if during_login and (http_status >= 500 or not isinstance(body, dict)):
        return BrokerUnavailable(f"Kite: HTTP {http_status}", http_status=http_status)
    said = str(body.get("message") or "") if isinstance(body, dict) else text
    error_type = str(body.get("error_type") or "") if isinstance(body, dict) else ""
    if not during_login and (egress := refusal("Kite", f"{error_type}: {said}" if error_type else said,
                                                console=IP_CONSOLE, code=error_type or None, http_status=http_status)):
        return egress
    if not during_login and (not isinstance(body, dict) or body.get("status") != "error"):
        return status_error("Kite", http_status, text)
    error_type = error_type or "GeneralException"
    message = f"Kite {error_type}: {said}".strip()
    if during_login:
        return LoginFailed(message, code=error_type, http_status=http_status)
    if error_type == "NetworkException" and http_status in NOT_FORWARDED:
        return BrokerUnavailable(message, code=error_type, http_status=http_status)
    if http_status == 403 and error_type not in ERROR_TYPES:
        return TokenExpired(message, code=error_type, http_status=http_status)
    kind = ERROR_TYPES.get(error_type, Ambiguous)
    return kind(message, code=error_type, http_status=http_status)
