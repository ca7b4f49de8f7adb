"""One policy for every request an order worker makes to a broker: place, cancel, modify and
order-book reads all go through :func:`call`, so they cannot disagree on what an error means.

    token refused      -> one single-flight re-login (common.tokens), then the request again;
                          refused again, or the login fails: LoginFailed
    rate-limit answer  -> the class backs off for the exceeded window (every worker), then again
    unavailable        -> certainly not processed: again after a jittered back-off, within the deadline
    ambiguous          -> raised: the caller reconciles by tag; nothing is ever resent blindly
    egress refused     -> counted (``egress_refused``, for ``brokergate status``) and raised: the broker
                          refused the request's source IP, a final OrderRejected (no retry, no re-login)
    anything else      -> raised to the caller (OrderRejected, InvalidOrder, ...)

Each try takes a limiter slot first (DeadlineExceeded when none is left before the deadline),
then reads everything the request needs (the access token) *before* its point of no return
(the caller's ``gate``, e.g. ``orderstore.mark_sent``): a Redis stall or error there delays or
fails a request that has not left, instead of sending it late or calling it ambiguous.

A request must leave within its slot plus :data:`LEAVE_WITHIN_MS`: the limiter keeps that much
margin between windows for slots still in flight, so a request that left later could land in
the next window beside a full set of later slots (11 in a second at 10/s). A request not yet
written at that moment is not written (BrokerUnavailable: certainly not sent; a new slot is
taken): checked after a new connection is made (DNS, a lost SYN, a slow TLS handshake) and again
right before the first byte goes out on a kept-alive one (a thread held up after its point of no
return). The moment is reckoned from before the slot and the gate were asked, never from when a
held-up thread read their answers. So that this rarely bites, the connection is opened before
the slot is taken when the session has no idle one.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from common import ratelimit
from common.brokers.base import CONNECT_TIMEOUT_S, BrokerAdapter, adapter_for, pinned_token, sending_by, warm
from common.errors import (
    BrokerUnavailable,
    ConfigError,
    DeadlineExceeded,
    EgressRefused,
    LoginFailed,
    RateLimited,
    TokenExpired,
)
from common.instruments import lookup
from common.keys import stats
from common.models import Instrument, Order
from common.redis import server_time_ms
from common.settings import Account, account

__all__ = [
    "BOOK_LAG_S",
    "DEFAULT_ACTION_DEADLINE_S",
    "LEAVE_WITHIN_MS",
    "ORDERBOOK",
    "ORDERS",
    "NotSent",
    "account",
    "adapter_for",
    "call",
    "count",
    "instrument",
    "remaining_s",
    "send_window_ms",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

ORDERS = "orders"  # endpoint class of place / modify / cancel
ORDERBOOK = "orderbook"  # endpoint class of the order book
BOOK_LAG_S = 1.0  # how long after a request's read timeout the order book may still not show it
DEFAULT_ACTION_DEADLINE_S = 10.0  # a cancel or modify that cannot be sent within this is not sent
UNAVAILABLE_BACKOFF_S = (0.05, 0.1, 0.2, 0.4, 0.8)  # full-jitter caps, then 0.8 s
# Half the limiter's in-flight margin: the other half covers the wire and the broker's own clock.
LEAVE_WITHIN_MS = ratelimit.SAFETY_MARGIN_MS // 2


class NotSent(Exception):
    """The caller's gate refused to send (the order is no longer ours, expired, cancelled)."""

    def __init__(self, verdict: str) -> None:
        super().__init__(verdict)
        self.verdict = verdict


def count(r: redis.Redis, acct: str, name: str, n: int = 1) -> None:
    """Add to the account's counters (``brokergate status``); never fails an order."""
    try:
        r.hincrby(stats(acct), name, n)
    except redis.RedisError:
        log.debug("stats %s not counted", name)


def send_window_ms(acct: Account) -> int:
    """From ``sent_at_ms``, how long a request may still be legitimately in flight (connect, then
    the answer) plus the book's lag: before it has passed, an absent order may yet arrive."""
    return int((CONNECT_TIMEOUT_S + acct.read_timeout_s + BOOK_LAG_S) * 1000)


def remaining_s(r: redis.Redis, deadline_ms: int) -> float:
    return (deadline_ms - server_time_ms(r)) / 1000


def instrument(acct: Account, order: Order) -> Instrument | None:
    return lookup(acct.name, order.instrument_key)


def _token(acct: Account) -> tuple[str, int]:
    """The access token a request will carry and its version (a refusal names that version stale);
    ("", 0) when the account has none: the adapter then refuses to send (TokenExpired)."""
    from common.tokens import get_token

    tok = get_token(acct.name)
    return (tok.access_token, tok.version) if tok is not None and tok.access_token else ("", 0)


def _relogin(acct: Account, stale_version: int, remaining: float) -> None:
    """Single-flight re-login across every worker; every failure is LoginFailed for the caller."""
    from common.tokens import relogin

    try:
        relogin(acct.name, stale_version, timeout_s=max(1.0, remaining))
    except (BrokerUnavailable, ConfigError) as e:
        raise LoginFailed(f"re-login failed: {e}") from e


def call(r: redis.Redis, acct: Account, endpoint_class: str, request: Callable[[BrokerAdapter], T], *,
         deadline_ms: int, urgent: bool = False, gate: Callable[[int], tuple[str, int]] | None = None,
         not_sent: Callable[[], None] = lambda: None) -> T:
    """``request(adapter)`` under the policy above; its result, or the error the policy passes on.

    ``gate(slot_us) -> (verdict, redis_now_us)`` is the point of no return, called once the slot
    has come and everything is read: ``ok`` sends, ``late`` takes a new slot, anything else raises
    :class:`NotSent`. ``not_sent()`` is called whenever a try certainly did not place anything
    (so the caller can forget its send before trying again)."""
    limiter = ratelimit.Limiter.for_account(r, acct, endpoint_class)
    adapter = adapter_for(acct)
    relogged = False
    unavailable = 0
    while True:
        warm(adapter, order=endpoint_class == ORDERS)
        version = 0
        try:
            slot_us, due = limiter.acquire_due(deadline_ms, urgent=urgent)
            access_token, version = _token(acct)
            if gate is None:
                if not slot_us and server_time_ms(r) >= deadline_ms:
                    # No limiter class (no caps) checked the deadline: a request is never sent late.
                    raise DeadlineExceeded(f"{acct.name}/{endpoint_class}: past the deadline")
                leave_by = due + LEAVE_WITHIN_MS / 1000
            else:
                asked_at = time.monotonic()
                verdict, now_us = gate(slot_us)
                if verdict != "ok":
                    # Nothing left: the slot goes back, so a late wake-up does not spend a window's
                    # budget (a 20/min cap lost an order's slot to each late wake-up).
                    limiter.release(slot_us)
                if verdict == "late":
                    count(r, acct.name, "late_slots")
                    continue  # woke too long after the slot: take a new one rather than crowd a window
                if verdict != "ok":
                    raise NotSent(verdict)
                # The connection must be made within the slot's margin, and never after the deadline.
                # Reckoned from before the gate was asked (Redis's clock then was at most now_us), so a
                # thread that read the answer late, held up by the GIL, does not count from then.
                by_us = min(slot_us + LEAVE_WITHIN_MS * 1000 if slot_us else deadline_ms * 1000, deadline_ms * 1000)
                leave_by = asked_at + (by_us - now_us) / 1e6
            with limiter.used(slot_us), sending_by(leave_by), pinned_token(access_token):
                return request(adapter)
        except TokenExpired:
            not_sent()
            if relogged:
                raise LoginFailed(f"{acct.name}: token refused again after a re-login") from None
            relogged = True
            count(r, acct.name, "relogins")
            _relogin(acct, version, remaining_s(r, deadline_ms))
        except EgressRefused:
            count(r, acct.name, "egress_refused")
            raise
        except RateLimited as e:
            not_sent()
            limiter.note_rate_limited(e.retry_after_s)
            log.error("broker rate-limit answer for %s (the limiter should prevent this): %s", acct.name, e)
        except BrokerUnavailable as e:
            not_sent()
            cap_s = UNAVAILABLE_BACKOFF_S[min(unavailable, len(UNAVAILABLE_BACKOFF_S) - 1)]
            unavailable += 1
            log.warning("broker unavailable for %s/%s (%s); trying again within the deadline",
                        acct.name, endpoint_class, e)
            time.sleep(min(random.uniform(0, cap_s), max(0.0, remaining_s(r, deadline_ms))))
