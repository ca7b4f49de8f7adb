"""The health snapshot: :func:`gather` reads it from Redis and Celery, one reader per component.

The only part of ``brokergate status`` and the metrics endpoint that does I/O; it returns a
plain, JSON-ready dict that :func:`common.health.evaluate` judges.

Snapshot shape (every time in ms of Redis server time; every age in seconds)::

    {
      "now_ms": 1764080000000,
      "redis": {"appendonly": "yes", "maxmemory_policy": "noeviction",   # absent when CONFIG is refused
                "topology": {"mode": "sentinel", "primary": "10.0.0.1:6379", "replicas": [...], ...}},
                # common/redistopology.py
      "accounts": {
        "acct1": {
          "broker": "<broker>",
          "token": {"present": true, "issued_at_ms": ..., "expires_at_ms": ..., "ttl_s": ..., "version": "3"},
          "login_error": {"at_ms": ..., "type": "LoginFailed", "message": "..."} | null,
          "queues": ["orders.acct1", "orders.acct1.urgent"],
          "limiter": {"orders": {"10/s": 3, "400/min": 57}, ...},   # requests in each window now
          "limiter_scope": "<broker>:user:AB1234",   # whose requests the broker counts together
          "limiter_shared_with": ["acct3"],      # other accounts of that scope: the same usage
          "backoff_s": {"orders": 0.8},          # only classes in backoff
          "stats": {"rate_limited": "0", ...},
          "feed_subscriptions": 3,
          "order_egress": "default",   # or "source 203.0.113.7", "proxy http://proxy:3128" (no password)
        }, ...
      },
      "queues": {"orders.acct1": {"depth": 0}, "auth": {"depth": 0}, ...},
      "unacked": 0,
      "workers": {"orders-acct1@host": {"queues": ["orders.acct1", "orders.acct1.urgent"]}} | null,
      "feed": [{"key": ..., "account": "acct1", "socket": 0, "connected": true, "last_frame_ms": ...,
                "last_frame_age_s": 0.2, "ticks": 1234, "tick_rate_per_s": 10.0, "reconnects": 0, ...}],
      "order_sockets": [{"account": "acct2", "connected": true, "last_frame_age_s": 1.2, "messages": 4, ...}],
      "receiver": {"present": true, "last_postback_ms": ..., "last_postback_age_s": ..., "accepted": 3, ...},
      "beat": {"heartbeat_ms": ..., "heartbeat_age_s": ..., "lock_held": true, "lock_ttl_s": 55.0},
      "errors": ["workers: inspect failed: ..."]
    }

``workers`` is ``null`` when no worker could be asked (Celery unreachable); that counts
as "no consumer" for every queue. Secrets are never read: of a token hash only its
times and version are fetched.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from common import keys
from common.ratelimit import usage
from common.redis import as_text, server_time_ms, text_hash

if TYPE_CHECKING:
    from common.settings import Account

__all__ = ["expected_queues", "gather", "queue_depth", "scrub"]

_FEED_HB_PREFIX = f"{keys.PREFIX}hb:feed:"


def _to_ms(value: Any) -> int | None:
    """A stored time (epoch ms, as every writer stores it); None when absent or not a number."""
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _age_s(now_ms: int, at_ms: int | None) -> float | None:
    return None if at_ms is None else round(max(0, now_ms - at_ms) / 1000, 3)


# "Bearer <jwt>", and "token <api_key>:<access_token>" authorization schemes
_CREDENTIAL_SCHEMES = re.compile(r"(?i)\b(bearer)\s+[^\s,;\"']+|\b(token)\s+[^\s:,;\"']+:[^\s,;\"']+")
_CREDENTIAL_FIELDS = re.compile(
    r"(?i)(access_token|feed_token|refresh_token|enctoken|jwt|api_secret|password|totp\w*)([=:]\s*)[^\s&,;\"']+"
)


def scrub(text: str) -> str:
    """Free text from heartbeats and errors, with anything that looks like a credential
    (``access_token=...``, ``Bearer ...``) and every registered secret replaced by ``***``."""
    from common.logs import redact

    text = _CREDENTIAL_SCHEMES.sub(lambda m: f"{m.group(1) or m.group(2)} ***", redact(text))
    return _CREDENTIAL_FIELDS.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


def _num(v: Any) -> Any:
    if isinstance(v, str) and not v.replace(".", "", 1).lstrip("-").isdigit():
        return scrub(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return int(f) if f.is_integer() else f


def queue_depth(r: Any, queue: str) -> int:
    """Messages waiting in a Celery queue on the Redis transport, every priority list summed."""
    pipe = r.pipeline(transaction=False)
    for n in keys.queue_lists(queue):
        pipe.llen(n)
    return sum(int(x or 0) for x in pipe.execute())


def expected_queues(account_names: Iterable[str], app: Any = None) -> list[str]:
    """Every queue that must have a consumer: each account's orders and urgent queues,
    ``auth`` and ``default``, plus any queue the Celery app declares."""
    qs: list[str] = []
    for a in account_names:
        qs += [keys.orders_queue(a), keys.urgent_queue(a)]
    qs += [keys.AUTH_QUEUE, keys.DEFAULT_QUEUE]
    declared = getattr(getattr(app, "conf", None), "task_queues", None) if app is not None else None
    for q in declared or ():
        name = getattr(q, "name", q)
        if isinstance(name, str) and name not in qs:
            qs.append(name)
    return qs


def _feed_sample(r: Any) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for key in r.scan_iter(match=f"{_FEED_HB_PREFIX}*", count=500):
        h = r.hgetall(key)
        if h:
            out[as_text(key)] = text_hash(h)
    return out


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def _read_workers(app: Any, ask_workers: bool, timeout_s: float, errors: list[str]) -> dict[str, Any] | None:
    """The live workers and their queues; ``None`` (no consumer anywhere) when none could be asked."""
    if not ask_workers:
        return None
    if app is None:
        errors.append("workers: the Celery app (workers.app) is not importable")
        return None
    try:
        replies = app.control.inspect(timeout=timeout_s).active_queues()
    except Exception as e:  # the broker itself is unreachable
        errors.append(f"workers: inspect failed: {type(e).__name__}: {e}")
        return None
    return {host: {"queues": sorted(q.get("name") for q in qs or [])} for host, qs in (replies or {}).items()}


def _read_token(r: Any, name: str, now_ms: int) -> dict[str, Any]:
    """The token's times and version; never the secret fields."""
    th = r.hmget(keys.token(name), "issued_at_ms", "expires_at_ms", "version")
    present = bool(r.exists(keys.token(name)))
    ttl_ms = r.pttl(keys.token(name)) if present else -2
    token = {
        "present": present,
        "issued_at_ms": _to_ms(th[0]),
        "expires_at_ms": _to_ms(th[1]) or (now_ms + ttl_ms if ttl_ms and ttl_ms > 0 else None),
        "ttl_s": round(ttl_ms / 1000, 3) if ttl_ms and ttl_ms > 0 else None,
        "version": th[2],
    }
    if present:
        token["age_s"] = _age_s(now_ms, token["issued_at_ms"])
    return token


def _read_login_error(r: Any, name: str) -> dict[str, Any] | None:
    le = r.hgetall(keys.login_error(name))
    if not le:
        return None
    return {
        "at_ms": _to_ms(le.get("at_ms")),
        "type": le.get("type", ""),
        "message": scrub(le.get("message", "")),
    }


def _read_limiter(
    r: Any, name: str, caps: Mapping[str, Any], scope: str, errors: list[str]
) -> tuple[dict[str, Any], dict[str, float]]:
    """Requests in each window of each endpoint class now ({"10/s": 3, "400/min": 57}, in the state
    of ``scope``, shared by every account the broker counts as one), and the classes in backoff
    (seconds left)."""
    limiter: dict[str, Any] = {}
    backoff: dict[str, float] = {}
    for cls in sorted(caps):
        if cls != "orders" and not r.exists(keys.limit(scope, cls)):
            continue  # show a class once it has been used; orders always
        try:
            limiter[cls] = {str(cap): int(n) for cap, n in usage(name, cls, r=r, caps=tuple(caps[cls]), scope=scope)}
        except Exception as e:
            errors.append(f"limiter {name}/{cls}: {type(e).__name__}: {e}")
        left = r.pttl(keys.backoff(scope, cls))
        if left and left > 0:
            backoff[cls] = round(left / 1000, 3)
    return limiter, backoff


def _read_account(
    r: Any, name: str, acct: Account, scopes: Mapping[str, str], now_ms: int, errors: list[str]
) -> dict[str, Any]:
    token = _read_token(r, name, now_ms)
    login_error = _read_login_error(r, name)
    scope = scopes[name]
    limiter, backoff = _read_limiter(r, name, acct.caps, scope, errors)
    subs = 0
    with contextlib.suppress(Exception):
        subs = int(r.hlen(keys.feed_subs(name)))
    return {
        "broker": acct.broker,
        "token": token,
        "login_error": login_error,
        "queues": [keys.orders_queue(name), keys.urgent_queue(name)],
        "limiter": limiter,
        "limiter_scope": scope,
        "limiter_shared_with": sorted(n for n, s in scopes.items() if s == scope and n != name),
        "backoff_s": backoff,
        "stats": {k: _num(v) for k, v in (r.hgetall(keys.stats(name)) or {}).items()},
        "feed_subscriptions": subs,
        "halt": _read_halt(r, name),
        "order_egress": _order_egress(acct),
    }


def _order_egress(acct: Account) -> str:
    """Where the account's order requests leave from (its extras; never a proxy's password)."""
    from common.brokers.egress import OrderEgress

    return OrderEgress.of(acct.extra).describe()


def _read_halt(r: Any, name: str) -> dict[str, Any] | None:
    """The kill switch's halt in force on the account (its own, else every account's), or None."""
    from common.safety import halted

    h = halted(name, r)
    return None if h is None else {"scope": h.scope, "reason": h.reason, "at_ms": h.at_ms, "by": h.by}


def _read_accounts(r: Any, accounts: Mapping[str, Account], now_ms: int, errors: list[str]) -> dict[str, Any]:
    scopes = {name: acct.limit_scope() for name, acct in accounts.items()}
    return {name: _read_account(r, name, acct, scopes, now_ms, errors) for name, acct in sorted(accounts.items())}


def _read_queues(r: Any, accounts: Mapping[str, Any], app: Any) -> tuple[dict[str, Any], int]:
    """Each expected queue's depth, and the messages delivered and not yet acknowledged."""
    queues = {q: {"depth": queue_depth(r, q)} for q in expected_queues(accounts, app)}
    unacked = 0
    with contextlib.suppress(Exception):
        unacked = int(r.hlen(keys.KOMBU_UNACKED))
    return queues, unacked


def _heartbeat(h: Mapping[str, str], time_field: str, now_ms: int) -> dict[str, Any]:
    """A heartbeat hash's fields as numbers, with its time (``time_field``, "..._ms") in ms and
    that time's age ("..._age_s")."""
    item = {k: _num(v) for k, v in h.items()}
    at = _to_ms(h.get(time_field))
    item[time_field] = at
    item[time_field.removesuffix("_ms") + "_age_s"] = _age_s(now_ms, at)
    return item


def _feed_item(key: str, h: Mapping[str, str], before: Mapping[str, str], now_ms: int, dt_s: float) -> dict[str, Any]:
    """One feed socket's heartbeat; its tick rate from the sample ``dt_s`` earlier when it sends none."""
    account, _, sock = key[len(_FEED_HB_PREFIX) :].rpartition(":")
    item = {"key": key, "account": account, "socket": _num(sock), **_heartbeat(h, "last_frame_ms", now_ms)}
    if "connected" in h:
        item["connected"] = _flag(h["connected"])
    if "tick_rate_per_s" not in item:
        ticks_before = before.get("ticks")
        if ticks_before is not None and h.get("ticks") is not None:
            with contextlib.suppress(ValueError):
                item["tick_rate_per_s"] = round(max(0.0, float(h["ticks"]) - float(ticks_before)) / dt_s, 1)
    return item


def _read_feed(
    before: Mapping[str, Mapping[str, str]], after: Mapping[str, Mapping[str, str]], t0_ms: int, now_ms: int
) -> list[dict[str, Any]]:
    dt_s = max((now_ms - t0_ms) / 1000, 1e-3)
    return [_feed_item(key, h, before.get(key, {}), now_ms, dt_s) for key, h in sorted(after.items())]


def _read_order_sockets(r: Any, accounts: Iterable[str], now_ms: int) -> list[dict[str, Any]]:
    order_sockets: list[dict[str, Any]] = []
    for name in sorted(accounts):
        h = r.hgetall(keys.order_socket_heartbeat(name))
        if h:
            item = {"account": name, **_heartbeat(h, "last_frame_ms", now_ms)}
            item["connected"] = _flag(h.get("connected", ""))
            order_sockets.append(item)
    return order_sockets


def _read_receiver(r: Any, now_ms: int) -> dict[str, Any]:
    rc = r.hgetall(keys.RECEIVER_HEARTBEAT)
    return {"present": bool(rc), **(_heartbeat(rc, "last_postback_ms", now_ms) if rc else {})}


def _read_beat(r: Any, now_ms: int) -> dict[str, Any]:
    """Beat's heartbeat (a hash or a plain time) and the RedBeat lock."""
    beat: dict[str, Any] = {"heartbeat_ms": None}
    kind = r.type(keys.BEAT_HEARTBEAT)
    if kind == "hash":
        hb = r.hgetall(keys.BEAT_HEARTBEAT)
        beat.update({k: _num(v) for k, v in hb.items()})
        beat["heartbeat_ms"] = _to_ms(hb.get("last_tick_ms"))
    elif kind == "string":
        beat["heartbeat_ms"] = _to_ms(r.get(keys.BEAT_HEARTBEAT))
    beat["heartbeat_age_s"] = _age_s(now_ms, beat["heartbeat_ms"])
    lock_key = keys.REDBEAT_PREFIX + ":lock"  # RedBeat's, under the prefix beat/schedule.py gives it
    lock_ttl = r.pttl(lock_key)
    beat["lock_key"] = lock_key
    beat["lock_held"] = bool(r.exists(lock_key))
    beat["lock_ttl_s"] = round(lock_ttl / 1000, 3) if lock_ttl and lock_ttl > 0 else None
    return beat


def _read_redis_conf(r: Any) -> dict[str, Any]:
    redis_conf: dict[str, Any] = {}
    with contextlib.suppress(Exception):  # managed Redis often refuses CONFIG
        redis_conf["appendonly"] = r.config_get("appendonly").get("appendonly")
        redis_conf["maxmemory_policy"] = r.config_get("maxmemory-policy").get("maxmemory-policy")
    with contextlib.suppress(Exception):  # primary, replicas and sentinels (common/redistopology.py)
        from common.redis import redis_conf as configured
        from common.redistopology import read_topology

        redis_conf["topology"] = read_topology(r, configured())
    return redis_conf


def gather(
    r: Any,
    accounts: Mapping[str, Account],
    *,
    app: Any = None,
    inspect_timeout_s: float = 1.0,
    ask_workers: bool = True,
) -> dict[str, Any]:
    """Read a snapshot from Redis (``r`` decodes responses) and, when ``app`` is given and
    ``ask_workers`` holds, from the live workers. ``accounts`` maps names to
    :class:`common.settings.Account`.

    The two reads of the feed heartbeats bracket the worker inquiry (which waits its
    full timeout), so the tick rate costs no extra wait."""
    errors: list[str] = []
    feed_before = _feed_sample(r)
    t0_ms = server_time_ms(r)
    workers = _read_workers(app, ask_workers, inspect_timeout_s, errors)
    now_ms = server_time_ms(r)
    feed_after = _feed_sample(r)
    acct_out = _read_accounts(r, accounts, now_ms, errors)
    queues, unacked = _read_queues(r, accounts, app)
    return {
        "now_ms": now_ms,
        "redis": _read_redis_conf(r),
        "gathered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ms / 1000)),
        "accounts": acct_out,
        "queues": queues,
        "unacked": unacked,
        "workers": workers,
        "feed": _read_feed(feed_before, feed_after, t0_ms, now_ms),
        "order_sockets": _read_order_sockets(r, accounts, now_ms),
        "receiver": _read_receiver(r, now_ms),
        "beat": _read_beat(r, now_ms),
        "errors": errors,
    }
