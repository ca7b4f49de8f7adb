"""What a strategy imports: ``from common.client import place_order, cancel_order, modify_order,
get_order, orders, subscribe_ticks``.

``place_order`` validates the order (fields, then lot and tick size from the instrument
master when it is loaded) before anything is enqueued: an invalid order raises
:class:`InvalidOrder` naming the field and nothing is stored or sent. A valid order is
stored as NEW with its deadline on Redis time and enqueued by task name on its account's
queue (or the urgent lane); the returned :class:`OrderHandle` waits on the order store,
which postbacks, order-update sockets and the worker feed (no order-book polling).

Example::

    from common.client import place_order

    h = place_order(account="acct1", exchange="NSE", symbol="INFY", side="BUY", quantity=1)
    result = h.wait(10)          # {"state": "OPEN" | "COMPLETE" | ..., "average_price": ...}
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any, cast

import redis
from celery import Celery

from common import accountstate, keys, orderstore, risk, safety, slicing, tradingday
from common.chains import atm_strike, expiries, future, option_chain
from common.derivatives import is_derivative_symbol
from common.errors import ConfigError, InvalidOrder
from common.models import DEFAULT_DEADLINE_S, Instrument, Order, OrderType, OrderUpdate, new_client_order_id
from common.order_updates import Handle, at_broker_or_settled, order_updates, wait_stored
from common.orderstate import OrderState
from common.portfolio import Funds, Holding, Margin, Position, Trade
from common.redis import get_redis, redis_conf, server_time_ms
from common.redisconf import RedisConf, celery_conf
from common.risklimits import day_pnl
from common.settings import Account, account
from common.ticks import subscribe_ticks

__all__ = [
    "OrderHandle", "account_state", "atm_strike", "cancel_order", "expiries", "funds", "future", "get_order", "halt",
    "holdings", "margin_required", "modify_order", "option_chain", "orders", "place_order", "pnl", "positions",
    "resume", "subscribe_ticks", "trades",
]  # fmt: skip

MODIFIABLE = frozenset({"quantity", "price", "trigger_price", "order_type", "validity"})


_lock = threading.Lock()
_apps: dict[tuple[int, RedisConf], Celery] = {}


def _celery() -> Celery:
    """A producer-only Celery app (no worker code imported), one per process and Redis
    configuration (plain, TLS + ACL or Sentinel: common/redisconf.py)."""
    conf = redis_conf()
    key = (os.getpid(), conf)
    with _lock:
        app = _apps.get(key)
        if app is None:
            app = Celery("brokergate-client", set_as_current=False)
            # No result backend: the client never reads a result, and with one Celery's send_task
            # of a task it does not know subscribes and unsubscribes a result channel per message
            # (two more commands on every place, cancel and modify).
            producer_only = {k: v for k, v in celery_conf(conf).items() if not k.startswith(("result_backend", "redis_backend"))}
            app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True,
                            broker_connection_retry_on_startup=True, **producer_only)
            _apps[key] = app
        return app


def send_task_by_name(name: str, *, args: list[Any], queue: str, kwargs: dict[str, Any] | None = None) -> None:
    """Enqueue a task by its stable name with this process's producer: how common/ asks the
    workers for work (e.g. an instrument refresh) without importing their code."""
    _celery().send_task(name, args=args, kwargs=kwargs or {}, queue=queue)


class OrderHandle(Handle):
    """A placed order: ``.id`` now, ``.wait()`` for the broker's acknowledgement or the end."""

    def get(self) -> dict[str, Any] | None:
        return orderstore.get(self.r, self.id)

    def wait(self, timeout_s: float | None = 30.0, *, final: bool = False) -> dict[str, Any]:
        """The order once the broker has it (OPEN) or it is settled (COMPLETE, REJECTED, CANCELLED,
        FAILED, EXPIRED); with ``final=True`` only once settled. Returns the stored order (state,
        broker_order_id, filled_quantity, average_price, error, history, ...). Raises TimeoutError."""
        return wait_stored(self.r, [self.id], self.get, lambda got: at_broker_or_settled(got["state"], final),
                           timeout_s, self.id)

    def updates(self, timeout_s: float | None = None) -> Iterator[OrderUpdate]:
        """This order's updates: the order as stored now, then each pushed update, ending once
        it is settled; TimeoutError after ``timeout_s`` without an update (see
        :func:`common.order_updates.order_updates`)."""
        return order_updates(self.id, self.account, timeout_s=timeout_s, r=self._r)

    def cancel(self, deadline_s: float | None = None) -> None:
        cancel_order(self.id, deadline_s=deadline_s)

    def modify(self, **changes: Any) -> None:
        modify_order(self.id, **changes)

    def __repr__(self) -> str:
        return f"OrderHandle({self.id!r}, account={self.account!r})"


def _validate(order: Order, *, placing: bool = True) -> Order:
    """The order checked as the broker would (see :func:`_validated`)."""
    return _validated(order, placing=placing)[0]


def _validated(order: Order, *, placing: bool = True) -> tuple[Order, Instrument | None]:
    """The order checked as the broker would (fields, then lot and tick size from the instrument
    master when it is loaded), with its instrument (None: no master loaded); ``placing``: also
    that its broker takes its order type from API clients (a margin query for an order that may
    not be placed is still answered)."""
    order, acct = _account_checked(order, placing=placing)
    from common import instruments

    r = get_redis()
    inst = instruments.lookup(order.account, order.instrument_key, r)
    loaded = inst is not None or bool(r.exists(keys.instruments(order.account)))
    _check_against_master(order, acct, inst, loaded, lambda: server_time_ms(r))
    return order, inst


def _account_checked(order: Order, *, placing: bool) -> tuple[Order, Account]:
    """The checks the accounts file alone decides (the account exists; its broker takes the order
    type), with the account's default deadline applied."""
    try:
        acct = account(order.account)
    except ConfigError as e:
        raise InvalidOrder("account", str(e)) from None
    if placing:
        _check_market_orders(order, acct)
    if order.deadline_s == DEFAULT_DEADLINE_S and acct.deadline_s != order.deadline_s:
        order = order.with_(deadline_s=acct.deadline_s)  # the account's default deadline
    return order, acct


def _check_against_master(order: Order, acct: Account, inst: Instrument | None, master_loaded: bool,
                          now_ms: Callable[[], int]) -> None:
    """The checks the instrument master decides: lot and tick size, expiry (``now_ms``: Redis
    time, asked only for a contract with an expiry), a symbol a loaded master does not know, a
    derivative without a master. Pure, so a group's children are judged from one batched read."""
    if inst is not None:
        order.check_instrument(inst)
        if inst.expiry is not None and inst.expiry < tradingday.local_date(acct, now_ms()):
            raise InvalidOrder("symbol", f"{order.instrument_key} expired on {inst.expiry.isoformat()}")
    elif master_loaded:
        # The master is loaded and does not know it: the broker would refuse it (and count it).
        raise InvalidOrder("symbol", f"{order.instrument_key} is not in the instrument master of {order.account}")
    elif is_derivative_symbol(order.symbol):
        raise InvalidOrder("symbol", f"{order.instrument_key}: no instrument master of {order.account} is loaded "
                                     "(a derivative is placed by looking it up there)")


def _check_market_orders(order: Order, acct: Account) -> None:
    """A MARKET or SL-M order on an account whose broker refuses them from API clients (the 2026
    retail-algo rules; ``BrokerSpec.market_orders``) is refused here, naming ``order_type``: the
    broker would refuse it and count the attempt, and converting it to a LIMIT silently would
    change what the strategy asked for."""
    if order.order_type not in (OrderType.MARKET, OrderType.SL_M):
        return
    if acct.market_orders == "refused":
        raise InvalidOrder("order_type", f"{acct.broker} refuses {order.order_type.value} orders from API clients "
                           "under the SEBI retail-algo rules (since 1 April 2026); place a LIMIT or SL order "
                           f"(or set extra.market_orders = \"plain\" on account {acct.name} if its broker takes them)")


def place_order(order: Order | dict[str, Any] | None = None, /, **fields: Any) -> OrderHandle | slicing.SlicedHandle:
    """Validate, store as NEW and enqueue an order; returns its handle.

    Pass an :class:`Order`, a dict of its fields, or the fields as keywords. Raises
    :class:`InvalidOrder` (naming the field), :class:`Halted` (the account is halted and the
    order is no ``reduce_only`` exit), or :class:`RiskRefused` (a risk limit of its account or
    strategy, named; common/risk.py), before anything is stored or enqueued. A derivative order
    above its contract's freeze quantity is sliced into at most ten children that settle as one
    parent (a :class:`common.slicing.SlicedHandle`; more than ten slices: InvalidOrder)."""
    if isinstance(order, Order):
        o = order.with_(**fields) if fields else order
    else:
        o = Order.from_dict({**(order or {}), **fields})
    o, inst = _validated(o)
    r = get_redis()
    safety.check_entry(o, r)
    risk.check(o, r)
    # Slices above the freeze quantity (only a derivative's master row carries one).
    sizes = slicing.plan(o.quantity, inst.lot_size, inst.freeze_quantity) if inst else [o.quantity]
    if len(sizes) > 1:
        return _place_sliced(r, o, sizes)
    return _enqueue(r, o)


def _place_sliced(r: redis.Redis, parent: Order, sizes: list[int]) -> slicing.SlicedHandle:
    """Above the freeze quantity: a parent record, then each child placed as an order of its own."""
    children = [parent.with_(quantity=q, client_order_id=new_client_order_id()) for q in sizes]
    slicing.store_parent(r, parent, children, orderstore.retention_ms())
    for child in children:
        _enqueue(r, child)
    return slicing.SlicedHandle(parent.client_order_id, parent.account, [c.client_order_id for c in children],
                                parent.to_dict(), r)


def _enqueue(r: redis.Redis, o: Order) -> OrderHandle:
    orderstore.create(r, o, source="client")
    queue = keys.place_queue(o.account, o.urgent)
    try:
        _celery().send_task(keys.PLACE_TASK, args=[o.to_dict()], queue=queue)
    except Exception as e:
        # Not enqueued: it can never be sent, so say so now instead of at its deadline. The
        # publish may have got through before it failed: if a worker already claimed the order,
        # it is on its way and the handle is the truth, not the exception.
        if orderstore.transition(r, o.client_order_id, OrderState.FAILED, allowed_from={OrderState.NEW},
                                 source="client", message=f"not enqueued: {e}"):
            raise
    else:
        orderstore.mark_enqueued(r, o.client_order_id)
    return OrderHandle(o.client_order_id, o.account, r)


def get_order(client_order_id: str) -> dict[str, Any] | None:
    """The stored order (see :func:`common.orderstore.get`), or None. A settled order is kept for
    ``BROKERGATE_ORDER_RETENTION_DAYS`` (default 7) after it settled, then None. A sliced order's
    id gives the parent: its children summed (:func:`common.slicing.aggregate`)."""
    r = get_redis()
    got = orderstore.get(r, client_order_id)
    if got is not None:
        return got
    parent = slicing.read_parent(r, client_order_id)
    if parent is None:
        return None
    return slicing.SlicedHandle(client_order_id, parent["request"]["account"], parent["children"],
                                parent["request"], r).get()


def orders(account: str, since_ms: int | None = None, *, open_only: bool = False) -> list[dict[str, Any]]:
    """The account's stored orders created at or after ``since_ms`` (epoch ms; None: all still
    kept, i.e. created within the retention), newest first, each as :func:`get_order` reads it;
    ``open_only``: only those not settled yet (what a restarted strategy must manage again).
    For a strategy that restarts and must find its orders again, or an end-of-day report."""
    return orderstore.account_orders(get_redis(), account, since_ms, open_only=open_only)


# --- account state: from Redis (common/accountstate.py); ``max_age_s`` reads the broker first -----
def account_state(account: str, kind: accountstate.Kind, max_age_s: float | None = None) -> accountstate.Snapshot:
    """One kind (positions, holdings, funds, trades) with its age. From Redis; read from the
    broker first (through the limiter, one read shared by every caller) when there is none yet
    or it is older than ``max_age_s`` (0: always)."""
    return accountstate.get(account, kind, max_age_s)


def positions(account: str, max_age_s: float | None = None, *, marked: bool = True) -> list[Position]:
    """The account's positions. ``marked``: last price and unrealised P&L from the live ticks
    (``bg:ltp``) where the feed has them, instead of as of the last read or fill (one round trip
    either way)."""
    snap = accountstate.get(account, "positions", max_age_s, with_prices=marked)
    got: list[Position] = snap.items
    if not marked or not snap.prices:
        return got
    out = []
    for p in got:
        last = snap.prices.get(f"{p.exchange}:{p.symbol}")
        out.append(p if last is None else replace(
            p, last_price=last, unrealised_pnl=(last - p.average_price) * p.quantity * p.multiplier))
    return out


def holdings(account: str, max_age_s: float | None = None) -> list[Holding]:
    return cast(list[Holding], account_state(account, "holdings", max_age_s).items)


def funds(account: str, max_age_s: float | None = None) -> Funds | None:
    """Funds and margins (None only if the broker was never read and could not be)."""
    return cast(Funds | None, account_state(account, "funds", max_age_s).items)


def trades(account: str, max_age_s: float | None = None) -> list[Trade]:
    return cast(list[Trade], account_state(account, "trades", max_age_s).items)


def margin_required(orders: Order | dict[str, Any] | Sequence[Order | dict[str, Any]]) -> Margin:
    """What an order (or a basket, all of one account) needs, from the broker's own margin
    calculator, before it is placed; validated first as :func:`place_order` does (InvalidOrder
    names the field). Nothing is stored or sent. One request of the account's read budget."""
    items = [orders] if isinstance(orders, (Order, dict)) else list(orders)
    parsed = [_validated(o if isinstance(o, Order) else Order.from_dict(o), placing=False) for o in items]
    if not parsed:
        raise InvalidOrder("orders", "no order to price")
    names = {o.account for o, _ in parsed}
    if len(names) > 1:
        raise InvalidOrder("account", f"a basket is of one account, not {sorted(names)}")
    return accountstate.margin_required(parsed[0][0].account, parsed)


def halt(accounts: str | Sequence[str] | None, reason: str, *, square_off: bool = False) -> safety.HaltReport:
    """The kill switch (``brokergate halt``): ``accounts`` (one, several, or None for every
    account) send no entry from now on; every order that may be at the broker is cancelled on
    the urgent lane; ``square_off`` closes every open position with MARKET exits."""
    names = [accounts] if isinstance(accounts, str) else (None if accounts is None else list(accounts))
    return safety.halt(names, reason, square_off=square_off, by="client")


def resume(accounts: str | Sequence[str] | None) -> list[str]:
    """Lift the halt of ``accounts`` (None: every halt)."""
    names = [accounts] if isinstance(accounts, str) else (None if accounts is None else list(accounts))
    return safety.resume(names, by="client")


def pnl(account: str) -> Decimal:
    """Today's P&L of the account's positions, realised plus mark-to-market at the live ticks."""
    snap = accountstate.get(account, "positions", with_prices=True)
    return day_pnl(snap.items, snap.prices)


def _stored(client_order_id: str | OrderHandle) -> tuple[str, dict[str, Any]]:
    coid = client_order_id.id if isinstance(client_order_id, OrderHandle) else client_order_id
    got = get_order(coid)
    if got is None:
        raise InvalidOrder("client_order_id", f"no order {coid}")
    return coid, got


def cancel_order(client_order_id: str | OrderHandle, *, deadline_s: float | None = None) -> None:
    """Enqueue a cancel on the account's urgent lane."""
    coid, got = _stored(client_order_id)
    # The enqueue time on Redis's clock: the cancel's deadline counts from it, not from when a
    # worker gets to it.
    _celery().send_task(keys.CANCEL_TASK, args=[got["account"], coid, deadline_s, server_time_ms(get_redis())],
                        queue=keys.urgent_queue(got["account"]))


def modify_order(client_order_id: str | OrderHandle, *, deadline_s: float | None = None, **changes: Any) -> None:
    """Enqueue a modification (quantity, price, trigger_price, order_type, validity) on the urgent
    lane; the changed order is validated first (InvalidOrder names the field). Modifies of one
    order are applied one at a time in the order they were enqueued, each onto the last."""
    unknown = sorted(set(changes) - MODIFIABLE)
    if unknown:
        raise InvalidOrder(unknown[0], "cannot be modified")
    coid, got = _stored(client_order_id)
    new = Order.from_dict(got["request"]).with_(**changes)  # validates the changed order
    _validate(new)
    wire = {k: v for k, v in new.to_dict().items() if k in changes}
    # Stamped now, its changes recorded under the seq in the same atomic step: whichever worker
    # runs first sends every earlier seq's changes too, so they compose in this order.
    r = get_redis()
    seq = orderstore.next_modify_seq(r, coid, wire)
    # The enqueue time on Redis's clock: the deadline counts from it (a modify that waited in
    # the queue is not sent stale).
    _celery().send_task(keys.MODIFY_TASK, args=[got["account"], coid, wire, deadline_s, seq, server_time_ms(r)],
                        queue=keys.urgent_queue(got["account"]))
