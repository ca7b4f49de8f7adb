"""The one error tree of brokergate.

Callers act on the type, never on message text. Every broker adapter maps its
broker's errors into this tree at exactly one point (``common/brokers/<b>/errors.py``)::

    BrokerGateError
    ├── ConfigError            bad settings or accounts file, missing secret variable
    ├── InvalidOrder           an order field is wrong; nothing was enqueued or sent (.field, .reason)
    ├── DeadlineExceeded       the order could not reach the broker before its deadline; never sent
    ├── IllegalTransition      a move the order state table forbids was asked for: a bug in the caller
    └── BrokerError            the broker (or the road to it) said no
        ├── RateLimited        the broker's own rate-limit answer: not placed; back off (.retry_after_s)
        ├── TokenExpired       the session is invalid or expired: not placed; log in again
        ├── LoginFailed        wrong password, TOTP secret or API secret: retrying cannot help
        ├── OrderRejected      the broker refused the order (margin, validation, OMS): final
        │   └── EgressRefused  the broker refused an order request for the IP it came from (the static-IP
        │                      rule): final until the operator fixes the account's egress or registration
        ├── Ambiguous          the request may or may not have taken effect (timeout, reset after send):
        │                      reconcile by tag before anything is resent
        └── BrokerUnavailable  the request certainly did not take effect (connect refused, 5xx before
                               acceptance): safe to retry within the deadline

``retryable`` tells a caller whether sending the same request again is safe and useful.
"""

from __future__ import annotations

__all__ = [
    "Ambiguous",
    "BrokerError",
    "BrokerGateError",
    "BrokerUnavailable",
    "ConfigError",
    "DeadlineExceeded",
    "EgressRefused",
    "Halted",
    "IllegalTransition",
    "InvalidOrder",
    "LoginFailed",
    "OrderRejected",
    "RateLimited",
    "RiskRefused",
    "TokenExpired",
]


class BrokerGateError(Exception):
    """Root of every error brokergate raises on purpose."""

    retryable: bool = False


class ConfigError(BrokerGateError):
    """The settings or the accounts file are wrong; the message names the field or variable."""


class InvalidOrder(BrokerGateError, ValueError):
    """An order field is invalid. Raised before anything is enqueued or sent."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"invalid order: {field}: {reason}")


class Halted(BrokerGateError):
    """The account is halted (the kill switch, ``brokergate halt``): new entries are refused, and
    an entry not yet sent ends REJECTED with this. Exits (``reduce_only`` orders, cancels) flow."""

    def __init__(self, account: str, reason: str) -> None:
        self.account = account
        self.reason = reason
        super().__init__(f"{account} is halted: {reason}")


class RiskRefused(BrokerGateError):
    """A pre-trade risk limit refuses the order (``limit`` names it: ``max_order_quantity``,
    ``price_band_pct``, ...). Raised by the client before anything is enqueued, or recorded as
    the order's REJECTED reason by the worker's authoritative check before it is sent."""

    def __init__(self, limit: str, reason: str) -> None:
        self.limit = limit
        self.reason = reason
        super().__init__(f"risk limit {limit}: {reason}")


class DeadlineExceeded(BrokerGateError):
    """The order could not be sent before its deadline, so it was not sent at all."""


class IllegalTransition(BrokerGateError):
    """A move that ``common/orderstate.py``'s table never allows from a state the caller named:
    a programming error, raised before anything is written (a lost compare-and-set is not one)."""

    def __init__(self, current: str, to: str) -> None:
        self.current = current
        self.to = to
        super().__init__(f"illegal order transition: {current} -> {to}")


class BrokerError(BrokerGateError):
    """The broker, or the network path to it, refused or failed a request."""

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None) -> None:
        self.code = code
        self.http_status = http_status
        super().__init__(message)


class RateLimited(BrokerError):
    """The broker answered with its rate-limit response. The request was not processed."""

    retryable = True

    def __init__(self, message: str = "rate limited", *, retry_after_s: float = 1.0, **kw: object) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, **kw)  # type: ignore[arg-type]


class TokenExpired(BrokerError):
    """The access token is missing, invalid or expired. The request was not processed."""

    retryable = True


class LoginFailed(BrokerError):
    """Credentials were refused (password, TOTP secret, API secret). Retrying cannot help."""


class OrderRejected(BrokerError):
    """The broker refused the order for a reason that retrying will not fix."""


class EgressRefused(OrderRejected):
    """The broker refused an order request (place, modify, cancel) for the address it came from: the
    SEBI retail-algo rules of 2026 let a client's orders come only from its registered static IP. Not
    processed, and the same request from the same egress fails again, so it is final (an
    OrderRejected: the order ends REJECTED after one request, never retried or re-logged in).
    ``seen_ip``: the address the broker says it saw ("" when its answer does not say)."""

    def __init__(self, broker: str, answer: str, *, console: str, seen_ip: str = "", **kw: object) -> None:
        self.seen_ip = seen_ip
        seen = f" {seen_ip}" if seen_ip else ""
        super().__init__(
            f"{broker}: order request refused for its source IP{seen}, not the client's registered static IP "
            f"({answer}). Runbook: register this host's static egress IP at {console}, or send the account's "
            "orders from the registered address: extra.order_source_address (a local IP to bind) or "
            "extra.order_proxy (a proxy whose egress is registered) in the accounts file",
            **kw,  # type: ignore[arg-type]
        )


class Ambiguous(BrokerError):
    """The request left and no answer came back: the outcome is unknown until reconciled."""


class BrokerUnavailable(BrokerError):
    """The request did not take effect (connection refused, gateway error before acceptance).
    ``reached`` is False when the request never reached any server (no connection, or one made
    too late to carry it): the broker cannot have counted it against a cap either."""

    retryable = True

    def __init__(self, message: str, *, reached: bool = True, **kw: object) -> None:
        self.reached = reached
        super().__init__(message, **kw)  # type: ignore[arg-type]
