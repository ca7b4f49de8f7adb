"""The instrument master: ``EXCHANGE:SYMBOL`` <-> broker token, per account, in Redis.

Storage: hash :func:`keys.instruments` (``"NSE:INFY"`` -> JSON of
:meth:`Instrument.to_dict`) and hash :func:`keys.instrument_tokens` (``"NSE|<token>"`` ->
``"NSE:INFY"``: tokens repeat across segments at some brokers). :func:`refresh` downloads the broker's list (parsed by the pure
functions in ``common/brokers/<broker>/instruments.py``), writes both hashes under
temporary names and RENAMEs them over the live ones in one MULTI, so a reader sees the
old list or the new one, never half of either. The same transaction stamps
:func:`keys.instruments_meta` (``refreshed_at_ms``, ``count``).

Every login path leaves the account with a master that is not stale (:func:`is_stale`: missing,
or from an earlier day): ``brokergate login`` refreshes it in its own process, and a login in
a worker (the daily login, a re-login after a refused token) asks the ``auth`` queue for a
refresh (:func:`request_refresh_if_stale`), so no order waits on a download.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any

import redis

from common import keys, tradingday
from common.brokers import broker
from common.errors import BrokerGateError, TokenExpired
from common.models import EXCHANGES, Instrument
from common.redis import HashFields, as_text, get_redis, server_time_ms
from common.settings import account

__all__ = [
    "age_s", "all_for", "by_token", "contracts", "expiries", "is_stale", "lookup", "lookup_many", "refresh",
    "request_refresh_if_stale", "store", "token_field", "unknown",
]  # fmt: skip

log = logging.getLogger(__name__)
_CHUNK = 5000
_TMP_TTL_S = 600  # a refresh that dies half-way leaves nothing behind for long


def store(account_name: str, instruments: Iterable[Instrument], r: redis.Redis | None = None) -> int:
    """Replace the account's instrument master atomically; returns the count stored."""
    r = r or get_redis()
    suffix = f":tmp:{uuid.uuid4().hex}"
    live_fwd, live_rev = keys.instruments(account_name), keys.instrument_tokens(account_name)
    live_chains = keys.instrument_chains(account_name)
    tmp_fwd, tmp_rev, tmp_chains = live_fwd + suffix, live_rev + suffix, live_chains + suffix
    count = 0
    fwd: HashFields = {}
    rev: HashFields = {}
    chains = _Chains()
    try:
        with r.pipeline(transaction=False) as pipe:
            for inst in instruments:
                fwd[inst.key] = json.dumps(inst.to_dict(), separators=(",", ":"))
                rev[token_field(inst.exchange, inst.token)] = inst.key
                chains.add(inst)
                count += 1
                if len(fwd) >= _CHUNK:
                    pipe.hset(tmp_fwd, mapping=fwd)
                    pipe.hset(tmp_rev, mapping=rev)
                    pipe.expire(tmp_fwd, _TMP_TTL_S)
                    pipe.expire(tmp_rev, _TMP_TTL_S)
                    pipe.execute()
                    fwd, rev = {}, {}
            if fwd:
                pipe.hset(tmp_fwd, mapping=fwd)
                pipe.hset(tmp_rev, mapping=rev)
                pipe.execute()
            chain_fields = chains.fields()
            if chain_fields:
                pipe.hset(tmp_chains, mapping=chain_fields)
                pipe.expire(tmp_chains, _TMP_TTL_S)
                pipe.execute()
        if count == 0:
            # An empty download is a broken download: keep yesterday's list.
            raise BrokerGateError(f"instrument master for {account_name}: the broker's list is empty")
        with r.pipeline(transaction=True) as tx:
            # RENAME carries the source's TTL along: PERSIST in the same transaction.
            tx.rename(tmp_fwd, live_fwd)
            tx.rename(tmp_rev, live_rev)
            tx.persist(live_fwd)
            tx.persist(live_rev)
            if chain_fields:
                tx.rename(tmp_chains, live_chains)
                tx.persist(live_chains)
            else:
                tx.delete(live_chains)
            tx.hset(
                keys.instruments_meta(account_name),
                mapping={"refreshed_at_ms": server_time_ms(r), "count": count},
            )
            # The feed re-maps its subscriptions: one subscribed before the master existed
            # (or before today's new contracts) resolves now, not at its next periodic reload.
            tx.publish(keys.FEED_CONTROL, account_name)
            tx.execute()
    finally:
        r.delete(tmp_fwd, tmp_rev, tmp_chains)
    return count


class _Chains:
    """The derivative index of a master while it is stored: per underlying its expiries, per
    expiry its options and future, so an option chain is one hash field, not a scan."""

    def __init__(self) -> None:
        self.expiries: dict[str, dict[str, set[str]]] = {}
        self.contracts: dict[str, dict[str, Any]] = {}

    def add(self, inst: Instrument) -> None:
        if inst.kind not in ("future", "option") or inst.expiry is None:
            return
        base = f"{inst.exchange}:{inst.underlying}"
        when = inst.expiry.isoformat()
        self.expiries.setdefault(base, {}).setdefault(when, set()).add(inst.kind)
        entry = self.contracts.setdefault(f"{base}:{when}", {"options": [], "future": ""})
        if inst.kind == "future":
            entry["future"] = inst.symbol
        else:
            entry["options"].append([str(inst.strike), inst.right, inst.symbol])

    def fields(self) -> HashFields:
        out: HashFields = {}
        for base, by_expiry in self.expiries.items():
            out[base] = json.dumps({e: sorted(k) for e, k in sorted(by_expiry.items())}, separators=(",", ":"))
        for key, entry in self.contracts.items():
            entry["options"].sort(key=lambda o: (Decimal(o[0]), o[1]))
            out[key] = json.dumps(entry, separators=(",", ":"))
        return out


def expiries(account_name: str, underlying: str, exchange: str = "NFO",
             r: redis.Redis | None = None) -> dict[date, list[str]]:
    """The live expiries of ``underlying``'s contracts in the account's master, each with the kinds
    listed on it (``future``, ``option``), soonest first."""
    raw = (r or get_redis()).hget(keys.instrument_chains(account_name), f"{exchange}:{underlying.upper()}")
    return {date.fromisoformat(e): k for e, k in json.loads(raw).items()} if raw else {}


def contracts(account_name: str, underlying: str, expiry: date, exchange: str = "NFO",
              r: redis.Redis | None = None) -> dict[str, Any]:
    """The contracts of one expiry: ``{"options": [[strike, right, symbol], ...], "future": symbol}``
    (strikes ascending; empty when the master lists none)."""
    raw = (r or get_redis()).hget(keys.instrument_chains(account_name),
                                  f"{exchange}:{underlying.upper()}:{expiry.isoformat()}")
    return json.loads(raw) if raw else {"options": [], "future": ""}


def lookup_many(account_name: str, keys_: list[str], r: redis.Redis | None = None) -> list[Instrument | None]:
    """The instruments of ``keys_`` ("EXCHANGE:SYMBOL"), None where the master has none; one round trip."""
    if not keys_:
        return []
    raw = (r or get_redis()).hmget(keys.instruments(account_name), keys_)
    return [Instrument.from_dict(json.loads(v)) if v else None for v in raw]


def age_s(account_name: str, r: redis.Redis | None = None) -> float | None:
    """Seconds since the account's master was last refreshed, or None if never."""
    r = r or get_redis()
    at = r.hget(keys.instruments_meta(account_name), "refreshed_at_ms")
    return None if at is None else (server_time_ms(r) - int(at)) / 1000


def is_stale(account_name: str, r: redis.Redis | None = None) -> bool:
    """Whether the account's master is missing, or was refreshed before today began in the
    account's time zone: brokers publish a new list every trading day (new contracts, expired
    ones gone), so yesterday's list refuses today's symbols."""
    r = r or get_redis()
    at = r.hget(keys.instruments_meta(account_name), "refreshed_at_ms")
    if at is None or not r.exists(keys.instruments(account_name)):
        return True
    return int(at) < tradingday.day_start_ms(account(account_name), server_time_ms(r))


def request_refresh_if_stale(account_name: str, r: redis.Redis | None = None) -> bool:
    """Enqueue a refresh of a stale master on the ``auth`` queue (by task name; the refresh
    checks again when it runs, so a duplicate request costs one Redis read). Returns whether
    one was enqueued."""
    if not is_stale(account_name, r):
        return False
    from common.client import send_task_by_name

    send_task_by_name(keys.REFRESH_INSTRUMENTS_TASK, kwargs={"if_stale": True}, queue=keys.AUTH_QUEUE, args=[account_name])
    log.info("instruments: account=%s master missing or stale: refresh requested", account_name)
    return True


def refresh(account_name: str, r: redis.Redis | None = None, *, max_age_s: float | None = None,
            if_stale: bool = False) -> int:
    """Download the account's instrument list and store it; returns the count stored, or
    0 when nothing was downloaded: ``max_age_s`` is given and the master is younger than that,
    or ``if_stale`` and the master is not stale (:func:`is_stale`).

    Uses the account's current token where the broker needs one; a refused token is
    renewed once through the single-flight :func:`common.tokens.relogin`."""
    from common import tokens

    if if_stale and not is_stale(account_name, r):
        log.info("instruments: account=%s refreshed today; skipped", account_name)
        return 0
    if max_age_s is not None:
        age = age_s(account_name, r)
        if age is not None and age < max_age_s:
            log.info("instruments: account=%s refreshed %.0f s ago; skipped", account_name, age)
            return 0
    acct = account(account_name)
    source = broker(acct.broker).instruments
    tok = tokens.get_token(account_name)
    try:
        items = source.fetch(acct, tok.access_token if tok else None)
    except TokenExpired:
        # This is the refresh: the re-login need not ask for another.
        tok = tokens.relogin(account_name, tok.version if tok else 0, refresh_instruments=False)
        items = source.fetch(acct, tok.access_token)
    n = store(account_name, items, r)
    log.info("instruments refreshed: account=%s count=%d", account_name, n)
    return n


def lookup(account_name: str, key: str, r: redis.Redis | None = None) -> Instrument | None:
    """The instrument for ``"EXCHANGE:SYMBOL"`` (e.g. ``"NSE:INFY"``), or None."""
    return lookup_many(account_name, [key], r)[0]


def unknown(account_name: str, keys_: Iterable[str], r: redis.Redis | None = None) -> list[str]:
    """Those of ``keys_`` ("EXCHANGE:SYMBOL") that the account's loaded master does not know;
    [] when no master is loaded (nothing can be judged: the feed maps them once it is)."""
    r = r or get_redis()
    wanted = list(keys_)
    if not wanted or not r.exists(keys.instruments(account_name)):
        return []
    found = r.hmget(keys.instruments(account_name), wanted)
    return [k for k, v in zip(wanted, found, strict=True) if v is None]


def token_field(exchange: str, token: str | int) -> str:
    """The reverse map's field: tokens repeat across segments at some brokers (an NFO token can be
    an NSE one at some brokers), so the exchange is part of it."""
    return f"{exchange}|{token}"


def by_token(account_name: str, token: str | int, r: redis.Redis | None = None, *,
             exchange: str | None = None) -> Instrument | None:
    """The instrument for a broker token on ``exchange``, or None; without ``exchange``, the one
    instrument of any exchange with that token (None when none, or several)."""
    r = r or get_redis()
    names = [exchange] if exchange else sorted(EXCHANGES)
    found = [k for k in r.hmget(keys.instrument_tokens(account_name), [token_field(e, token) for e in names]) if k]
    return lookup(account_name, as_text(found[0]), r) if len(found) == 1 else None


def all_for(account_name: str, r: redis.Redis | None = None) -> dict[str, Instrument]:
    """Every instrument of the account, by ``EXCHANGE:SYMBOL``."""
    raw = (r or get_redis()).hgetall(keys.instruments(account_name))
    return {as_text(k): Instrument.from_dict(json.loads(v)) for k, v in raw.items()}
