"""The health of a deployment, as data: :func:`gather` reads a snapshot, :func:`evaluate` judges it.

``gather`` (in :mod:`common.health_snapshot`, the snapshot's shape is documented there) is
the only part that touches Redis and Celery; it returns a plain, JSON-ready dict.
``evaluate`` is a pure function of a snapshot and :class:`Thresholds`, one judge per
component, so every rule is a unit test without I/O. ``brokergate status`` prints both;
``--json`` prints them as one document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from common import keys
from common.health_snapshot import expected_queues, gather, queue_depth, scrub
from common.redistopology import judge as judge_topology

__all__ = ["Health", "Problem", "Thresholds", "evaluate", "expected_queues", "gather", "queue_depth", "scrub"]


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
# Evaluation: pure, one judge per component; each appends its problems
# ----------------------------------------------------------------------------------------

_Problems = list[Problem]


def _consumers(snapshot: Mapping[str, Any]) -> dict[str, list[str]] | None:
    workers = snapshot.get("workers")
    if workers is None:
        return None
    by_queue: dict[str, list[str]] = {}
    for host, info in workers.items():
        for q in (info or {}).get("queues", []):
            by_queue.setdefault(q, []).append(host)
    return by_queue


def _judge_token(out: _Problems, name: str, acct: Mapping[str, Any], now_ms: int, t: Thresholds) -> None:
    tok = acct.get("token") or {}
    if not tok.get("present"):
        out.append(Problem("error", f"token:{name}", "no token: the account is not logged in"))
    else:
        exp = tok.get("expires_at_ms")
        if exp is not None and exp <= now_ms:
            out.append(Problem("error", f"token:{name}", f"token expired {(now_ms - exp) / 1000:.0f} s ago"))
        elif exp is not None and (exp - now_ms) / 1000 < t.token_expiring_s:
            out.append(Problem("warning", f"token:{name}", f"token expires in {(exp - now_ms) / 1000:.0f} s"))
    le = acct.get("login_error")
    if le:
        newer = not tok.get("present") or (le.get("at_ms") or 0) >= (tok.get("issued_at_ms") or 0)
        if newer:
            out.append(Problem("warning", f"login:{name}",
                               f"last login failed: {le.get('type', '')}: {le.get('message', '')}".strip()))


def _judge_orders(out: _Problems, name: str, acct: Mapping[str, Any]) -> None:
    halt = acct.get("halt")
    if halt:
        # Deliberate, so a warning (a healthcheck must not restart the stack over it), but first.
        out.append(Problem("warning", f"halt:{name}",
                           f"HALTED{' (every account)' if halt.get('scope') == '*' else ''} by {halt.get('by')}: "
                           f"{halt.get('reason')}; only exits flow (brokergate resume)"))
    overturned = (acct.get("stats") or {}).get("verdict_overturned")
    if overturned:
        # Orders we had settled as not at the broker turned up there: positions may exist
        # that a strategy was told did not (the orders' history says which).
        out.append(Problem("error", f"orders:{name}",
                           f"{overturned} order(s) we settled as not at the broker were seen there: "
                           "check the account's positions"))
    refused = (acct.get("stats") or {}).get("egress_refused")
    if refused:
        # The broker refused order requests for their source IP (the static-IP rule): nothing of
        # this account can trade until the egress or the registration is fixed.
        out.append(Problem("warning", f"egress:{name}",
                           f"{refused} order request(s) refused for their source IP (order egress: "
                           f"{acct.get('order_egress') or 'default'}): register this host's static IP at "
                           "the broker's developer console, or set extra.order_source_address / order_proxy"))
    for cls, left_s in (acct.get("backoff_s") or {}).items():
        out.append(Problem("warning", f"limiter:{name}:{cls}",
                           f"backing off after a broker rate-limit answer ({left_s:.1f} s left)"))


def _judge_account_queues(
    out: _Problems, name: str, acct: Mapping[str, Any], consumers: Mapping[str, list[str]] | None
) -> None:
    for q in acct.get("queues") or (keys.orders_queue(name), keys.urgent_queue(name)):
        if consumers is None:
            out.append(Problem("error", f"queue:{q}", "no worker answered: nobody consumes this account's orders"))
        elif not consumers.get(q):
            out.append(Problem("error", f"queue:{q}", "no live worker consumes this queue"))


def _judge_shared_queues(out: _Problems, consumers: Mapping[str, list[str]] | None) -> None:
    for q, level in ((keys.AUTH_QUEUE, "error"), (keys.DEFAULT_QUEUE, "warning")):
        if consumers is None or not consumers.get(q):
            out.append(Problem(level, f"queue:{q}", "no live worker consumes this queue"))


def _judge_account_feed(out: _Problems, name: str, acct: Mapping[str, Any], feeds: list[Mapping[str, Any]]) -> None:
    if acct.get("feed_subscriptions") and not any(f.get("account") == name for f in feeds):
        out.append(Problem("error", f"feed:{name}", f"{acct['feed_subscriptions']} subscriptions but no feed socket reports"))


def _judge_feed_sockets(out: _Problems, feeds: list[Mapping[str, Any]], t: Thresholds) -> None:
    for f in feeds:
        comp = f"feed:{f.get('account')}:{f.get('socket')}"
        age = f.get("last_frame_age_s")
        if f.get("connected") is False:
            out.append(Problem("error", comp, "socket disconnected"))
        elif age is None:
            out.append(Problem("error", comp, "no frame received yet"))
        elif age > t.feed_stall_s:
            out.append(Problem("error", comp, f"stalled: last frame {age:.1f} s ago (threshold {t.feed_stall_s:g} s)"))


def _judge_order_sockets(out: _Problems, order_sockets: list[Mapping[str, Any]]) -> None:
    for o in order_sockets:
        if not o.get("connected"):
            out.append(Problem("warning", f"order-socket:{o.get('account')}",
                               "order-update socket disconnected (postbacks and reconciliation still apply)"))


def _judge_receiver(out: _Problems, rc: Mapping[str, Any], t: Thresholds) -> None:
    if not rc.get("present"):
        out.append(Problem("warning", "receiver", "postback receiver is not reporting"))
    elif t.receiver_stale_s and (rc.get("last_postback_age_s") or 0) > t.receiver_stale_s:
        out.append(Problem("warning", "receiver", f"no postback for {rc['last_postback_age_s']:.0f} s"))


def _judge_beat(out: _Problems, beat: Mapping[str, Any], t: Thresholds) -> None:
    hb_age = beat.get("heartbeat_age_s")
    if not beat.get("lock_held") and hb_age is None:
        out.append(Problem("warning", "beat", "Beat is not running (no heartbeat, no RedBeat lock): no scheduled logins"))
    elif hb_age is not None and hb_age > t.beat_stale_s:
        out.append(Problem("warning", "beat", f"Beat heartbeat is {hb_age:.0f} s old"))


def _judge_redis(out: _Problems, rconf: Mapping[str, Any]) -> None:
    if rconf.get("maxmemory_policy") not in (None, "noeviction"):
        out.append(Problem("warning", "redis", f"maxmemory-policy is {rconf['maxmemory_policy']}: "
                                               "a full Redis may evict a queued order or a token; use noeviction"))
    if rconf.get("appendonly") not in (None, "yes"):
        out.append(Problem("warning", "redis", "appendonly is off: a Redis restart loses queued orders and tokens"))
    out.extend(Problem("warning", "redis:topology", w) for w in judge_topology(rconf.get("topology") or {}))


def evaluate(snapshot: Mapping[str, Any], thresholds: Thresholds | None = None) -> Health:
    """Judge a snapshot. Unhealthy (an ``error``) when, for any account, the token is
    missing or expired, or no live worker consumes its orders or urgent queue; when the
    ``auth`` queue has no consumer; or when a feed socket is stalled or down while the
    account has subscriptions. Everything else worth knowing is a ``warning``."""
    t = thresholds or Thresholds()
    now_ms = int(snapshot.get("now_ms") or 0)
    problems: _Problems = []
    consumers = _consumers(snapshot)
    accounts: Mapping[str, Any] = snapshot.get("accounts") or {}
    feeds: list[Mapping[str, Any]] = list(snapshot.get("feed") or [])
    for name, acct in sorted(accounts.items()):
        _judge_token(problems, name, acct, now_ms, t)
        _judge_orders(problems, name, acct)
        _judge_account_queues(problems, name, acct, consumers)
        _judge_account_feed(problems, name, acct, feeds)
    _judge_shared_queues(problems, consumers)
    _judge_feed_sockets(problems, feeds, t)
    _judge_order_sockets(problems, snapshot.get("order_sockets") or [])
    _judge_receiver(problems, snapshot.get("receiver") or {}, t)
    _judge_beat(problems, snapshot.get("beat") or {}, t)
    _judge_redis(problems, snapshot.get("redis") or {})
    problems.extend(Problem("warning", "status", str(e)) for e in snapshot.get("errors") or [])
    return Health(healthy=not any(p.level == "error" for p in problems), problems=problems)
