"""One signal on many accounts: :func:`place_order_group` (``brokergate.place_order_group``).

Algo providers and family desks place one signal on every account of a group
(``[groups.<name>]`` of the accounts file, ``common/groups.py``) or of a list of account names.
Each account gets a child order of its own (its own ``client_order_id``, on its own queue
``orders.<account>``), sized by a :mod:`common.sizing` rule and rounded down to the lot of the
account's instrument master; a group id ties them together (``bg:group:<id>``, expiring with the
order retention like a sliced order's ``bg:parent:<id>``).

**What stops the group, what stops one child.** The template itself is judged first: an
InvalidOrder of its fields (exchange, symbol, side, prices...) refuses the whole group before
anything is stored. Then every child is judged as ``place_order`` judges an order (the account,
its broker's order types, lot and tick size and expiry from its master, the halt, the risk
limits), and a child that fails, or whose size rounds to 0, is a :class:`Refusal` reported for
that account while the others are placed: a signal is worth placing on the accounts that can
take it, and the strategy sees which could not (``GroupHandle.refused``).

**Fast.** Every child is validated before any is stored; the checks read Redis once for the whole
group (each account's instrument, whether its master is loaded, its halt, the time; the risk
check is one round trip per child), then every child is stored in one round trip
(``orderstore.create_many``: the create script pipelined, each create atomic and idempotent as
alone), the group record in one more, and every message is published through one producer in one
kombu publish batch (one pipeline of LPUSHes) before the children are marked enqueued in one
round trip. A publish that fails leaves the children it may not have reached FAILED ("not
enqueued"), exactly as ``place_order`` does for one order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis

from common import accountstate, keys, orderstore, risk, safety, slicing
from common.client import OrderHandle, _account_checked, _celery, _check_against_master, cancel_order
from common.errors import BrokerGateError, Halted, InvalidOrder, RiskRefused
from common.groups import Group, groups
from common.models import Instrument, Order, new_client_order_id
from common.order_updates import at_broker_or_settled, wait_stored
from common.orderstate import TERMINAL_STATES, OrderState
from common.redis import as_text, get_redis
from common.settings import Account
from common.sizing import Fixed, Sizing, SizingInputs, size

__all__ = ["GroupHandle", "Refusal", "get_group", "place_order_group"]

REFUSED = "REFUSED"  # a report's state for an account whose child was never placed
MISSING = "MISSING"  # a report's state for a child no longer stored (past the retention)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an account of a group got no order: ``error`` is the refusal's kind (``InvalidOrder``,
    ``Halted``, ``RiskRefused``, ``Sizing``, ``ConfigError``...), ``field`` the order field or risk
    limit it names, ``message`` the text."""

    account: str
    error: str
    message: str
    field: str = ""

    @classmethod
    def of(cls, account: str, e: Exception) -> Refusal:
        name = e.limit if isinstance(e, RiskRefused) else getattr(e, "field", "")
        return cls(account, type(e).__name__, str(e), str(name or ""))

    def to_dict(self) -> dict[str, str]:
        return {"account": self.account, "error": self.error, "message": self.message, "field": self.field}


Child = OrderHandle | slicing.SlicedHandle | Refusal


# --- judging the children --------------------------------------------------------------------------
def _members(group_or_accounts: str | Sequence[str]) -> tuple[str, list[str], Group | None]:
    if isinstance(group_or_accounts, str):
        g = groups().get(group_or_accounts)
        if g is None:  # a lone account name is a group of one
            return "", [group_or_accounts], None
        return g.name, list(g.accounts), g
    names = list(group_or_accounts)
    if not names:
        raise InvalidOrder("accounts", "no account to place the order on")
    dup = sorted({a for a in names if names.count(a) > 1})
    if dup:
        raise InvalidOrder("accounts", f"{dup[0]!r} is listed twice (it would get the order twice)")
    return "", names, None


def _template(order_template: Order | Mapping[str, Any], first: str, sizing: Sizing | None
              ) -> tuple[dict[str, Any], int]:  # fmt: skip
    """The template's fields in wire form, without account and id, and its quantity (0 when it
    has none); InvalidOrder (the whole group) when they are not an order whatever the account."""
    d = order_template.to_dict() if isinstance(order_template, Order) else dict(order_template)
    d.pop("account", None)
    d.pop("client_order_id", None)
    if sizing is None and "quantity" not in d:
        raise InvalidOrder("quantity", "required in the template when no sizing is given")
    judged = Order.from_dict({"quantity": 1, **d, "account": first})  # every field the template has
    wire = {k: v for k, v in judged.to_dict().items() if k in d}
    return wire, judged.quantity if "quantity" in d else 0


@dataclass
class _Read:
    """What the group's one read found, per account."""

    instruments: dict[str, Instrument | None]
    loaded: dict[str, bool]
    halts: dict[str, safety.Halt | None]
    now_ms: int


def _read(r: redis.Redis, key: str, names: list[str]) -> _Read:
    with r.pipeline(transaction=False) as p:
        for a in names:
            p.hget(keys.instruments(a), key)
            p.exists(keys.instruments(a))
            p.hgetall(keys.halt(a))
        p.hgetall(keys.HALT_ALL)
        p.time()
        got = p.execute()
    every = safety.Halt.of(safety.ALL, got[-2])
    seconds, micros = got[-1]
    insts = {a: Instrument.from_dict(json.loads(got[3 * i])) if got[3 * i] else None for i, a in enumerate(names)}
    return _Read(instruments=insts, loaded={a: bool(got[3 * i + 1]) for i, a in enumerate(names)},
                 halts={a: safety.Halt.of(a, got[3 * i + 2]) or every for i, a in enumerate(names)},
                 now_ms=int(seconds) * 1000 + int(micros) // 1000)


def _margins(names: list[str], sizing: Sizing) -> dict[str, Decimal | Exception | None]:
    out: dict[str, Decimal | Exception | None] = {}
    for a in names:
        try:
            f = accountstate.get(a, "funds", sizing.funds_max_age_s).items
            out[a] = None if f is None else f.available_margin
        except BrokerGateError as e:
            out[a] = e
    return out


@dataclass
class _Child:
    account: str
    order: Order
    slices: list[Order]  # [order] unless sliced above the freeze quantity
    acct: Account


def _judge(r: redis.Redis, d: dict[str, Any], names: list[str], sizing: Sizing, group: Group | None
           ) -> tuple[list[_Child], dict[str, Refusal]]:  # fmt: skip
    """Each account's child, or why it has none."""
    refused: dict[str, Refusal] = {}
    base: dict[str, tuple[Order, Account]] = {}
    for a in names:
        try:
            base[a] = _account_checked(Order.from_dict({"quantity": 1, **d, "account": a}), placing=True)
        except InvalidOrder as e:
            refused[a] = Refusal.of(a, e)
    live = [a for a in names if a in base]
    read = _read(r, base[live[0]][0].instrument_key, live) if live else _Read({}, {}, {}, 0)
    margins = _margins(live, sizing) if sizing.needs_funds else {}
    children = []
    for a in live:
        try:
            children.append(_child(r, a, base[a], read, sizing, group, margins.get(a)))
        except BrokerGateError as e:  # its master, halt or position refused it, or its funds could not be read
            refused[a] = Refusal.of(a, e)
        except _ZeroSize as e:
            refused[a] = Refusal(a, "Sizing", str(e), "quantity")
    return _risk_checked(r, children, refused), refused


def _risk_checked(r: redis.Redis, children: list[_Child], refused: dict[str, Refusal]) -> list[_Child]:
    """The children the risk limits let through (the client's check, as place_order makes it),
    every child's risk read in one round trip; the others refused."""
    kept = []
    reads = risk.read_many(r, [(c.order, c.acct) for c in children]) if children else []
    for c, read in zip(children, reads, strict=True):
        try:
            risk.check(c.order, r, account=c.acct, prefetched=read)
        except RiskRefused as e:
            refused[c.account] = Refusal.of(c.account, e)
        else:
            kept.append(c)
    return kept


class _ZeroSize(Exception):
    pass


def _child(r: redis.Redis, a: str, base: tuple[Order, Account], read: _Read, sizing: Sizing, group: Group | None,
           margin: Decimal | Exception | None) -> _Child:  # fmt: skip
    order, acct = base
    if isinstance(margin, Exception):
        raise margin
    inst = read.instruments[a]
    sized = size(sizing, SizingInputs(a, inst.lot_size if inst else 1,
                                      group.multiplier(a) if group else Decimal(1), margin))
    if not sized.quantity:
        raise _ZeroSize(sized.reason)
    child = order.with_(quantity=sized.quantity, client_order_id=new_client_order_id())
    _check_against_master(child, acct, inst, read.loaded[a], lambda: read.now_ms)
    if child.reduce_only:
        safety.check_entry(child, r)  # an exit: judged against the position, halt or not
    elif (halt := read.halts[a]) is not None:
        raise Halted(a, halt.reason)
    sizes = slicing.plan(child.quantity, inst.lot_size, inst.freeze_quantity) if inst else [child.quantity]
    slices = [child] if len(sizes) == 1 else [child.with_(quantity=q, client_order_id=new_client_order_id())
                                              for q in sizes]
    return _Child(a, child, slices, acct)


# --- storing and sending -------------------------------------------------------------------------
def place_order_group(group_or_accounts: str | Sequence[str], order_template: Order | Mapping[str, Any],
                      sizing: Sizing | None = None) -> GroupHandle:  # fmt: skip
    """Place one order on every account of a group (a ``[groups.<name>]`` of the accounts file) or
    of a list of account names; returns a :class:`GroupHandle`.

    ``order_template``: an Order or a dict of its fields (its account and client_order_id are
    ignored; ``quantity`` may be left out when ``sizing`` is given). ``sizing``: :class:`Fixed`,
    :class:`Multiplier` or :class:`CapitalProportional` (``common/sizing.py``); None: the
    template's quantity on every account. Raises InvalidOrder (naming the field) when the template
    is not an order, or the account list is empty or repeats one; every other refusal (an account
    unknown, halted, over a risk limit, its master refusing the symbol, lot or tick, a size that
    rounds to 0) is that account's :class:`Refusal`, and the rest are placed."""
    name, names, group = _members(group_or_accounts)
    d, quantity = _template(order_template, names[0], sizing)
    rule: Sizing = sizing or Fixed(quantity)
    r = get_redis()
    children, refused = _judge(r, d, names, rule, group)
    children = _store(r, children, refused)
    gid = new_client_order_id()
    _record(r, gid, name, d, names, children, refused)
    _publish(r, children)
    return GroupHandle(gid, name, d, _handles(names, children, refused, r), r)


def _store(r: redis.Redis, children: list[_Child], refused: dict[str, Refusal]) -> list[_Child]:
    """Every child stored NEW in one round trip; a child one of whose orders was not stored is
    refused (its stored siblings, if sliced, FAILED: none was enqueued)."""
    leaves = [o for c in children for o in c.slices]
    failed = {o.client_order_id: e for o, e in zip(leaves, orderstore.create_many(r, leaves), strict=True)
              if isinstance(e, Exception)}
    if not failed:
        return children
    kept = []
    for c in children:
        errors = [failed[o.client_order_id] for o in c.slices if o.client_order_id in failed]
        if not errors:
            kept.append(c)
            continue
        refused[c.account] = Refusal.of(c.account, errors[0])
        for o in c.slices:
            if o.client_order_id not in failed:
                orderstore.transition(r, o.client_order_id, OrderState.FAILED, allowed_from={OrderState.NEW},
                                      source="client", message=f"not enqueued: {errors[0]}")
    return kept


def _record(r: redis.Redis, gid: str, name: str, d: dict[str, Any], names: list[str], children: list[_Child],
            refused: dict[str, Refusal]) -> None:  # fmt: skip
    """``bg:group:<id>`` and the parent record of each sliced child, before any message leaves."""
    retention = orderstore.retention_ms()
    record = {"request": d, "group": name, "accounts": names,
              "children": {c.account: c.order.client_order_id for c in children},
              "sliced": {c.account: [o.client_order_id for o in c.slices] for c in children if len(c.slices) > 1},
              "refused": {a: f.to_dict() for a, f in refused.items()}}
    with r.pipeline(transaction=False) as p:
        for c in children:
            if len(c.slices) > 1:
                slicing.store_parent(p, c.order, c.slices, retention)
        p.set(keys.group_order(gid), json.dumps(record), px=retention)
        p.execute()


def _publish(r: redis.Redis, children: list[_Child]) -> None:
    """Every child's message through one producer in one kombu publish batch (one pipeline of
    LPUSHes instead of a round trip each), then every child marked enqueued in one round trip.
    The messages are what ``place_order`` sends, with ``argsrepr`` given (Celery's own saferepr of
    the order took longer than its publish) and ``ignore_result`` (with a result backend
    configured, Celery would otherwise SUBSCRIBE and UNSUBSCRIBE a result channel per message)."""
    leaves = [o for c in children for o in c.slices]
    if not leaves:
        return
    app = _celery()
    try:
        with app.producer_or_acquire() as producer, producer.batch():
            for o in leaves:
                args = [o.to_dict()]
                app.send_task(keys.PLACE_TASK, args=args, queue=keys.place_queue(o.account, o.urgent),
                              producer=producer, argsrepr=repr(args), kwargsrepr="{}", ignore_result=True)
    except Exception as e:
        # Delivery of the batch is uncertain: settle what no worker has claimed, as place_order
        # does for one order; a child a worker already claimed is on its way.
        for o in leaves:
            orderstore.transition(r, o.client_order_id, OrderState.FAILED, allowed_from={OrderState.NEW},
                                  source="client", message=f"not enqueued: {e}")
        return
    with r.pipeline(transaction=False) as p:
        for o in leaves:
            orderstore.mark_enqueued(p, o.client_order_id)
        p.execute()


def _handles(names: list[str], children: list[_Child], refused: dict[str, Refusal], r: redis.Redis
             ) -> dict[str, Child]:  # fmt: skip
    placed = {c.account: c for c in children}
    out: dict[str, Child] = {}
    for a in names:
        c = placed.get(a)
        if c is None:
            out[a] = refused[a]
        elif len(c.slices) == 1:
            out[a] = OrderHandle(c.order.client_order_id, a, r)
        else:
            out[a] = slicing.SlicedHandle(c.order.client_order_id, a, [o.client_order_id for o in c.slices],
                                          c.order.to_dict(), r)
    return out


# --- the handle ----------------------------------------------------------------------------------
class GroupHandle:
    """One signal's orders on many accounts. ``.children``: account -> its :class:`OrderHandle`
    (a :class:`SlicedHandle` above the freeze quantity) or its :class:`Refusal`, in the group's
    order; ``.placed`` and ``.refused`` split them."""

    def __init__(self, group_id: str, group: str, request: dict[str, Any], children: dict[str, Child],
                 r: redis.Redis | None = None) -> None:  # fmt: skip
        self.id = group_id
        self.group = group
        self.request = request
        self.children = children
        self._r = r

    @property
    def r(self) -> redis.Redis:
        return self._r or get_redis()

    @property
    def placed(self) -> dict[str, OrderHandle | slicing.SlicedHandle]:
        return {a: c for a, c in self.children.items() if not isinstance(c, Refusal)}

    @property
    def refused(self) -> dict[str, Refusal]:
        return {a: c for a, c in self.children.items() if isinstance(c, Refusal)}

    def _leaves(self) -> list[str]:
        return [i for c in self.placed.values() for i in _order_ids(c)]

    def _stored(self) -> dict[str, dict[str, Any] | None]:
        ids = self._leaves()
        return dict(zip(ids, orderstore.get_many(self.r, ids), strict=True)) if ids else {}

    def report(self) -> dict[str, dict[str, Any]]:
        """Per account, in the group's order: ``state`` (an OrderState, ``REFUSED`` for a refusal,
        ``MISSING`` once past the retention), ``client_order_id``, ``quantity``,
        ``filled_quantity``, ``average_price`` (Decimal or None) and ``error``. One round trip."""
        return _report(self.children, self._stored())

    def wait(self, timeout_s: float | None = 30.0, *, final: bool = False) -> dict[str, dict[str, Any]]:
        """The :meth:`report` once every child is at the broker (OPEN) or settled (``final``:
        settled); TimeoutError otherwise. Refusals are settled from the start."""
        def read() -> dict[str, Any]:
            stored = self._stored()
            waiting = [i for i, g in stored.items() if g is not None and not at_broker_or_settled(g["state"], final)]
            return {"stored": stored, "waiting": waiting,
                    "state": f"waiting on {len(waiting)} of {len(stored)} orders"}  # TimeoutError's text

        got = wait_stored(self.r, self._leaves(), read, lambda g: not g["waiting"], timeout_s, self.id)
        return _report(self.children, got["stored"])

    def cancel(self, deadline_s: float | None = None) -> list[str]:
        """Cancel every child not settled yet (urgent lane); returns the accounts it asked for."""
        stored = self._stored()
        asked = []
        for a, c in self.placed.items():
            live = [i for i in _order_ids(c) if (g := stored.get(i)) is not None and OrderState(g["state"]) not in TERMINAL_STATES]
            for i in live:
                cancel_order(i, deadline_s=deadline_s)
            if live:
                asked.append(a)
        return asked

    def __repr__(self) -> str:
        return (f"GroupHandle({self.id!r}, group={self.group!r}, placed={len(self.placed)}, "
                f"refused={len(self.refused)})")


def _order_ids(c: OrderHandle | slicing.SlicedHandle) -> list[str]:
    """The stored orders of a placed child: its slices, or itself."""
    return c.children if isinstance(c, slicing.SlicedHandle) else [c.id]


def _row(state: str, coid: str | None, quantity: int, filled: int, average: Any, error: str) -> dict[str, Any]:
    return {"state": state, "client_order_id": coid, "quantity": quantity, "filled_quantity": filled,
            "average_price": Decimal(str(average)) if average not in (None, "") else None, "error": error}


def _report(children: Mapping[str, Child], stored: Mapping[str, dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    out = {}
    for a, c in children.items():
        if isinstance(c, Refusal):
            out[a] = _row(REFUSED, None, 0, 0, None, f"{c.error}: {c.message}")
            continue
        ids = _order_ids(c)
        got = [stored.get(i) for i in ids]
        if any(g is None for g in got):
            out[a] = _row(MISSING, c.id, 0, 0, None, "")
            continue
        parts = [dict(g, client_order_id=i) for g, i in zip(got, ids, strict=True) if g is not None]
        one = parts[0] if len(parts) == 1 else slicing.aggregate(c.id, parts[0]["request"], parts)
        errors = "; ".join(sorted({p.get("error") or "" for p in parts} - {""}))
        out[a] = _row(one["state"], c.id, sum(int(p["request"]["quantity"]) for p in parts),
                      int(one.get("filled_quantity") or 0), one.get("average_price"), errors)
    return out


def get_group(group_id: str, r: redis.Redis | None = None) -> GroupHandle | None:
    """The group placed under ``group_id`` (its handle, read back), or None once it expired with
    the order retention."""
    r = r or get_redis()
    raw = r.get(keys.group_order(group_id))
    if raw is None:
        return None
    rec = json.loads(as_text(raw))
    children: dict[str, Child] = {}
    for a in rec["accounts"]:
        if a in rec["refused"]:
            children[a] = Refusal(**rec["refused"][a])
        elif a in rec["sliced"]:
            pid = rec["children"][a]
            parent = slicing.read_parent(r, pid) or {"request": {**rec["request"], "account": a}}
            children[a] = slicing.SlicedHandle(pid, a, rec["sliced"][a], parent["request"], r)
        else:
            children[a] = OrderHandle(rec["children"][a], a, r)
    return GroupHandle(group_id, rec["group"], rec["request"], children, r)
