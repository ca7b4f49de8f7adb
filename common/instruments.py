"""The instrument master: ``EXCHANGE:SYMBOL`` <-> broker token, per account, in Redis.

Storage: hash :func:`keys.instruments` (``"NSE:INFY"`` -> JSON of
:meth:`Instrument.to_dict`) and hash :func:`keys.instrument_tokens` (token ->
``"NSE:INFY"``). :func:`refresh` downloads the broker's list (parsed by the pure
functions in ``common/brokers/<broker>/instruments.py``), writes both hashes under
temporary names and RENAMEs them over the live ones in one MULTI, so a reader sees the
old list or the new one, never half of either. The same transaction stamps
:func:`keys.instruments_meta` (``refreshed_at_ms``, ``count``).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable

import redis

from common import keys
from common.brokers import broker_module
from common.errors import BrokerGateError, TokenExpired
from common.models import Instrument
from common.redis import get_redis, server_time_ms
from common.settings import account

__all__ = ["age_s", "all_for", "by_token", "lookup", "refresh", "store"]

log = logging.getLogger(__name__)
_CHUNK = 5000
_TMP_TTL_S = 600  # a refresh that dies half-way leaves nothing behind for long


def store(account_name: str, instruments: Iterable[Instrument], r: redis.Redis | None = None) -> int:
    """Replace the account's instrument master atomically; returns the count stored."""
    r = r or get_redis()
    suffix = f":tmp:{uuid.uuid4().hex}"
    live_fwd, live_rev = keys.instruments(account_name), keys.instrument_tokens(account_name)
    tmp_fwd, tmp_rev = live_fwd + suffix, live_rev + suffix
    count = 0
    fwd: dict[str, str] = {}
    rev: dict[str, str] = {}
    try:
        with r.pipeline(transaction=False) as pipe:
            for inst in instruments:
                fwd[inst.key] = json.dumps(inst.to_dict(), separators=(",", ":"))
                rev[inst.token] = inst.key
                count += 1
                if len(fwd) >= _CHUNK:
                    pipe.hset(tmp_fwd, mapping=fwd).hset(tmp_rev, mapping=rev)
                    pipe.expire(tmp_fwd, _TMP_TTL_S).expire(tmp_rev, _TMP_TTL_S)
                    pipe.execute()
                    fwd, rev = {}, {}
            if fwd:
                pipe.hset(tmp_fwd, mapping=fwd).hset(tmp_rev, mapping=rev)
                pipe.execute()
        if count == 0:
            # An empty download is a broken download: keep yesterday's list.
            raise BrokerGateError(f"instrument master for {account_name}: the broker's list is empty")
        with r.pipeline(transaction=True) as tx:
            # RENAME carries the source's TTL along: PERSIST in the same transaction.
            tx.rename(tmp_fwd, live_fwd).rename(tmp_rev, live_rev).persist(live_fwd).persist(live_rev)
            tx.hset(
                keys.instruments_meta(account_name),
                mapping={"refreshed_at_ms": server_time_ms(r), "count": count},
            )
            # The feed re-maps its subscriptions: one subscribed before the master existed
            # (or before today's new contracts) resolves now, not at its next periodic reload.
            tx.publish(keys.FEED_CONTROL, account_name)
            tx.execute()
    finally:
        r.delete(tmp_fwd, tmp_rev)
    return count


def age_s(account_name: str, r: redis.Redis | None = None) -> float | None:
    """Seconds since the account's master was last refreshed, or None if never."""
    r = r or get_redis()
    at = r.hget(keys.instruments_meta(account_name), "refreshed_at_ms")
    return None if at is None else (server_time_ms(r) - int(at)) / 1000


def refresh(account_name: str, r: redis.Redis | None = None, *, max_age_s: float | None = None) -> int:
    """Download the account's instrument list and store it; returns the count stored, or
    0 when ``max_age_s`` is given and the master is younger than that (nothing downloaded).

    Uses the account's current token where the broker needs one; a refused token is
    renewed once through the single-flight :func:`common.tokens.relogin`."""
    from common import tokens

    if max_age_s is not None:
        age = age_s(account_name, r)
        if age is not None and age < max_age_s:
            log.info("instruments: account=%s refreshed %.0f s ago; skipped", account_name, age)
            return 0
    acct = account(account_name)
    mod = broker_module(acct.broker, "instruments")
    tok = tokens.get_token(account_name)
    try:
        items = mod.fetch(acct, tok.access_token if tok else None)
    except TokenExpired:
        tok = tokens.relogin(account_name, tok.version if tok else 0)
        items = mod.fetch(acct, tok.access_token)
    n = store(account_name, items, r)
    log.info("instruments refreshed: account=%s count=%d", account_name, n)
    return n


def lookup(account_name: str, key: str, r: redis.Redis | None = None) -> Instrument | None:
    """The instrument for ``"EXCHANGE:SYMBOL"`` (e.g. ``"NSE:INFY"``), or None."""
    raw = (r or get_redis()).hget(keys.instruments(account_name), key)
    return Instrument.from_dict(json.loads(raw)) if raw else None


def by_token(account_name: str, token: str | int, r: redis.Redis | None = None) -> Instrument | None:
    """The instrument for a broker token, or None."""
    r = r or get_redis()
    key = r.hget(keys.instrument_tokens(account_name), str(token))
    return lookup(account_name, key, r) if key else None


def all_for(account_name: str, r: redis.Redis | None = None) -> dict[str, Instrument]:
    """Every instrument of the account, by ``EXCHANGE:SYMBOL``."""
    raw = (r or get_redis()).hgetall(keys.instruments(account_name))
    return {k: Instrument.from_dict(json.loads(v)) for k, v in raw.items()}
