"""The kill switch: halt an account (or every account), cancel what it has open, optionally close
its positions; resume it.

A halt is a hash in Redis (:func:`keys.halt` per account, :data:`keys.HALT_ALL` for every account,
no TTL: it survives restarts of every process) and is enforced in three places:

* **The client** (:func:`check_entry`, from ``place_order``) refuses new entries with
  :class:`~common.errors.Halted` before anything is stored.
* **The order gate** (``common/lua/order_mark_sent.lua``) refuses, atomically with the decision
  to send, every entry whose limiter slot comes after the halt: it ends REJECTED with the halt's
  reason and is never sent late. Entries already queued or waiting for a slot meet it there.
* **The halt itself** (:func:`halt`) takes the entries still queued out of the account's queues
  (REJECTED at once, not one by one behind Celery's rate limit), enqueues a cancel, on the urgent lane, of every order of the
  account that may be at the broker (OPEN, or sent and not settled), and with ``square_off``
  (once those cancels and the entries in flight are settled, so no fill is still to be learned)
  reads the positions afresh and places one MARKET ``reduce_only`` exit per open position, on
  the urgent lane (the adapters add the market protection each broker requires).

Exits still flow: cancels, and orders marked ``reduce_only``, which may only reduce a position
(:func:`check_entry` refuses one that would open or grow a position, by the positions snapshot).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import redis

from common import accountstate, keys, orderstore
from common.errors import Halted, InvalidOrder
from common.lua import LuaScript, script_text
from common.marketprotection import limit_price
from common.models import Order, OrderState, Side
from common.orderstate import TERMINAL_STATES
from common.queued import place_of
from common.redis import as_text, get_redis, server_time_ms, text_hash

__all__ = ["Halt", "HaltReport", "check_entry", "halt", "halted", "halts", "resume"]

log = logging.getLogger(__name__)
ALL = "*"
SQUARE_OFF_WAIT_S = 10.0  # longest wait for entries in flight at the halt to be answered
# How far through the last price a square-off LIMIT goes where the broker refuses MARKET orders.
SQUARE_OFF_BAND_PCT = Decimal("2")
_HALT_SET = LuaScript(script_text("halt_set"), durable=True)  # a halt must outlive a failover


@dataclass(frozen=True)
class Halt:
    scope: str  # the account, or "*" for every account
    reason: str
    at_ms: int
    by: str
    square_off: bool

    @classmethod
    def of(cls, scope: str, h: dict[Any, Any]) -> Halt | None:
        d = text_hash(h)
        if "reason" not in d:
            return None
        return cls(scope, d["reason"], int(d.get("at_ms") or 0), d.get("by", ""), d.get("square_off") == "1")


@dataclass
class HaltReport:
    """What :func:`halt` did: the accounts it covers, the cancels and exits it enqueued."""

    accounts: list[str]
    at_ms: int
    cancels: list[str] = field(default_factory=list)  # client_order_ids whose cancel was enqueued
    exits: list[str] = field(default_factory=list)  # client_order_ids of the square-off orders
    dropped: int = 0  # entries taken out of the queues and settled REJECTED
    errors: list[str] = field(default_factory=list)


def halted(account: str, r: redis.Redis | None = None) -> Halt | None:
    """The halt in force on ``account`` (its own, else the halt of every account), or None."""
    r = r or get_redis()
    with r.pipeline(transaction=False) as p:
        p.hgetall(keys.halt(account))
        p.hgetall(keys.HALT_ALL)
        own, every = p.execute()
    return Halt.of(account, own) or Halt.of(ALL, every)


def halts(r: redis.Redis | None = None) -> list[Halt]:
    """Every halt in force (for ``brokergate status``)."""
    r = r or get_redis()
    found = [Halt.of(ALL, r.hgetall(keys.HALT_ALL))]
    prefix = keys.halt("")
    for k in r.scan_iter(match=f"{prefix}*", count=500):
        name = as_text(k)
        found.append(Halt.of(name[len(prefix):], r.hgetall(name)))
    return [h for h in found if h is not None]


def _net_position(r: redis.Redis, order: Order) -> int:
    rows = accountstate.read(r, order.account, "positions").items
    return sum(p.quantity for p in rows if p.exchange == order.exchange and p.symbol == order.symbol
               and p.product == order.product.value)


def check_entry(order: Order, r: redis.Redis) -> None:
    """The client's check before it stores an order: a halted account takes exits only
    (:class:`Halted` otherwise), and an exit must reduce a position (InvalidOrder)."""
    if order.reduce_only:
        net = _net_position(r, order)
        closes = net > 0 if order.side is Side.SELL else net < 0
        if not closes or order.quantity > abs(net):
            raise InvalidOrder("reduce_only", f"{order.side.value} {order.quantity} would not only reduce the "
                                              f"{order.product.value} position of {net} in {order.instrument_key}")
        return
    h = halted(order.account, r)
    if h is not None:
        raise Halted(order.account, h.reason)


def _cancel_open(r: redis.Redis, account: str, report: HaltReport) -> None:
    from common.client import cancel_order

    for o in orderstore.account_orders(r, account, open_only=True):
        # Orders not sent yet meet the halt at the gate (REJECTED there); the rest may be at the broker.
        if o["state"] in (OrderState.NEW.value, OrderState.SENDING.value) and not o.get("sent_at_ms"):
            continue
        try:
            cancel_order(o["client_order_id"])
            report.cancels.append(o["client_order_id"])
        except Exception as e:  # one failed enqueue must not stop the others
            report.errors.append(f"cancel {o['client_order_id']}: {e}")


def _drop_queued_entries(r: redis.Redis, account: str, reason: str, report: HaltReport) -> None:
    """Take the entries still waiting in the account's queues out of them and settle them REJECTED
    now: behind Celery's per-worker rate limit they would otherwise reach the claim's refusal at
    that rate, one by one. A message a worker pops meanwhile is not removed (LREM finds nothing)
    and meets the claim's refusal instead."""
    for q in (keys.urgent_queue(account), keys.orders_queue(account)):
        for lst in keys.queue_lists(q):
            entries = []
            for raw in r.lrange(lst, 0, -1):
                with contextlib.suppress(ValueError):
                    got = place_of(json.loads(raw))
                    if got is not None and not got.order.get("reduce_only"):
                        entries.append((raw, got.client_order_id))
            if not entries:
                continue
            with r.pipeline(transaction=False) as p:
                for raw, _ in entries:
                    p.lrem(lst, 1, as_text(raw))
                removed = p.execute()
            for (_, coid), n in zip(entries, removed, strict=True):
                if n and orderstore.transition(r, coid, OrderState.REJECTED, allowed_from={OrderState.NEW},
                                               source="halt", message=f"halted: {reason}"):
                    report.dropped += 1


def _in_flight(r: redis.Redis, account: str) -> int:
    """Orders of the account sent and not answered yet (their fills may still land)."""
    return sum(1 for o in orderstore.account_orders(r, account, open_only=True)
               if o["state"] in (OrderState.SENDING.value, OrderState.UNKNOWN.value) and o.get("sent_at_ms"))


def _unsettled(r: redis.Redis, ids: list[str]) -> int:
    with r.pipeline(transaction=False) as p:
        for coid in ids:
            p.hget(keys.order(coid), "state")
        states = p.execute()
    terminal = {s.value for s in TERMINAL_STATES}
    return sum(1 for s in states if as_text(s or b"") not in terminal)


def _cancels_s(account: str, n: int) -> float:
    """How long ``n`` cancels take at the account's order cap (its shortest window's rate)."""
    from common.settings import account as account_of

    rate = account_of(account).order_rate()
    return n / rate if rate else 0.0


def _positions_read_now(r: redis.Redis, account: str) -> list[Any]:
    """The positions from a read from the broker asked after this call: a read answered while a
    fill was pushed is not stored (common/accountstate.py), so read again until one is."""
    since = server_time_ms(r)
    until = time.monotonic() + SQUARE_OFF_WAIT_S
    while True:
        snap = accountstate.get(account, "positions", max_age_s=0)
        if snap.at_ms >= since:
            return list(snap.items or [])
        if time.monotonic() >= until:
            log.warning("square-off of %s: no read of the positions stored within %.0f s; closing what the "
                        "snapshot shows", account, SQUARE_OFF_WAIT_S)
            return list(snap.items or [])


def _tick(r: redis.Redis, account: str, key: str) -> Decimal:
    from common import instruments

    inst = instruments.lookup(account, key, r)
    return inst.tick_size if inst is not None else Decimal("0.05")


def _square_off(r: redis.Redis, account: str, report: HaltReport, cancelled: list[str]) -> None:
    from common.client import place_order
    from common.settings import account as account_of

    # The positions are read once no fill of the account is still to be learned: an entry sent
    # just before the halt and not answered, and an order the halt cancels whose fill shows only
    # when its cancel runs (a MARKET entry answered OPEN). Read meanwhile, the snapshot may miss a
    # fill, or count one twice (the read has it and its push comes after: the 1,000-order runaway's
    # exit was one over). The exits ride the urgent lane behind those cancels anyway. Bounded: the
    # order path's send window plus the cancels at the account's cap.
    until = time.monotonic() + SQUARE_OFF_WAIT_S + _cancels_s(account, len(cancelled))
    while (_in_flight(r, account) or _unsettled(r, cancelled)) and time.monotonic() < until:
        time.sleep(0.05)
    try:
        positions = _positions_read_now(r, account)
    except Exception as e:  # the broker could not be read: say so; the cancels stand
        report.errors.append(f"positions of {account} not read: {e}")
        return
    refused = account_of(account).market_orders == "refused"
    for p in positions:
        if not p.quantity:
            continue
        side = "SELL" if p.quantity > 0 else "BUY"
        # Where the broker refuses MARKET orders (and the account did not choose brokergate's
        # protection), the exit is a LIMIT through the fresh read's last price by the band.
        kind: dict[str, Any] = {"order_type": "MARKET"}
        if refused and p.last_price:
            kind = {"order_type": "LIMIT",
                    "price": limit_price(Side(side), p.last_price, SQUARE_OFF_BAND_PCT, _tick(r, account, p.key))}
        try:
            h = place_order(account=account, exchange=p.exchange, symbol=p.symbol, side=side,
                            quantity=abs(p.quantity), product=p.product, reduce_only=True, urgent=True, **kind)
            report.exits.append(h.id)
        except Exception as e:
            report.errors.append(f"square-off {p.key}: {e}")


def halt(accounts: list[str] | None, reason: str, *, square_off: bool = False, by: str = "cli",
         r: redis.Redis | None = None) -> HaltReport:
    """Halt ``accounts`` (None: every account, present and future): from now on no entry is
    sent; cancel every order that may be at the broker; with ``square_off``, close every open
    position with MARKET reduce_only orders. Returns what was done; idempotent (halting again
    cancels what is open again)."""
    from common.settings import accounts as configured

    if not reason.strip():
        raise ValueError("a halt needs a reason")
    r = r or get_redis()
    targets = list(accounts) if accounts is not None else list(configured())
    hashes = [keys.halt(name) for name in targets] if accounts is not None else [keys.HALT_ALL]
    # The halt's time is taken in Redis with the write: entries the gate let go before it were
    # sent at or before it, none after (a clock read before the write would leave a gap).
    at = int(_HALT_SET(r, hashes, [reason, by, "1" if square_off else "", keys.HALT_CHANNEL,
                                   f"{','.join(accounts) if accounts is not None else ALL} halted"]))
    log.warning("HALT %s by %s: %s", "every account" if accounts is None else ", ".join(targets), by, reason)
    report = HaltReport(accounts=targets, at_ms=at)
    for name in targets:
        # Cancels first: the drain only settles entries the gate refuses anyway, and settling 200
        # of them one by one held the cancels back ~0.3 s (bench/safety.py).
        before = len(report.cancels)
        _cancel_open(r, name, report)
        _drop_queued_entries(r, name, reason, report)
        if square_off:
            _square_off(r, name, report, report.cancels[before:])
    return report


def resume(accounts: list[str] | None, *, by: str = "cli", r: redis.Redis | None = None) -> list[str]:
    """Lift the halt of ``accounts`` (None: the halt of every account, and every account's own).
    Returns the scopes lifted."""
    r = r or get_redis()
    scopes = [ALL, *(h.scope for h in halts(r) if h.scope != ALL)] if accounts is None else list(accounts)
    with r.pipeline(transaction=True) as p:
        for s in scopes:
            p.delete(keys.HALT_ALL if s == ALL else keys.halt(s))
        p.publish(keys.HALT_CHANNEL, f"{','.join(scopes)} resumed")
        p.execute()
    log.warning("RESUME %s by %s", ", ".join(scopes), by)
    return scopes
