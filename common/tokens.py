"""The token store every process reads, and single-flight re-login.

Storage: the hash ``bg:token:<account>`` (:func:`common.keys.token`), expiring with the
token (PEXPIREAT), with ``access_token``, ``feed_token``, ``version``, ``issued_at_ms``,
``expires_at_ms``, ``user_id`` and whatever extras the broker's login returns (a refresh
token, a public token). Versions come from a counter that never expires, so they only grow.
Every new token is announced on :data:`common.keys.TOKEN_CHANGED` as ``"<account> <version>"``.

Reading: :func:`get_token` answers from an in-process cache. A daemon thread listens to
TOKEN_CHANGED and drops the account's entry the moment a new version is published; as a
safety net (a missed message while Redis reconnects) an entry is also re-read once it is
older than :data:`CACHE_TTL_S`. So a new token is seen within a few milliseconds, and in
the worst case within CACHE_TTL_S (0.5 s), without restarting anything.

Re-login: a worker that meets :class:`TokenExpired` calls ``relogin(account, token.version)``.
Exactly one caller across every process and host takes ``bg:login:lock:<account>``
(SET NX PX, released only by its owner) and logs in; the others wait for the new version
(pub/sub, re-checking Redis at least every 250 ms) and go on. A refused credential is
remembered in ``bg:login:error:<account>``: waiters raise :class:`LoginFailed` at once,
and automatic re-logins stay off for :data:`LOGIN_FAILED_COOLDOWN_S` (no retry storm
against a broker that locks accounts after repeated failures); ``force=True`` (the daily
task, the CLI) tries anyway.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis

from common import keys
from common.errors import BrokerUnavailable, LoginFailed, RateLimited
from common.logs import redact, register_secrets
from common.lua import LuaScript, release_lock, script_text
from common.ratelimit import Limiter
from common.redis import as_text, get_redis, server_time_ms, text_hash
from common.settings import Account, account

__all__ = [
    "CACHE_TTL_S",
    "Token",
    "get_token",
    "last_login_error",
    "login_and_store",
    "read_token",
    "relogin",
    "store_token",
]

log = logging.getLogger(__name__)

CACHE_TTL_S = 0.5
LOGIN_DEADLINE_S = 20.0
MIN_LOGIN_DEADLINE_S = 5.0
LOGIN_FAILED_COOLDOWN_S = 300.0
_WAIT_POLL_S = 0.25
_CORE_FIELDS = ("access_token", "feed_token", "version", "issued_at_ms", "expires_at_ms", "user_id")

# Atomic (common/lua/token_store.lua).
_STORE = LuaScript(script_text("token_store"), durable=True)  # a lost token is a lost login


@dataclass(frozen=True, slots=True)
class Token:
    """One account's session. Token values never appear in its repr."""

    account: str
    access_token: str = field(repr=False)
    feed_token: str = field(repr=False)
    version: int
    issued_at_ms: int
    expires_at_ms: int
    extra: dict[str, str] = field(default_factory=dict, repr=False)
    user_id: str = ""

    def expired(self) -> bool:
        return int(time.time() * 1000) >= self.expires_at_ms

    @classmethod
    def from_hash(cls, account_name: str, h: dict[str, str]) -> Token:
        return cls(
            account=account_name,
            access_token=h.get("access_token", ""),
            feed_token=h.get("feed_token", ""),
            version=int(h.get("version", 0)),
            issued_at_ms=int(h.get("issued_at_ms", 0)),
            expires_at_ms=int(h.get("expires_at_ms", 0)),
            extra={k: v for k, v in h.items() if k not in _CORE_FIELDS},
            user_id=h.get("user_id", ""),
        )


# ---- writing ---------------------------------------------------------------------------
def store_token(
    account_name: str,
    *,
    access_token: str,
    expires_at_ms: int,
    feed_token: str = "",
    issued_at_ms: int | None = None,
    user_id: str = "",
    extra: dict[str, Any] | None = None,
    r: redis.Redis | None = None,
) -> Token:
    """Store a new token (version + 1), expiring at ``expires_at_ms``, and publish
    ``"<account> <version>"`` on TOKEN_CHANGED. Returns the stored Token."""
    r = r or get_redis()
    if issued_at_ms is None:
        issued_at_ms = server_time_ms(r)
    extras = {str(k): str(v) for k, v in (extra or {}).items() if v is not None and k not in _CORE_FIELDS}
    register_secrets([access_token, feed_token, *(v for k, v in extras.items() if k.endswith("token"))])
    fields = {
        "access_token": access_token,
        "feed_token": feed_token,
        "issued_at_ms": str(issued_at_ms),
        "expires_at_ms": str(expires_at_ms),
        "user_id": user_id,
        **extras,
    }
    flat: list[str] = [x for kv in fields.items() for x in kv]
    version = int(_STORE(r, [keys.token(account_name), keys.token_version(account_name)],
                         [str(expires_at_ms), keys.TOKEN_CHANGED, account_name, *flat]))
    tok = Token(account_name, access_token, feed_token, version, issued_at_ms, expires_at_ms, extras, user_id)
    _cache_put(account_name, tok)
    return tok


# ---- reading ---------------------------------------------------------------------------
def read_token(account_name: str, r: redis.Redis | None = None) -> Token | None:
    """The stored token straight from Redis (no cache); None when absent or expired."""
    h = text_hash((r or get_redis()).hgetall(keys.token(account_name)))
    if not h or not h.get("access_token"):
        return None
    tok = Token.from_hash(account_name, h)
    # Issued by another process (the auth worker): this one must redact it from its logs too.
    register_secrets([tok.access_token, tok.feed_token, *(v for k, v in tok.extra.items() if k.endswith("token"))])
    return None if tok.expired() else tok


_cache_lock = threading.Lock()
_cache: dict[str, tuple[Token | None, float]] = {}  # account -> (token, monotonic read time)
_listener: threading.Thread | None = None
_listener_pid = 0


def _cache_put(account_name: str, tok: Token | None) -> None:
    with _cache_lock:
        _cache[account_name] = (tok, time.monotonic())


def _invalidate() -> None:
    with _cache_lock:
        _cache.clear()


def _listen() -> None:
    """Drop cache entries as new versions are announced; reconnect forever."""
    backoff_s = 0.05
    while True:
        pubsub = None
        try:
            pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(keys.TOKEN_CHANGED)
            # Anything published while we were not subscribed is unknown: start clean.
            _invalidate()
            backoff_s = 0.05
            while True:
                msg = pubsub.get_message(timeout=5.0)
                if msg is None:
                    continue
                name, _, version = as_text(msg["data"]).partition(" ")
                with _cache_lock:
                    hit = _cache.get(name)
                    if hit is not None and (
                        hit[0] is None or not version.isdigit() or hit[0].version < int(version)
                    ):
                        _cache.pop(name, None)
        except Exception:  # connection lost, client reset: the TTL covers the gap
            _invalidate()
            time.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, 2.0)
        finally:
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    pubsub.close()


def _ensure_listener() -> None:
    global _listener, _listener_pid
    pid = os.getpid()
    if _listener is not None and _listener_pid == pid and _listener.is_alive():
        return
    with _cache_lock:
        if _listener is not None and _listener_pid == pid and _listener.is_alive():
            return
        if _listener_pid != pid:
            _cache.clear()  # a forked child must not trust its parent's cache
        _listener_pid = pid
        _listener = threading.Thread(target=_listen, name="bg-token-listener", daemon=True)
        _listener.start()


def get_token(account_name: str) -> Token | None:
    """The account's current token, or None (never logged in, or expired).

    Cached in-process; a new version is seen within milliseconds (pub/sub) and at worst
    within CACHE_TTL_S. Costs one HGETALL per account per CACHE_TTL_S at most."""
    _ensure_listener()
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(account_name)
    if hit is not None and now - hit[1] < CACHE_TTL_S and (hit[0] is None or not hit[0].expired()):
        return hit[0]
    tok = read_token(account_name)
    with _cache_lock:
        cur = _cache.get(account_name)
        # A concurrent store may have put a newer token meanwhile: never go backwards.
        if cur is None or cur[0] is None or tok is None or cur[0].version <= tok.version:
            _cache[account_name] = (tok, now)
    return tok


# ---- logging in --------------------------------------------------------------------------
def last_login_error(account_name: str, r: redis.Redis | None = None) -> dict[str, str]:
    """The last login failure (``at_ms``, ``type``, ``message``), or {} after a success."""
    return text_hash((r or get_redis()).hgetall(keys.login_error(account_name)))


def _failed(r: redis.Redis, acct: Account, exc: BaseException, why: str) -> None:
    """A login given up: logged, and remembered for the waiters and ``brokergate status``."""
    with contextlib.suppress(redis.RedisError):
        r.hset(keys.login_error(acct.name), mapping={
            "at_ms": str(server_time_ms(r)), "type": type(exc).__name__,
            "message": redact(str(exc)), "broker": acct.broker,
        })  # fmt: skip
    log.error("login failed: account=%s broker=%s: %s (%s)", acct.name, acct.broker, exc, why)


def _login_slot(r: redis.Redis, limiter: Limiter, deadline: float) -> int:
    """Wait for a slot of the account's ``login`` caps (some brokers allow one login a
    second) in the shared limiter, so a re-login right after a login is spaced out instead
    of refused. Returns the slot, to be confirmed when the login's answer is back."""
    from common.errors import DeadlineExceeded

    if not limiter.budgets:
        return 0
    deadline_ms = server_time_ms(r) + int(max(0.0, deadline - time.monotonic()) * 1000)
    try:
        return limiter.acquire(deadline_ms)
    except DeadlineExceeded as e:
        raise BrokerUnavailable(f"login: no login slot before the deadline: {e}") from None


def login_and_store(
    acct: Account,
    *,
    deadline_s: float = LOGIN_DEADLINE_S,
    r: redis.Redis | None = None,
) -> Token:
    """Run the broker's login flow once (retrying only BrokerUnavailable and RateLimited,
    until ``deadline_s``), store the token and return it. Not single-flight by itself:
    callers go through :func:`relogin` (or hold the login lock)."""
    from common.brokers import broker

    r = r or get_redis()
    flow = broker(acct.broker).login
    limiter = Limiter.for_account(r, acct, "login")
    deadline = time.monotonic() + deadline_s
    attempt = 0
    t0 = time.monotonic()
    while True:
        attempt += 1
        try:
            slot_us = _login_slot(r, limiter, deadline)
            # The login may leave long after its slot (a TOTP about to roll over waits for the
            # next step): count it from its answer, so the next login is spaced from when the
            # broker really saw this one.
            with limiter.used(slot_us):
                fields = flow.login(acct)
            break
        except LoginFailed as e:
            _failed(r, acct, e, "not retried: fix the credentials")
            raise
        except (BrokerUnavailable, RateLimited) as e:
            delay_s = min(2.0, 0.2 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            if isinstance(e, RateLimited):
                delay_s = max(delay_s, e.retry_after_s)
                with contextlib.suppress(Exception):
                    limiter.note_rate_limited(e.retry_after_s)
            if time.monotonic() + delay_s > deadline:
                _failed(r, acct, e, f"gave up after {attempt} attempts")
                raise
            log.warning("login attempt %d: account=%s: %s; retrying in %.2fs", attempt, acct.name, e, delay_s)
            time.sleep(delay_s)
        except Exception as e:
            _failed(r, acct, e, type(e).__name__)
            raise
    access = str(fields.pop("access_token"))
    feed = str(fields.pop("feed_token", "") or "")
    user_id = str(fields.pop("user_id", "") or acct.user_id)
    now_ms = server_time_ms(r)
    tok = store_token(acct.name, access_token=access, feed_token=feed, issued_at_ms=now_ms,
                      expires_at_ms=int(flow.token_expiry_ms(now_ms)), user_id=user_id, extra=fields, r=r)  # fmt: skip
    r.delete(keys.login_error(acct.name))
    log.info("login ok: account=%s broker=%s version=%d in %.0f ms (attempts %d)",
             acct.name, acct.broker, tok.version, (time.monotonic() - t0) * 1000, attempt)  # fmt: skip
    return tok


def relogin(account_name: str, stale_version: int, timeout_s: float = 20, *, force: bool = False,
            refresh_instruments: bool = True) -> Token:
    """A token newer than ``stale_version``, logging in at most once across every process.

    If the stored version is already newer, return it. Otherwise one caller takes the
    login lock and logs in while the others wait for the new version. ``timeout_s`` bounds
    the wait; the caller that logs in returns when its login ends (retries get at least
    MIN_LOGIN_DEADLINE_S, since the login serves every waiter). After its login, the caller
    that logged in asks the ``auth`` queue to refresh a missing or stale instrument master
    (``refresh_instruments=False``: the caller does it itself). Raises
    :class:`LoginFailed` (credentials refused, now or within the cooldown unless
    ``force``) or :class:`BrokerUnavailable` (no new token within ``timeout_s``)."""
    r = get_redis()
    deadline = time.monotonic() + timeout_s
    cur = read_token(account_name, r)
    if cur is not None and cur.version > stale_version:
        _cache_put(account_name, cur)
        return cur
    acct = account(account_name)
    started_ms = server_time_ms(r)
    if not force:
        err = last_login_error(account_name, r)
        if (
            err.get("type") == "LoginFailed"
            and started_ms - int(err.get("at_ms", 0)) < LOGIN_FAILED_COOLDOWN_S * 1000
        ):
            raise LoginFailed(
                f"{err.get('message', 'login failed')} (not retried for {LOGIN_FAILED_COOLDOWN_S:.0f} s)"
            )
    lock_key = keys.login_lock(account_name)
    me = uuid.uuid4().hex
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.TOKEN_CHANGED)  # before the checks below, so no announcement slips by
    try:
        while True:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise BrokerUnavailable(f"no new token for {account_name} within {timeout_s:.0f} s")
            # The login works for every waiter, so a caller with little time left (an order
            # near its deadline) does not cut its retries short; the lock outlives the login's
            # deadline, so it never lapses mid-login, and lapses soon after a holder dies.
            login_deadline_s = max(remaining_s, MIN_LOGIN_DEADLINE_S)
            if r.set(lock_key, me, nx=True, px=int((login_deadline_s + 10) * 1000)):
                try:
                    cur = read_token(account_name, r)
                    if cur is not None and cur.version > stale_version:
                        _cache_put(account_name, cur)
                        return cur
                    tok = login_and_store(acct, deadline_s=login_deadline_s, r=r)
                finally:
                    release_lock(r, lock_key, me)
                if refresh_instruments:
                    _ask_for_instruments(account_name, r)
                return tok
            # Someone else is logging in: wait for their token, their failure, or the lock to lapse.
            while True:
                cur = read_token(account_name, r)
                if cur is not None and cur.version > stale_version:
                    _cache_put(account_name, cur)
                    return cur
                err = last_login_error(account_name, r)
                if err.get("type") == "LoginFailed" and int(err.get("at_ms", 0)) >= started_ms:
                    raise LoginFailed(err.get("message", "login failed"))
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0 or not r.exists(lock_key):
                    break  # out of time (the loop raises), or the holder gave up or died: try ourselves
                pubsub.get_message(timeout=min(_WAIT_POLL_S, remaining_s))
    finally:
        with contextlib.suppress(Exception):
            pubsub.close()


def _ask_for_instruments(account_name: str, r: redis.Redis) -> None:
    """After a login: a missing or stale master gets refreshed by the ``auth`` queue, and the
    account's positions, holdings, funds and trades are read again by the ``default`` queue (not
    here: a re-login may sit on an order's path). The login stands even if asking fails."""
    from common import instruments
    from common.client import send_task_by_name

    try:
        instruments.request_refresh_if_stale(account_name, r)
        send_task_by_name(keys.ACCOUNT_STATE_TASK, args=[account_name], queue=keys.DEFAULT_QUEUE)
    except Exception as e:
        log.warning("login: account=%s: could not ask for an instrument or account-state refresh: %s",
                    account_name, redact(str(e)))


def _reset_for_tests() -> None:
    """Forget the cache (the listener keeps running and reconnects by itself)."""
    _invalidate()
