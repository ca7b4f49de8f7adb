"""Login tasks: the daily login (idempotent per account and trading day) and the
instrument master refresh, by stable names on the ``auth`` queue.

- ``brokergate.login(account, force=False)``: logs in unless ``bg:login:done:<account>:<day>``
  says today's login already happened (``force`` skips that check). Goes through
  :func:`common.tokens.relogin`, so it is single-flight with every re-login in flight.
  Logged in now or earlier today, a missing or stale instrument master is then refreshed
  (enqueued: ``common/instruments.py`` § every login path). After every successful login
  (daily or the CLI's), orders of the account from before the trading day that the book no
  longer shows are settled (``workers.sweeper.settle_stale``).
- ``brokergate.refresh_instruments(account, max_age_s=None, if_stale=False)``.

A refused credential is logged once (by common.tokens), recorded in
``bg:login:error:<account>`` and not retried: the task declares LoginFailed as an
expected error, so Celery logs it without a traceback. A broker that cannot be reached
is retried inside the login's deadline, then a few times more with backoff.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import current_app, shared_task

from common import instruments, keys, tokens, tradingday
from common.errors import (
    BrokerError,
    BrokerGateError,
    BrokerUnavailable,
    ConfigError,
    LoginFailed,
    RateLimited,
    TokenExpired,
)
from common.logs import redact
from common.redis import get_redis, server_time_ms
from common.settings import account

__all__ = ["login", "login_concurrently", "login_now", "refresh_instruments"]

log = logging.getLogger(__name__)
DONE_TTL_S = 3 * 86400


def _settle_stale(account_name: str) -> int:
    """Settle the account's orders left over from earlier days (``workers.sweeper.settle_stale``),
    right after a login: the fresh token reads the new day's book. Never fails the login it follows:
    an unread book is logged, and the next login (or the sweeper's hourly look at an OPEN order)
    tries again."""
    from workers.sweeper import settle_stale  # imports the broker-call machinery: only when logged in

    try:
        return settle_stale(account_name)
    except (BrokerError, ConfigError, redis.RedisError) as e:
        log.warning("login: account=%s: orders from earlier days not settled: %s", account_name, e)
        return 0


def login_now(account_name: str, force: bool = True, *, timeout_s: float = 30.0,
              instruments_inline: bool = False) -> dict[str, Any]:
    """Log the account in now (``brokergate login ACCOUNT``). ``force=False`` makes it the
    daily login: skipped when today's mark exists. Either way a missing or stale instrument
    master is then refreshed: enqueued on ``auth``, or here with ``instruments_inline`` (the
    CLI, whose next command may need it). Returns a summary without any token; with
    ``instruments_inline``, ``instruments`` is the count loaded (0: today's master was kept)."""
    r = get_redis()
    acct = account(account_name)
    day = tradingday.local_date(acct, server_time_ms(r)).isoformat()  # the day a login belongs to
    done = keys.login_done(account_name, day)
    summary: dict[str, Any]
    if not force and r.exists(done):
        cur = tokens.read_token(account_name, r)
        log.info("login: account=%s already logged in for %s; skipped", account_name, day)
        summary = {"account": account_name, "day": day, "skipped": True, "version": cur.version if cur else 0}
        if not instruments_inline:
            instruments.request_refresh_if_stale(account_name, r)
    else:
        cur = tokens.read_token(account_name, r)
        # The CLI (force) also skips the cooldown after a refused login; the daily run respects it,
        # so a duplicate daily task right after a refusal does not try the broker again.
        tok = tokens.relogin(account_name, cur.version if cur else 0, timeout_s, force=force,
                             refresh_instruments=not instruments_inline)
        r.set(done, str(tok.version), ex=DONE_TTL_S)
        summary = {"account": account_name, "day": day, "skipped": False, "version": tok.version,
                   "expires_at_ms": tok.expires_at_ms, "stale_settled": _settle_stale(account_name)}
    if instruments_inline:
        try:
            summary["instruments"] = instruments.refresh(account_name, r, if_stale=True)
        except BrokerGateError as e:
            # The login stands; the caller says the master is missing (and why).
            summary["instruments_error"] = f"{type(e).__name__}: {redact(str(e))}"
            log.warning("login: account=%s logged in, instruments not loaded: %s", account_name,
                        summary["instruments_error"])
    return summary


@shared_task(
    name=keys.LOGIN_TASK,
    throws=(LoginFailed,),
    autoretry_for=(BrokerUnavailable, RateLimited),
    retry_backoff=5,
    retry_backoff_max=120,
    max_retries=5,
    ignore_result=False,
)
def login(account: str, force: bool = False) -> dict[str, Any]:
    """The daily login of one account (Beat at its login_time; catch-up at Beat start)."""
    return login_now(account, force=force)


@shared_task(
    name=keys.REFRESH_INSTRUMENTS_TASK,
    autoretry_for=(BrokerUnavailable, RateLimited, TokenExpired),
    retry_backoff=5,
    retry_backoff_max=120,
    max_retries=5,
)
def refresh_instruments(account: str, max_age_s: float | None = None, if_stale: bool = False) -> int:
    """Download and store the account's instrument master; returns the count (0 when
    skipped: refreshed less than ``max_age_s`` ago, or ``if_stale`` and refreshed today)."""
    return instruments.refresh(account, max_age_s=max_age_s, if_stale=if_stale)


def login_concurrently(
    account_names: list[str],
    *,
    force: bool = True,
    timeout_s: float = 30.0,
    app: Any = None,
) -> dict[str, float]:
    """Enqueue ``brokergate.login`` for every account at once and wait until each has a
    new token version. Returns seconds from enqueue to the new version, per account
    (for the benchmark "every account logged in within 5 s of the Beat tick").
    Raises TimeoutError naming the accounts still waiting after ``timeout_s``."""
    app = app or current_app
    r = get_redis()
    before = {n: int(r.get(keys.token_version(n)) or 0) for n in account_names}
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.TOKEN_CHANGED)
    t0 = time.monotonic()
    try:
        for n in account_names:
            app.send_task(keys.LOGIN_TASK, args=[n], kwargs={"force": force}, queue=keys.AUTH_QUEUE)
        elapsed: dict[str, float] = {}
        while len(elapsed) < len(account_names):
            for n in account_names:
                if n not in elapsed and int(r.get(keys.token_version(n)) or 0) > before[n]:
                    elapsed[n] = time.monotonic() - t0
            left_s = timeout_s - (time.monotonic() - t0)
            if left_s <= 0:
                missing = sorted(set(account_names) - set(elapsed))
                raise TimeoutError(f"no new token within {timeout_s:.0f} s for: {', '.join(missing)}")
            if len(elapsed) < len(account_names):
                pubsub.get_message(timeout=min(0.1, left_s))
        return elapsed
    finally:
        pubsub.close()
