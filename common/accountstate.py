"""Account state in Redis: positions, holdings, funds and trades, fresh within the caps.

One snapshot per account and kind (:data:`KINDS`), in hash :func:`keys.account_state` (one field per
position, holding or trade; ``funds`` one field), with its times in :func:`keys.account_state_meta`:
``<kind>_at_ms`` when it was last read from the broker, ``<kind>_pushed_ms`` when a pushed fill
last changed it. A reader gets it from Redis in well under a millisecond with its age
(:class:`Snapshot`), never from the broker.

What keeps them fresh:

* **Pushed fills** (:func:`apply_fill`): when a postback, the order socket or a reconcile shows an
  order's fill grow (``common/orderstore.py:apply``), the position and the trade book move at
  once, with no REST request.
* **Reads from the broker** (:func:`refresh`), on the ``portfolio`` endpoint class of the account's
  limiter (:data:`common.brokers.base.PORTFOLIO`; the account's ``other`` caps where the broker has no
  class of its own): after every login, after an order socket reconnects, on demand
  (``max_age_s``, ``brokergate positions --max-age-s 0``), and every ``account_state_every_s``
  (Beat, ``brokergate.refresh_account_state``), never in a loop. A read corrects whatever drift a
  missed postback left.
* **Single flight**: one process reads a kind of an account at a time (lock
  :func:`keys.account_state_refreshing`); everyone else asking meanwhile waits for that read and
  gets its result (pub/sub :func:`keys.account_state_channel`), so a strategy that asks with
  ``max_age_s=0`` in a loop costs at most the cap's rate of requests.
* **A read never undoes a newer push**: a positions or trades read answered while a fill was
  pushed after it was asked may miss that fill, so it is not stored (the snapshot with the pushed
  fill stays, and the next read corrects both). The other way round, a fill pushed shortly after
  a read may be in it already (the broker had it when asked, its update came later): then the
  workers read positions and trades again at once (:data:`READ_RACE_MS`), so a fill counted twice
  lasts one read, not until Beat's next.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Final, Literal

import redis

from common import keys
from common.brokers import spec_for
from common.brokers.base import PORTFOLIO, BrokerAdapter, adapter_for
from common.errors import BrokerGateError, TokenExpired
from common.lua import LuaScript, release_lock, script_text
from common.models import Instrument, Order
from common.portfolio import Funds, Holding, Margin, Position, Trade, position_key, with_fill
from common.ratelimit import Limiter
from common.redis import HashFields, as_text, get_redis, server_time_ms
from common.settings import Account, account

__all__ = [
    "KINDS", "Kind", "Snapshot", "apply_fill", "get", "margin_required", "read", "refresh", "store",
]  # fmt: skip

log = logging.getLogger(__name__)

Kind = Literal["positions", "holdings", "funds", "trades"]
KINDS: Final[tuple[Kind, ...]] = ("positions", "holdings", "funds", "trades")
FUNDS_FIELD = "funds"
REFRESH_TIMEOUT_S = 10.0  # a read waits this long at most for its slot and the broker's answer
_LOCK_MS = int((REFRESH_TIMEOUT_S + 5) * 1000)  # outlives a read, so a crashed reader frees it soon
_PUSH_RETRIES = 20
# A fill pushed within this of the last positions read may be in it already: read again (see
# _ask_for_a_read). Longer than a fill's way from the broker to us after the broker counted it.
READ_RACE_MS = 5_000

_DECODE: dict[str, Callable[[dict[str, Any]], Any]] = {
    "positions": Position.from_dict, "holdings": Holding.from_dict, "trades": Trade.from_dict, "funds": Funds.from_dict,
}


@dataclass(frozen=True)
class Snapshot:
    """One kind of an account's state as Redis holds it. ``items``: a list of positions, holdings
    or trades, or the :class:`Funds` (None before the first read)."""

    kind: str
    items: Any
    at_ms: int  # last read from the broker (Redis epoch ms; 0: never)
    pushed_ms: int  # last pushed fill applied (0: none since the read)
    now_ms: int
    prices: dict[str, Decimal] = field(default_factory=dict)  # EXCHANGE:SYMBOL -> last price (with_prices)

    @property
    def age_s(self) -> float | None:
        """Seconds since the broker was last read (None: never read)."""
        return (self.now_ms - self.at_ms) / 1000 if self.at_ms else None

    def to_dict(self) -> dict[str, Any]:
        items = self.items.to_dict() if isinstance(self.items, Funds) else (
            None if self.items is None else [i.to_dict() for i in self.items])
        return {"kind": self.kind, "items": items, "at_ms": self.at_ms, "pushed_ms": self.pushed_ms,
                "age_s": self.age_s}


def _field(item: Any) -> str:
    if isinstance(item, Position):
        return item.key
    if isinstance(item, Holding):
        return f"{item.exchange}:{item.symbol}"
    if isinstance(item, Trade):
        return item.trade_id
    return FUNDS_FIELD


def _encode(item: Any) -> str:
    return json.dumps(item.to_dict(), separators=(",", ":"))


_READ = LuaScript(script_text("account_state_read"))
_DECODED: dict[tuple[str, bytes], Any] = {}  # raw JSON -> model: a snapshot changes little between reads
_DECODED_MAX = 20_000


def _decode(kind: str, raw: bytes) -> Any:
    got = _DECODED.get((kind, raw))
    if got is None:
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.clear()
        got = _DECODED[(kind, raw)] = _DECODE[kind](json.loads(raw))
    return got


def read(r: redis.Redis, account_name: str, kind: Kind, *, with_prices: bool = False) -> Snapshot:
    """The snapshot as stored, in one round trip; ``with_prices``: the positions' last prices from
    the feed too (``Snapshot.prices``, by ``EXCHANGE:SYMBOL``)."""
    rows, at, pushed, now, prices = _READ(
        r, [keys.account_state(account_name, kind), keys.account_state_meta(account_name), keys.LTP],
        [kind, "1" if with_prices and kind == "positions" else ""])
    raws = rows[1::2]
    values = [_decode(kind, v if isinstance(v, bytes) else str(v).encode()) for v in raws]
    items: Any = sorted(values, key=_field)
    if kind == "funds":
        items = values[0] if values else None
    marks = {f"{v.exchange}:{v.symbol}": Decimal(as_text(p)) for v, p in zip(values, prices, strict=False) if p}
    return Snapshot(kind, items, int(at or 0), int(pushed or 0), int(now), marks)


def store(r: redis.Redis, account_name: str, kind: Kind, items: Any, asked_ms: int) -> bool:
    """Replace the snapshot with a read from the broker asked at ``asked_ms`` (Redis ms), atomically
    (readers see the old one or the new one). Not stored (False) when a fill was pushed into it
    after ``asked_ms``: the answer may predate that fill (see the module docstring)."""
    live, meta = keys.account_state(account_name, kind), keys.account_state_meta(account_name)
    rows = [items] if isinstance(items, Funds) else list(items)
    mapping: HashFields = {_field(i): _encode(i) for i in rows}
    tmp = f"{live}:tmp:{uuid.uuid4().hex}"
    if mapping:
        r.hset(tmp, mapping=mapping)
        r.expire(tmp, 60)
    try:
        with r.pipeline(transaction=True) as p:
            while True:
                try:
                    p.watch(meta)
                    pushed = p.hget(meta, f"{kind}_pushed_ms")
                    if kind in ("positions", "trades") and int(pushed or 0) >= asked_ms:
                        p.unwatch()
                        return False
                    p.multi()
                    if mapping:
                        p.rename(tmp, live)
                        p.persist(live)
                    else:
                        p.delete(live)
                    p.hset(meta, mapping={f"{kind}_at_ms": asked_ms, f"{kind}_pushed_ms": 0})
                    p.publish(keys.account_state_channel(account_name), kind)
                    p.execute()
                    return True
                except redis.WatchError:
                    continue
    finally:
        r.delete(tmp)


def _limited(r: redis.Redis, acct: Account, read: str, deadline_ms: int, call: Callable[[], Any]) -> Any:
    """``call`` in a slot of the account's caps for the broker's ``read`` class (else ``portfolio``)."""
    limiter = Limiter.for_account(r, acct, spec_for(acct.broker).read_classes.get(read, PORTFOLIO))
    with limiter.used(limiter.acquire(deadline_ms)):
        return call()


def _read_from_broker(r: redis.Redis, acct: Account, kind: Kind, adapter: BrokerAdapter | None,
                      relogin: bool) -> None:
    from common import tokens

    asked_ms = server_time_ms(r)
    deadline_ms = asked_ms + int(REFRESH_TIMEOUT_S * 1000)
    call = getattr(adapter or adapter_for(acct), kind)
    try:
        items = _limited(r, acct, kind, deadline_ms, call)
    except TokenExpired:
        if not relogin:
            raise
        tok = tokens.get_token(acct.name)
        tokens.relogin(acct.name, tok.version if tok else 0, refresh_instruments=False)
        asked_ms = server_time_ms(r)
        items = _limited(r, acct, kind, deadline_ms, call)
    if kind != "funds":
        items = _generic_names(r, acct.name, items)
    if not store(r, acct.name, kind, items, asked_ms):
        log.info("account state: %s %s read not stored: a fill was pushed after it was asked", acct.name, kind)


def _generic_names(r: redis.Redis, account_name: str, items: list[Any]) -> list[Any]:
    """Rows named as the instrument master names them (a derivative by its generic key: the broker
    reports ``NIFTY25D1624000CE``, the strategy trades ``NIFTY:2025-12-16:24000:CE``), found by the
    row's token in the master's reverse map; a row whose token the master does not know, or knows
    on another exchange (tokens repeat across segments at some brokers), keeps its own name."""
    from common.instruments import token_field

    fields = [token_field(i.exchange, i.token) if i.token else "" for i in items]
    wanted = [f for f in fields if f]
    if not wanted:
        return items
    found = dict(zip(wanted, r.hmget(keys.instrument_tokens(account_name), wanted), strict=True))
    out = []
    for item, f in zip(items, fields, strict=True):
        key = as_text(found.get(f) or b"")
        _, _, symbol = key.partition(":")
        if key and symbol != item.symbol:
            item = replace(item, symbol=symbol)
        out.append(item)
    return out


def refresh(account_name: str, kind: Kind, r: redis.Redis | None = None, *, adapter: BrokerAdapter | None = None,
            relogin: bool = False) -> Snapshot:
    """Read ``kind`` from the broker (single flight: when another process is reading it, wait for
    its answer instead) and return the snapshot. ``relogin``: renew a refused token once
    (processes that hold the account's secrets: workers). Raises TokenExpired, RateLimited,
    BrokerUnavailable, DeadlineExceeded (no slot within :data:`REFRESH_TIMEOUT_S`) as the read does."""
    r = r or get_redis()
    acct = account(account_name)
    lock = keys.account_state_refreshing(account_name, kind)
    # Single flight: a read stored after this one's start is the answer (one under way when we
    # came is shared, as Go's singleflight shares a call in flight).
    before_ms = read(r, account_name, kind).at_ms
    give_up = time.monotonic() + REFRESH_TIMEOUT_S
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.account_state_channel(account_name))
    try:
        while True:
            me = uuid.uuid4().hex
            if r.set(lock, me, nx=True, px=_LOCK_MS):
                try:
                    _read_from_broker(r, acct, kind, adapter, relogin)
                finally:
                    release_lock(r, lock, me)
                return read(r, account_name, kind)
            # Someone is reading: their answer is ours.
            while time.monotonic() < give_up:
                got = pubsub.get_message(timeout=min(0.05, max(0.0, give_up - time.monotonic())))
                if got and as_text(got["data"]) == kind:
                    snap = read(r, account_name, kind)
                    if snap.at_ms > before_ms:
                        return snap
                if not r.exists(lock):
                    break  # the reader is done (or failed): read it or take the lock
            snap = read(r, account_name, kind)
            if snap.at_ms > before_ms:
                return snap
            if time.monotonic() >= give_up:
                raise BrokerGateError(f"{account_name}: {kind} not read within {REFRESH_TIMEOUT_S:g} s")
    finally:
        pubsub.close()


def margin_required(account_name: str, orders: Sequence[tuple[Order, Instrument | None]],
                    r: redis.Redis | None = None) -> Margin:
    """The broker's margin calculator for ``orders`` of one account (nothing is placed), through
    the limiter (the broker's ``margins`` read class, else ``portfolio``)."""
    r = r or get_redis()
    acct = account(account_name)
    margin: Margin = _limited(r, acct, "margins", server_time_ms(r) + int(REFRESH_TIMEOUT_S * 1000),
                              lambda: adapter_for(acct).margin_required(list(orders)))
    return margin


def get(account_name: str, kind: Kind, max_age_s: float | None = None, r: redis.Redis | None = None, *,
        with_prices: bool = False) -> Snapshot:
    """The snapshot from Redis; read from the broker first (through the limiter, single flight)
    only when there is none yet (never read, no fill pushed), or ``max_age_s`` is given and the
    last read is older than that (0: always)."""
    r = r or get_redis()
    snap = read(r, account_name, kind, with_prices=with_prices)
    never = snap.at_ms == 0 and snap.pushed_ms == 0
    if never or (max_age_s is not None and (snap.age_s is None or snap.age_s > max_age_s or max_age_s == 0)):
        refresh(account_name, kind, r)
        return read(r, account_name, kind, with_prices=with_prices)
    return snap


def apply_fill(r: redis.Redis, account_name: str, request: dict[str, Any], *, quantity: int, price: Decimal,
               broker_order_id: str, client_order_id: str, filled_total: int) -> None:
    """A pushed fill of ``quantity`` at ``price`` of the order ``request`` (its stored generic
    fields): the position moves and the trade book gains the fill at once (one transaction;
    retried while another fill of the account lands at the same moment)."""
    exchange, symbol, product = str(request["exchange"]), str(request["symbol"]), str(request.get("product") or "")
    side = str(request["side"])
    pkey = position_key(exchange, symbol, product)
    positions = keys.account_state(account_name, "positions")
    trades = keys.account_state(account_name, "trades")
    meta = keys.account_state_meta(account_name)
    # The fill's own id: the order's cumulative fill is unique per fill of it, and a replay of
    # the same update can't reach here (the order store applies a fill once).
    trade = Trade(trade_id=f"push:{client_order_id}:{filled_total}", broker_order_id=broker_order_id,
                  exchange=exchange, symbol=symbol, product=product, side=side, quantity=quantity, price=price,
                  client_order_id=client_order_id)
    # The push's time goes into the same transaction as the fill: a read from the broker asked
    # before it then never overwrites it (store() watches the meta hash).
    now = server_time_ms(r)
    with r.pipeline(transaction=True) as p:
        for _ in range(_PUSH_RETRIES):
            try:
                p.watch(positions)
                raw = p.hget(positions, pkey)
                read_at = int(p.hget(meta, "positions_at_ms") or 0)
                old = Position.from_dict(json.loads(raw)) if raw else None
                new = with_fill(old, exchange=exchange, symbol=symbol, product=product, side=side,
                                quantity=quantity, price=price)
                p.multi()
                p.hset(positions, pkey, _encode(new))
                p.hset(trades, trade.trade_id, _encode(trade))
                p.hset(meta, mapping={"positions_pushed_ms": now, "trades_pushed_ms": now})
                p.publish(keys.account_state_channel(account_name), "positions")
                p.publish(keys.account_state_channel(account_name), "trades")
                p.execute()
                if read_at and now - read_at < READ_RACE_MS:
                    _ask_for_a_read(r, account_name)
                return
            except redis.WatchError:
                continue
    log.error("account state: %s fill of %s not applied (contention); the next read corrects it",
              account_name, client_order_id)


_pending: queue.SimpleQueue[tuple[str, dict[str, Any], dict[str, Any]]] = queue.SimpleQueue()
_applier_pid = 0
_applier_lock = threading.Lock()


def apply_fill_soon(account_name: str, request: dict[str, Any], **fill: Any) -> None:
    """:func:`apply_fill` on this process's one applier thread, off the caller's path: a postback
    or an order update returns at once, and the fills of one process move the positions one after
    another instead of contending for them (a burst of fills of one account retried its
    transactions: the postback receiver fell from ~970 to 140 postbacks/s). A fill still pending
    when the process dies is corrected by the next read from the broker."""
    global _applier_pid
    if _applier_pid != os.getpid():  # first use, or a forked child: its own thread
        with _applier_lock:
            if _applier_pid != os.getpid():
                threading.Thread(target=_apply_pending, name="account-state-fills", daemon=True).start()
                _applier_pid = os.getpid()
    _pending.put((account_name, request, fill))


def _apply_pending() -> None:
    while True:
        account_name, request, fill = _pending.get()
        try:
            apply_fill(get_redis(), account_name, request, **fill)
        except Exception:  # a fill left out is corrected by the next read; the thread goes on
            log.exception("account state: %s fill not applied", account_name)


def _ask_for_a_read(r: redis.Redis, account_name: str) -> None:
    """A fill pushed just after a read may be in that read already (the broker had it when asked;
    its update came later) and is now counted twice: the workers read positions and trades again
    at once (at most one request a :data:`READ_RACE_MS` per account) instead of at Beat's interval."""
    if not r.set(keys.account_state_refreshing(account_name, "reread"), "1", nx=True, px=READ_RACE_MS):
        return
    try:
        from common.client import send_task_by_name

        send_task_by_name(keys.ACCOUNT_STATE_TASK, args=[account_name], kwargs={"kinds": ["positions", "trades"]},
                          queue=keys.DEFAULT_QUEUE)
    except Exception as e:  # Beat's periodic read corrects it then
        log.warning("account state: %s: could not ask for a read after a fill: %s", account_name, e)


def refresh_all(account_name: str, kinds: Sequence[Kind] = KINDS, *, relogin: bool = True) -> dict[str, int]:
    """Read every kind from the broker (the reconcile: Beat, login, reconnect, on demand): how many
    items each now holds."""
    out: dict[str, int] = {}
    for kind in kinds:
        snap = refresh(account_name, kind, relogin=relogin)
        out[kind] = 0 if snap.items is None else (1 if isinstance(snap.items, Funds) else len(snap.items))
    return out
