"""The health of a deployment, as data: :func:`gather` reads a snapshot, :func:`evaluate` judges it.

``gather`` is the only part that touches Redis and Celery; it returns a plain,
JSON-ready dict (the *snapshot*). ``evaluate`` is a pure function of a snapshot and
:class:`Thresholds`, so every rule is a unit test without I/O. ``brokergate status``
prints both; ``--json`` prints them as one document.

Snapshot shape (every time in ms of Redis server time; every age in seconds)::

    {
      "now_ms": 1764080000000,
      "redis": {"appendonly": "yes", "maxmemory_policy": "noeviction"},   # {} when CONFIG is refused
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
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from common import keys

__all__ = ["Health", "Problem", "Thresholds", "evaluate", "expected_queues", "gather", "queue_depth"]

# kombu's Redis transport keeps one list per priority step: "<queue>", "<queue>\x06\x163", ...
_KOMBU_PRIORITY_SEP = "\x06\x16"
_KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
_KOMBU_UNACKED = "unacked"


@dataclass(frozen=True)
class Thresholds:
    """What counts as unhealthy. Seconds throughout."""

    feed_stall_s: float = 10.0  # no frame (tick or heartbeat) for this long: the feed is stalled
    token_expiring_s: float = 900.0  # warn when a token expires within this
    beat_stale_s: float = 120.0  # warn when Beat's heartbeat is older than this
    receiver_stale_s: float = 0.0  # 0: a quiet receiver is normal (no orders, no postbacks)


@dataclass(frozen=True)
class Problem:
    level: str  # "error" (unhealthy) or "warning"
    component: str  # "token:acct1", "queue:orders.acct1", "feed:acct1:0", "beat", ...
    message: str


@dataclass
class Health:
    healthy: bool
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    def to_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "problems": [asdict(p) for p in self.problems]}


# ----------------------------------------------------------------------------------------
# Evaluation: pure
# ----------------------------------------------------------------------------------------


def _consumers(snapshot: Mapping[str, Any]) -> dict[str, list[str]] | None:
    workers = snapshot.get("workers")
    if workers is None:
        return None
    by_queue: dict[str, list[str]] = {}
    for host, info in workers.items():
        for q in (info or {}).get("queues", []):
            by_queue.setdefault(q, []).append(host)
    return by_queue


def evaluate(snapshot: Mapping[str, Any], thresholds: Thresholds | None = None) -> Health:
    """Judge a snapshot. Unhealthy (an ``error``) when, for any account, the token is
    missing or expired, or no live worker consumes its orders or urgent queue; when the
    ``auth`` queue has no consumer; or when a feed socket is stalled or down while the
    account has subscriptions. Everything else worth knowing is a ``warning``."""
    t = thresholds or Thresholds()
    now_ms = int(snapshot.get("now_ms") or 0)
    problems: list[Problem] = []

    def err(component: str, message: str) -> None:
        problems.append(Problem("error", component, message))

    def warn(component: str, message: str) -> None:
        problems.append(Problem("warning", component, message))

    consumers = _consumers(snapshot)
    accounts: Mapping[str, Any] = snapshot.get("accounts") or {}
    feeds: list[Mapping[str, Any]] = list(snapshot.get("feed") or [])

    for name, acct in sorted(accounts.items()):
        tok = acct.get("token") or {}
        if not tok.get("present"):
            err(f"token:{name}", "no token: the account is not logged in")
        else:
            exp = tok.get("expires_at_ms")
            if exp is not None and exp <= now_ms:
                err(f"token:{name}", f"token expired {(now_ms - exp) / 1000:.0f} s ago")
            elif exp is not None and (exp - now_ms) / 1000 < t.token_expiring_s:
                warn(f"token:{name}", f"token expires in {(exp - now_ms) / 1000:.0f} s")
        le = acct.get("login_error")
        if le:
            newer = not tok.get("present") or (le.get("at_ms") or 0) >= (tok.get("issued_at_ms") or 0)
            if newer:
                warn(f"login:{name}", f"last login failed: {le.get('type', '')}: {le.get('message', '')}".strip())
        overturned = (acct.get("stats") or {}).get("verdict_overturned")
        if overturned:
            # Orders we had settled as not at the broker turned up there: positions may exist
            # that a strategy was told did not (the orders' history says which).
            err(f"orders:{name}", f"{overturned} order(s) we settled as not at the broker were seen there: "
                                  "check the account's positions")
        for cls, left_s in (acct.get("backoff_s") or {}).items():
            warn(f"limiter:{name}:{cls}", f"backing off after a broker rate-limit answer ({left_s:.1f} s left)")
        for q in acct.get("queues") or (keys.orders_queue(name), keys.urgent_queue(name)):
            if consumers is None:
                err(f"queue:{q}", "no worker answered: nobody consumes this account's orders")
            elif not consumers.get(q):
                err(f"queue:{q}", "no live worker consumes this queue")
        acct_feeds = [f for f in feeds if f.get("account") == name]
        if acct.get("feed_subscriptions") and not acct_feeds:
            err(f"feed:{name}", f"{acct['feed_subscriptions']} subscriptions but no feed socket reports")

    for q, level in ((keys.AUTH_QUEUE, "error"), (keys.DEFAULT_QUEUE, "warning")):
        if consumers is None or not consumers.get(q):
            problems.append(Problem(level, f"queue:{q}", "no live worker consumes this queue"))

    for f in feeds:
        comp = f"feed:{f.get('account')}:{f.get('socket')}"
        age = f.get("last_frame_age_s")
        if f.get("connected") is False:
            err(comp, "socket disconnected")
        elif age is None:
            err(comp, "no frame received yet")
        elif age > t.feed_stall_s:
            err(comp, f"stalled: last frame {age:.1f} s ago (threshold {t.feed_stall_s:g} s)")

    for o in snapshot.get("order_sockets") or []:
        if not o.get("connected"):
            warn(f"order-socket:{o.get('account')}", "order-update socket disconnected (postbacks and reconciliation still apply)")

    rc = snapshot.get("receiver") or {}
    if not rc.get("present"):
        warn("receiver", "postback receiver is not reporting")
    elif t.receiver_stale_s and (rc.get("last_postback_age_s") or 0) > t.receiver_stale_s:
        warn("receiver", f"no postback for {rc['last_postback_age_s']:.0f} s")

    beat = snapshot.get("beat") or {}
    hb_age = beat.get("heartbeat_age_s")
    if not beat.get("lock_held") and hb_age is None:
        warn("beat", "Beat is not running (no heartbeat, no RedBeat lock): no scheduled logins")
    elif hb_age is not None and hb_age > t.beat_stale_s:
        warn("beat", f"Beat heartbeat is {hb_age:.0f} s old")

    rconf = snapshot.get("redis") or {}
    if rconf.get("maxmemory_policy") not in (None, "noeviction"):
        warn("redis", f"maxmemory-policy is {rconf['maxmemory_policy']}: a full Redis may evict a queued order or a token; use noeviction")
    if rconf.get("appendonly") not in (None, "yes"):
        warn("redis", "appendonly is off: a Redis restart loses queued orders and tokens")

    for e in snapshot.get("errors") or []:
        warn("status", str(e))

    return Health(healthy=not any(p.level == "error" for p in problems), problems=problems)


# ----------------------------------------------------------------------------------------
# Gathering: Redis and Celery reads
# ----------------------------------------------------------------------------------------


def _to_ms(value: Any) -> int | None:
    """A time as ms since the epoch from seconds, ms, or an ISO-8601 string."""
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        try:
            return int(datetime.fromisoformat(str(value)).timestamp() * 1000)
        except ValueError:
            return None
    if x > 1e14:  # microseconds
        return int(x / 1000)
    if x > 1e11:  # milliseconds
        return int(x)
    return int(x * 1000)


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


def _jsonable(v: Any) -> Any:
    try:
        json.dumps(v)
        return v
    except TypeError:
        if hasattr(v, "_asdict"):
            return _jsonable(v._asdict())
        if hasattr(v, "__dataclass_fields__"):
            return _jsonable(asdict(v))
        if isinstance(v, Mapping):
            return {str(k): _jsonable(x) for k, x in v.items()}
        if isinstance(v, (list, tuple, set)):
            return [_jsonable(x) for x in v]
        return str(v)


def queue_depth(r: Any, queue: str, keyprefix: str = "") -> int:
    """Messages waiting in a Celery queue on the Redis transport, every priority list summed."""
    names = [f"{keyprefix}{queue}"] + [f"{keyprefix}{queue}{_KOMBU_PRIORITY_SEP}{p}" for p in _KOMBU_PRIORITY_STEPS if p]
    pipe = r.pipeline(transaction=False)
    for n in names:
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
    for key in r.scan_iter(match=f"{keys.PREFIX}hb:feed:*", count=500):
        k = key.decode() if isinstance(key, bytes) else key
        h = r.hgetall(k)
        if h:
            out[k] = {(a.decode() if isinstance(a, bytes) else a): (b.decode() if isinstance(b, bytes) else b) for a, b in h.items()}
    return out


def _order_socket_key(account: str) -> str:
    fn = getattr(keys, "order_socket_heartbeat", None)
    return fn(account) if fn else f"{keys.PREFIX}hb:order-socket:{account}"


def _server_ms(r: Any) -> int:
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


def _ask_workers(app: Any, timeout_s: float) -> tuple[dict[str, Any] | None, str | None]:
    try:
        replies = app.control.inspect(timeout=timeout_s).active_queues()
    except Exception as e:  # the broker itself is unreachable
        return None, f"workers: inspect failed: {type(e).__name__}: {e}"
    workers = {host: {"queues": sorted(q.get("name") for q in qs or [])} for host, qs in (replies or {}).items()}
    return workers, None


def _usage(r: Any, account: str, endpoint_class: str, caps: Any, scope: str) -> dict[str, int] | None:
    """Requests in each window of the class now, as {"10/s": 3, "400/min": 57}, in the
    limiter state of ``scope`` (shared by every account the broker counts as one)."""
    try:
        from common.ratelimit import usage
    except ImportError:
        return None
    return {str(cap): int(n) for cap, n in usage(account, endpoint_class, r=r, caps=tuple(caps), scope=scope)}


def _limit_scope(name: str, acct: Any) -> str:
    """The account's limiter scope (``Account.limit_scope``); an object without one (a test's
    stand-in) is read as the per-account state of the legacy limiter."""
    fn = getattr(acct, "limit_scope", None)
    return fn() if callable(fn) else name


def gather(
    r: Any,
    accounts: Mapping[str, Any],
    *,
    app: Any = None,
    inspect_timeout_s: float = 1.0,
    ask_workers: bool = True,
) -> dict[str, Any]:
    """Read a snapshot from Redis (``r`` decodes responses) and, when ``app`` is given and
    ``ask_workers`` holds, from the live workers. ``accounts`` maps names to
    :class:`common.settings.Account` (only ``broker`` and ``caps`` are read).

    The two reads of the feed heartbeats bracket the worker inquiry (which waits its
    full timeout), so the tick rate costs no extra wait."""
    errors: list[str] = []
    feed_before = _feed_sample(r)
    t0_ms = _server_ms(r)

    workers: dict[str, Any] | None = None
    if app is not None and ask_workers:
        workers, e = _ask_workers(app, inspect_timeout_s)
        if e:
            errors.append(e)
    elif ask_workers:
        errors.append("workers: the Celery app (workers.app) is not importable")

    now_ms = _server_ms(r)
    feed_after = _feed_sample(r)
    keyprefix = ""
    with contextlib.suppress(Exception):
        keyprefix = (app.conf.broker_transport_options or {}).get("global_keyprefix", "") if app is not None else ""

    acct_out: dict[str, Any] = {}
    scopes = {name: _limit_scope(name, acct) for name, acct in accounts.items()}
    for name, acct in sorted(accounts.items()):
        th = r.hmget(keys.token(name), "issued_at_ms", "expires_at_ms", "version", "issued_at", "expires_at")
        present = bool(r.exists(keys.token(name)))
        ttl_ms = r.pttl(keys.token(name)) if present else -2
        token = {
            "present": present,
            "issued_at_ms": _to_ms(th[0] or th[3]),
            "expires_at_ms": _to_ms(th[1] or th[4]) or (now_ms + ttl_ms if ttl_ms and ttl_ms > 0 else None),
            "ttl_s": round(ttl_ms / 1000, 3) if ttl_ms and ttl_ms > 0 else None,
            "version": th[2],
        }
        if present:
            token["age_s"] = _age_s(now_ms, token["issued_at_ms"])
        le = r.hgetall(keys.login_error(name))
        login_error = None
        if le:
            login_error = {
                "at_ms": _to_ms(le.get("at_ms") or le.get("at")),
                "type": le.get("type", ""),
                "message": scrub(le.get("message", "")),
            }
        caps = getattr(acct, "caps", {}) or {}
        limiter: dict[str, Any] = {}
        backoff: dict[str, float] = {}
        scope = scopes[name]
        for cls in sorted(caps):
            if cls != "orders" and not r.exists(keys.limit(scope, cls)):
                continue  # show a class once it has been used; orders always
            try:
                u = _usage(r, name, cls, caps[cls], scope)
            except Exception as e:
                errors.append(f"limiter {name}/{cls}: {type(e).__name__}: {e}")
                u = None
            if u is not None:
                limiter[cls] = u
            left = r.pttl(keys.backoff(scope, cls))
            if left and left > 0:
                backoff[cls] = round(left / 1000, 3)
        subs = 0
        with contextlib.suppress(Exception):
            subs = int(r.hlen(keys.feed_subs(name)))
        acct_out[name] = {
            "broker": getattr(acct, "broker", ""),
            "token": token,
            "login_error": login_error,
            "queues": [keys.orders_queue(name), keys.urgent_queue(name)],
            "limiter": limiter,
            "limiter_scope": scope,
            "limiter_shared_with": sorted(n for n, s in scopes.items() if s == scope and n != name),
            "backoff_s": backoff,
            "stats": {k: _num(v) for k, v in (r.hgetall(keys.stats(name)) or {}).items()},
            "feed_subscriptions": subs,
        }

    queues = {q: {"depth": queue_depth(r, q, keyprefix)} for q in expected_queues(accounts, app)}
    unacked = 0
    with contextlib.suppress(Exception):
        unacked = int(r.hlen(f"{keyprefix}{_KOMBU_UNACKED}"))

    feed: list[dict[str, Any]] = []
    dt_s = max((now_ms - t0_ms) / 1000, 1e-3)
    for key, h in sorted(feed_after.items()):
        tail = key[len(f"{keys.PREFIX}hb:feed:") :]
        account, _, sock = tail.rpartition(":")
        last = _to_ms(h.get("last_frame_ms"))
        item: dict[str, Any] = {"key": key, "account": account, "socket": _num(sock)}
        for k, v in h.items():
            if k not in ("last_frame_ms",):
                item[k] = _num(v)
        if "connected" in h:
            item["connected"] = str(h["connected"]).lower() in ("1", "true", "yes")
        item["last_frame_ms"] = last
        item["last_frame_age_s"] = _age_s(now_ms, last)
        if "tick_rate_per_s" not in item:
            before = feed_before.get(key, {}).get("ticks")
            if before is not None and h.get("ticks") is not None:
                with contextlib.suppress(ValueError):
                    item["tick_rate_per_s"] = round(max(0.0, float(h["ticks"]) - float(before)) / dt_s, 1)
        feed.append(item)

    order_sockets: list[dict[str, Any]] = []
    for name in sorted(accounts):
        h = r.hgetall(_order_socket_key(name))
        if h:
            last = _to_ms(h.get("last_frame_ms"))
            item = {"account": name, **{k: _num(v) for k, v in h.items()}}
            item["connected"] = str(h.get("connected", "")).lower() in ("1", "true", "yes")
            item["last_frame_ms"] = last
            item["last_frame_age_s"] = _age_s(now_ms, last)
            order_sockets.append(item)

    rc = r.hgetall(keys.RECEIVER_HEARTBEAT)
    receiver: dict[str, Any] = {"present": bool(rc)}
    if rc:
        for k, v in rc.items():
            receiver[k] = _num(v)
        last = _to_ms(rc.get("last_postback_ms"))
        receiver["last_postback_ms"] = last
        receiver["last_postback_age_s"] = _age_s(now_ms, last)

    beat: dict[str, Any] = {"heartbeat_ms": None, "heartbeat_age_s": None}
    kind = r.type(keys.BEAT_HEARTBEAT)
    if kind == "hash":
        hb = r.hgetall(keys.BEAT_HEARTBEAT)
        at = _to_ms(hb.get("last_tick_ms") or hb.get("at_ms") or hb.get("at") or hb.get("ts"))
        beat.update({k: _num(v) for k, v in hb.items()})
        beat["heartbeat_ms"] = at
    elif kind == "string":
        beat["heartbeat_ms"] = _to_ms(r.get(keys.BEAT_HEARTBEAT))
    if beat["heartbeat_ms"] is None and kind in ("hash", "string"):
        ttl = r.pttl(keys.BEAT_HEARTBEAT)
        beat["heartbeat_ms"] = now_ms if ttl and ttl > 0 else None  # present and alive: count as fresh
    beat["heartbeat_age_s"] = _age_s(now_ms, beat["heartbeat_ms"])
    lock_key = keys.REDBEAT_PREFIX + ":lock"
    with contextlib.suppress(Exception):
        lock_key = app.conf.get("redbeat_lock_key") or (app.conf.get("redbeat_key_prefix") or keys.REDBEAT_PREFIX) + ":lock"
    lock_ttl = r.pttl(lock_key)
    beat["lock_key"] = lock_key
    beat["lock_held"] = bool(r.exists(lock_key))
    beat["lock_ttl_s"] = round(lock_ttl / 1000, 3) if lock_ttl and lock_ttl > 0 else None

    redis_conf: dict[str, Any] = {}
    with contextlib.suppress(Exception):  # managed Redis often refuses CONFIG
        redis_conf["appendonly"] = r.config_get("appendonly").get("appendonly")
        redis_conf["maxmemory_policy"] = r.config_get("maxmemory-policy").get("maxmemory-policy")

    return {
        "now_ms": now_ms,
        "redis": redis_conf,
        "gathered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ms / 1000)),
        "accounts": acct_out,
        "queues": queues,
        "unacked": unacked,
        "workers": workers,
        "feed": feed,
        "order_sockets": order_sockets,
        "receiver": receiver,
        "beat": beat,
        "errors": errors,
    }
