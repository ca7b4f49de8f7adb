"""Pre-trade risk limits, per account and per strategy (issue #18): checked by the client before an
order is stored, and again by the worker just before it is sent, the authoritative check.

Limits (``common/risklimits.py`` says what each means) come from the accounts file (per account
``risk = { ... }``, per strategy ``[strategies.<name>]``) and are overridden at run time by a Redis
hash per scope (:func:`keys.risk_limits` of ``account:<name>`` / ``strategy:<name>``; ``brokergate
risk set``), read on every check, so a change holds for the next order everywhere. An order's
limits are the tighter of its account's and its strategy's.

* :func:`check` (``authoritative=False``, the client): one round trip (``risk_read.lua``: the
  overrides, the last price, the positions and their prices when a limit needs them, the counts),
  then the arithmetic in Python. Fast and clear, but a view: orders other processes are letting
  through at the same moment are not seen.
* :func:`check` (``authoritative=True``, the worker, before the limiter slot): the same read,
  made by the order's claim (``order_claim.lua`` runs order_lib.lua's ``risk_read``, the one
  ``risk_read.lua`` runs; :func:`read_query` says what it reads, ``prefetched`` hands its reply
  over), so the check costs the order no round trip of its own; then, when either count limit is
  in force for the order, ``risk_admit.lua``, which in one atomic step refuses beyond
  ``max_open_orders`` and ``max_orders_per_minute`` or lets the order through and records it in
  both counts, so the two limits hold across every strategy process, worker and host. A refusal
  there settles the order REJECTED with the :class:`RiskRefused` text; it is never sent. Without
  a count limit the order pays no write and no extra round trip (a write round trip costs several
  reads on a Redis with an append-only file: measured 0.4-0.6 ms against 0.15 ms here). The admit
  stays a script of its own, after the judge in Python: taken in the claim it would count orders
  a later limit refuses (the per-minute log keeps them) or need the limits' arithmetic in Lua.

**Open orders, exactly and in O(1).** :func:`keys.risk_open` is a set per account: the worker's
admit step adds an order as it lets it through; the order scripts' ``after_change``
(``common/lua/order_lib.lua``) adds every order the broker shows OPEN (or that is UNKNOWN) and
removes it when the order settles, in the same script that settles it (so the set is right
whether or not a limit was in force when the order went, and an overturned verdict is counted
again). ``SCARD`` is the count, and admit's ``SISMEMBER`` makes a resend
after a reconcile count once. Counting admitted orders rather than stored ones means a burst of
queued orders is refused only as far as it would really cross the limit (orders still NEW in the
queue are not open anywhere yet). Should a removal ever be missed (the order hash deleted by
hand), admit drops settled or vanished members before it refuses, so the count heals itself.
The alternatives were worse: counting the account's order index is O(orders); a counter
incremented and decremented by scripts drifts for good after one miss.

**Orders per minute** is a sliding 60 s log per rate scope (:func:`keys.risk_rate`: the strategy,
or the account for orders without one), one member per order let through (a resend is not a new
order). Orders let through that then expire, are cancelled or halted before sending still count:
the limit is on what the strategy asked to send. The log is kept while a count limit is in force
for the scope, so one set at run time counts from then (full after a minute).

**Daily loss** (realised plus mark-to-market at ``bg:ltp``, the account's positions snapshot):
entries are refused once the loss reaches the limit, and the sweeper (Beat, every 5 s) halts an
account whose own ``max_daily_loss`` is reached (:func:`sweep_daily_loss`: ``common.safety.halt``
with ``by="risk"``), so a crossing halts it within about 5 s of the tick that crossed it. A halt
by this limit comes back at the next sweep after a resume unless the limit is raised first.

Every refusal counts ``risk_refused`` and ``risk_refused:<limit>`` in ``bg:stats:<account>``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any, Final

import redis

from common import keys
from common.accountsfile import per_reading
from common.errors import ConfigError, RiskRefused
from common.lua import LuaScript, script_text
from common.models import Order
from common.portfolio import Position
from common.redis import as_text, get_redis, text_hash
from common.risklimits import (
    COUNT_LIMITS,
    Exposure,
    RiskLimits,
    day_pnl,
    is_exit,
    judge,
    load_strategies,
    refused_by_count,
)
from common.settings import Account, accounts

__all__ = [
    "RATE_WINDOW_MS", "ReadQuery", "RiskLimits", "ScopeLimits", "account_pnl", "account_scope", "check", "clear_limits",
    "count_refusal", "limits_in_force", "read_many", "read_query", "scope_limits", "set_limits", "strategies", "strategy_scope",
    "sweep_daily_loss",
]  # fmt: skip

log = logging.getLogger(__name__)

RATE_WINDOW_MS: Final = 60_000
_NEEDS_POSITIONS = ("max_position", "max_daily_loss")


def account_scope(name: str) -> str:
    return f"account:{name}"


def strategy_scope(name: str) -> str:
    return f"strategy:{name}"


# The ``[strategies.<name>]`` limits of the accounts file, read again whenever the accounts are.
strategies = per_reading(load_strategies)


def _file_limits(scope: str) -> RiskLimits:
    """The accounts file's limits of a scope; none for an account it does not name (the client
    and the worker refuse such an account's orders before they ask; its run-time limits apply)."""
    kind, _, name = scope.partition(":")
    if kind == "account":
        try:
            return accounts()[name].risk
        except (ConfigError, KeyError):
            return RiskLimits()
    return strategies().get(name, RiskLimits())


@cache
def _script(name: str) -> LuaScript:
    from common.orderscripts import prelude

    if name == "risk_read":
        # order_lib.lua's risk_read, which the worker's claim runs too (one source). Read only, so
        # not an order script: nothing of it to wait for a replica on.
        return LuaScript(prelude() + script_text("order_lib") + "\n" + script_text(name))
    return LuaScript(prelude() + script_text(name))  # risk_admit: TERMINAL, from the state table


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {as_text(flat[i]): as_text(flat[i + 1]) for i in range(0, len(flat), 2)}


def _override(file: RiskLimits, raw: Mapping[str, str], scope: str) -> RiskLimits:
    try:
        return file.overridden(raw, keys.risk_limits(scope))
    except ConfigError as e:
        # Written by hand past `brokergate risk set`'s checks: refuse rather than guess (fail closed).
        raise RiskRefused("config", str(e)) from None


@dataclass(frozen=True)
class ReadQuery:
    """One order's risk read: the keys and arguments of order_lib.lua's ``risk_read`` (run by
    ``risk_read.lua``, or by the worker's claim: ``orderstore.claim(..., risk_read=(q.keys, q.args))``),
    and the file's limits its reply is judged with."""

    keys: list[str]
    args: list[Any]
    acct_file: RiskLimits
    strat_file: RiskLimits


def read_query(order: Order, acct: Account | None = None) -> ReadQuery:
    """What the risk read of ``order`` asks Redis (``acct``: its account when the caller holds it)."""
    acct_scope = account_scope(order.account)
    strat_scope = strategy_scope(order.strategy) if order.strategy else ""
    acct_file = acct.risk if acct is not None else _file_limits(acct_scope)
    strat_file = _file_limits(strat_scope) if strat_scope else RiskLimits()
    need = order.reduce_only or any(getattr(x, k) is not None for x in (acct_file, strat_file) for k in _NEEDS_POSITIONS)
    return ReadQuery(
        [keys.risk_limits(acct_scope), keys.risk_limits(strat_scope or acct_scope), keys.LTP,
         keys.account_state(order.account, "positions"), keys.risk_open(order.account),
         keys.risk_rate(strat_scope or acct_scope)],
        [order.instrument_key, "1" if need else "", "1" if strat_scope else "", RATE_WINDOW_MS],
        acct_file, strat_file)


def read_many(r: redis.Redis, orders: Sequence[tuple[Order, Account | None]]) -> list[tuple[ReadQuery, list[Any]]]:
    """The risk read of many orders (with their accounts) in one round trip, each to hand to
    :func:`check` as ``prefetched``: how a group's children are checked (``common/fanout.py``)."""
    queries = [read_query(o, a) for o, a in orders]
    replies = _script("risk_read").batch(r, [(q.keys, q.args) for q in queries])
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply  # Redis refused the read: as check() would raise it
    return list(zip(queries, replies, strict=True))


@dataclass(frozen=True)
class _Read:
    limits: RiskLimits
    sources: dict[str, str]
    exposure: Exposure


def _read(order: Order, q: ReadQuery, got: list[Any]) -> _Read:
    """The limits in force and the exposure, from the risk read's reply ``got``."""
    acct_scope = account_scope(order.account)
    strat_scope = strategy_scope(order.strategy) if order.strategy else ""
    acct_raw, strat_raw, ltp, pos_flat, prices, open_n, minute_n, _now = got
    acct_lim = _override(q.acct_file, _pairs(acct_raw), acct_scope)
    strat_lim = _override(q.strat_file, _pairs(strat_raw), strat_scope) if strat_scope else RiskLimits()
    limits = acct_lim.tighter(strat_lim)
    # Whose limit is in force: the account's where its value is the one that won.
    sources = {k: f"account {order.account}" if str(getattr(acct_lim, k)) == v else f"strategy {order.strategy}"
               for k, v in limits.to_dict().items()}
    positions = [Position.from_dict(json.loads(as_text(v))) for v in pos_flat[1::2]]
    last_prices = {f"{p.exchange}:{p.symbol}": Decimal(as_text(x)) for p, x in zip(positions, prices, strict=True) if x}
    same = [p for p in positions if p.exchange == order.exchange and p.symbol == order.symbol]
    exposure = Exposure(
        last_price=Decimal(as_text(ltp)) if ltp else None,
        net_position=sum(p.quantity for p in same),
        product_position=sum(p.quantity for p in same if p.product == order.product.value),
        day_pnl=day_pnl(positions, last_prices) if limits.max_daily_loss is not None else None,
        open_orders=int(open_n), orders_last_minute=int(minute_n))
    return _Read(limits, sources, exposure)


def count_refusal(r: redis.Redis, account: str, limit: str) -> None:
    with r.pipeline(transaction=False) as p:
        p.hincrby(keys.stats(account), "risk_refused", 1)
        p.hincrby(keys.stats(account), f"risk_refused:{limit}", 1)
        p.execute()


def check(order: Order, r: redis.Redis | None = None, *, authoritative: bool = False,
          account: Account | None = None, prefetched: tuple[ReadQuery, list[Any]] | None = None) -> None:
    """Raise :class:`RiskRefused` (``.limit``, ``.reason`` with the numbers) when ``order`` breaks
    a limit in force; counted in the account's stats. ``authoritative`` (the worker, just before
    sending): also let it through max_open_orders and max_orders_per_minute atomically when
    either is in force, recording it in both counts (see the module docstring). ``account``: the
    order's account when the caller holds it already (else read from the accounts file).
    ``prefetched``: the read already made, as (:func:`read_query`, its reply) (the worker's claim
    makes it: then this check reads nothing itself)."""
    r = r or get_redis()
    if prefetched is None:
        q = read_query(order, account)
        prefetched = (q, _script("risk_read")(r, q.keys, q.args))
    read = _read(order, *prefetched)
    try:
        judge(order, read.limits, read.exposure, counts=not authoritative, sources=read.sources)
    except RiskRefused as e:
        count_refusal(r, order.account, e.limit)
        raise
    if not authoritative:
        return
    lim = read.limits
    # An exit is never refused by the counts (a square-off must flow): nothing to take.
    if is_exit(order, read.exposure.product_position) or (lim.max_open_orders is None
                                                          and lim.max_orders_per_minute is None):
        return
    rate = keys.risk_rate(strategy_scope(order.strategy) if order.strategy else account_scope(order.account))
    verdict, n, limit = _script("risk_admit")(
        r, [keys.risk_open(order.account), rate, keys.stats(order.account)],
        [order.client_order_id, "" if lim.max_open_orders is None else lim.max_open_orders,
         "" if lim.max_orders_per_minute is None else lim.max_orders_per_minute,
         RATE_WINDOW_MS, keys.order("")])
    verdict = as_text(verdict)
    if verdict in COUNT_LIMITS:
        raise refused_by_count(verdict, n, limit, f" (limit of {read.sources.get(verdict)})")


# --- the limits of a scope: the file's, the run-time overrides, what is in force ---------------------
@dataclass(frozen=True)
class ScopeLimits:
    scope: str
    file: RiskLimits
    overrides: dict[str, str]
    in_force: RiskLimits


def scope_limits(scope: str, r: redis.Redis | None = None) -> ScopeLimits:
    """A scope's (``account:<name>`` / ``strategy:<name>``) limits: the file's, the overrides, and
    the two together."""
    r = r or get_redis()
    file = _file_limits(scope)
    raw = text_hash(r.hgetall(keys.risk_limits(scope)))
    return ScopeLimits(scope, file, raw, file.overridden(raw, keys.risk_limits(scope)))


def limits_in_force(account: str, strategy: str = "", r: redis.Redis | None = None) -> RiskLimits:
    """The limits an order of ``account`` (and ``strategy``) meets now."""
    lim = scope_limits(account_scope(account), r).in_force
    return lim.tighter(scope_limits(strategy_scope(strategy), r).in_force) if strategy else lim


def set_limits(scope: str, values: Mapping[str, Any], r: redis.Redis | None = None) -> ScopeLimits:
    """Override limits of a scope at run time (``none`` lifts one); each value checked as in the
    file first (ConfigError naming it), then written at once; the next check everywhere sees it."""
    r = r or get_redis()
    RiskLimits().overridden({k: str(v) for k, v in values.items()}, f"risk limits of {scope}")
    if values:
        r.hset(keys.risk_limits(scope), mapping={k: str(v).strip() for k, v in values.items()})
    log.warning("risk limits of %s set at run time: %s", scope, dict(values))
    return scope_limits(scope, r)


def clear_limits(scope: str, names: list[str] | None = None, r: redis.Redis | None = None) -> ScopeLimits:
    """Drop run-time overrides of a scope (``names``, or all): the file's limits apply again."""
    r = r or get_redis()
    if names:
        r.hdel(keys.risk_limits(scope), *names)
    else:
        r.delete(keys.risk_limits(scope))
    log.warning("risk limits of %s: run-time overrides cleared (%s)", scope, ", ".join(names or ["all"]))
    return scope_limits(scope, r)


# --- daily loss: from the sweeper ----------------------------------------------------------------
def account_pnl(account: str, r: redis.Redis) -> Decimal:
    """The account's day P&L as the limit judges it (realised + marked at ``bg:ltp``)."""
    rows = [Position.from_dict(json.loads(v)) for v in r.hvals(keys.account_state(account, "positions"))]
    if not rows:
        return Decimal(0)
    names = [f"{p.exchange}:{p.symbol}" for p in rows]
    prices = {n: Decimal(as_text(v)) for n, v in zip(names, r.hmget(keys.LTP, names), strict=True) if v}
    return day_pnl(rows, prices)


def sweep_daily_loss(r: redis.Redis | None = None) -> list[str]:
    """Halt every account whose day loss has reached its own ``max_daily_loss`` and is not halted
    yet (``common.safety.halt``, ``by="risk"``); returns the accounts halted. Run by the sweeper."""
    from common import safety

    r = r or get_redis()
    halted: list[str] = []
    for name in accounts():
        try:
            limit = scope_limits(account_scope(name), r).in_force.max_daily_loss
        except ConfigError as e:
            log.error("risk: %s: %s", name, e)
            continue
        if limit is None:
            continue
        pnl = account_pnl(name, r)
        if -pnl < limit or safety.halted(name, r) is not None:
            continue
        reason = (f"risk limit max_daily_loss: day P&L {pnl:.2f} reached the loss limit {limit} "
                  f"(raise it with `brokergate risk set {name} max_daily_loss=...` before resuming)")
        safety.halt([name], reason, by="risk", r=r)
        r.hincrby(keys.stats(name), "risk_halted", 1)
        halted.append(name)
    return halted
