"""Pre-trade risk limits, the pure part: what each limit is, how the accounts file and the run-time
overrides spell it, and the arithmetic that judges one order (no Redis here: ``common/risk.py``
reads the numbers and calls these; ``common/settings.py`` parses the file's tables with them).

Every limit is optional (None: no limit):

=========================  =======================================================================
``max_order_quantity``     units in one order
``max_order_value``        rupees in one order: quantity x price (LIMIT, SL: the price; SL-M: the
                           trigger; MARKET: the last traded price)
``price_band_pct``         how far (percent) a LIMIT or SL price and an SL or SL-M trigger may be
                           from the last traded price (the fat-finger band)
``max_open_orders``        orders of the account let through and not settled yet
``max_orders_per_minute``  orders let through in any 60 s, per strategy (an order without a
                           strategy counts under its account)
``max_position``           absolute net quantity per instrument (every product) after the order
``max_daily_loss``         rupees: realised plus mark-to-market of the account's positions
=========================  =======================================================================

An order's limits are the tighter of its account's and its strategy's (:meth:`RiskLimits.tighter`).

Exits pass: an order that is ``reduce_only`` and really reduces its position by the snapshot
(:func:`is_exit`) is judged by the price band alone, so a square-off always flows; a
``reduce_only`` order that would not reduce is judged as an entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

from common.algorules import ALGO_ID, parse_algo_id, strategies_table
from common.errors import ConfigError, RiskRefused
from common.models import Order, OrderType, Side
from common.portfolio import Position

__all__ = [
    "COUNT_LIMITS", "LIMITS", "MEANING", "Exposure", "RiskLimits", "day_pnl", "is_exit", "judge", "load_strategies",
    "order_value", "parse_limits", "parse_strategies", "parse_value", "refused_by_count",
]  # fmt: skip

LIMITS: Final = ("max_order_quantity", "max_order_value", "price_band_pct", "max_open_orders",
                 "max_orders_per_minute", "max_position", "max_daily_loss")
WHOLE: Final = frozenset({"max_order_quantity", "max_open_orders", "max_orders_per_minute", "max_position"})
MEANING: Final = {
    "max_order_quantity": "units in one order",
    "max_order_value": "rupees in one order (MARKET: at the last traded price)",
    "price_band_pct": "percent a LIMIT/SL price or SL/SL-M trigger may be from the last traded price",
    "max_open_orders": "orders of the account let through and not settled",
    "max_orders_per_minute": "orders let through in any 60 s, per strategy (none: per account)",
    "max_position": "absolute net quantity per instrument after the order",
    "max_daily_loss": "rupees of day loss (realised + mark-to-market); crossing it halts the account",
}
NONE_WORDS: Final = frozenset({"none", "off", "unlimited"})  # an override that lifts a limit of the file
_STRATEGY_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # as Order.strategy
_MAX_BAND_PCT = Decimal(1000)  # options can move several times over in a day; beyond this is a typo
HUNDRED = Decimal(100)


def parse_value(key: str, value: Any, where: str) -> int | Decimal | None:
    """One limit's value: a whole number >= 0 for the counts and quantities (0 refuses every entry
    the limit judges), a number > 0 for rupees and the band (given as a TOML number or a decimal
    string); ``"none"`` for no limit. ConfigError names ``where`` otherwise."""
    if key not in LIMITS:
        raise ConfigError(f"{where}: {key!r} is not a risk limit (known: {', '.join(LIMITS)})")
    if isinstance(value, str) and value.strip().lower() in NONE_WORDS:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{where}: must be a number, got {value!r}")
    if key in WHOLE:
        try:
            n = int(value) if isinstance(value, int) else int(str(value).strip())
        except ValueError:
            n = -1
        if n < 0:
            raise ConfigError(f"{where}: must be a whole number >= 0 (or \"none\"), got {value!r}")
        return n
    try:
        d = Decimal(str(value).strip()) if isinstance(value, int | float | str | Decimal) else Decimal("nan")
    except InvalidOperation:
        d = Decimal("nan")
    top = _MAX_BAND_PCT if key == "price_band_pct" else Decimal("1e15")
    if not d.is_finite() or not 0 < d <= top:
        raise ConfigError(f"{where}: must be a number > 0{' and <= 1000' if key == 'price_band_pct' else ''} "
                          f"(or \"none\"), got {value!r}")
    return d


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """One scope's limits (an account's, a strategy's, or an order's in force); None: no limit."""

    max_order_quantity: int | None = None
    max_order_value: Decimal | None = None
    price_band_pct: Decimal | None = None
    max_open_orders: int | None = None
    max_orders_per_minute: int | None = None
    max_position: int | None = None
    max_daily_loss: Decimal | None = None

    def tighter(self, other: RiskLimits) -> RiskLimits:
        """Per limit, the smaller of the two (a limit set on one side only stands)."""
        out = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            out[f.name] = theirs if mine is None else (mine if theirs is None else min(mine, theirs))
        return RiskLimits(**out)

    def overridden(self, values: Mapping[str, str], where: str = "override") -> RiskLimits:
        """These limits with run-time overrides (a Redis hash: limit -> value, ``none`` lifting
        one); each value checked as in the file (ConfigError naming ``where.<limit>``)."""
        changes: dict[str, Any] = {k: parse_value(k, v, f"{where}.{k}") for k, v in values.items()}
        return replace(self, **changes) if changes else self

    def to_dict(self) -> dict[str, str]:
        """The limits set, as text (what the CLI shows and a Redis override holds)."""
        return {f.name: str(v) for f in fields(self) if (v := getattr(self, f.name)) is not None}

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


def parse_limits(table: Any, where: str) -> RiskLimits:
    """A ``risk = { ... }`` table (or a ``[strategies.<name>]`` one): every key a limit."""
    if table is None:
        return RiskLimits()
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table like {{ max_order_quantity = 500 }}")
    return RiskLimits().overridden(table, where)


def parse_strategies(table: Any, where: str = "strategies") -> dict[str, RiskLimits]:
    """The accounts file's ``[strategies.<name>]`` tables: each name as ``Order.strategy`` spells
    it, each table the limits of the orders that name it (and, checked here and read by
    ``common.algorules.algo_id_of``, the strategy's exchange ``algo_id``)."""
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be tables [strategies.<name>]")
    out = {}
    for name, t in table.items():
        if not _STRATEGY_NAME.match(name):
            raise ConfigError(f"{where}.{name}: strategy names are 1-32 letters, digits, '_' or '-'")
        if isinstance(t, dict) and ALGO_ID in t:
            parse_algo_id(t[ALGO_ID], f"{where}.{name}")
            t = {k: v for k, v in t.items() if k != ALGO_ID}
        out[name] = parse_limits(t, f"{where}.{name}")
    return out


def load_strategies(path: str | Path) -> dict[str, RiskLimits]:
    """The ``[strategies.<name>]`` limits of the accounts file at ``path`` (no secret is read)."""
    return parse_strategies(strategies_table(path))


@dataclass(frozen=True, slots=True)
class Exposure:
    """What an order is judged against, read from Redis in one round trip (``common/risk.py``)."""

    last_price: Decimal | None = None  # of the order's instrument (bg:ltp); None: the feed has none
    net_position: int = 0  # net quantity in the instrument, every product
    product_position: int = 0  # net quantity in the instrument and the order's product (what an exit closes)
    day_pnl: Decimal | None = None  # the account's realised + mark-to-market (None: not read)
    open_orders: int = 0  # the account's orders let through and not settled
    orders_last_minute: int = 0  # orders let through in the last 60 s under the order's rate scope


def is_exit(order: Order, product_position: int) -> bool:
    """A ``reduce_only`` order that closes part or all of its product's position (no flip)."""
    if not order.reduce_only or not product_position:
        return False
    closes = product_position > 0 if order.side is Side.SELL else product_position < 0
    return closes and order.quantity <= abs(product_position)


def order_value(order: Order, last_price: Decimal | None) -> Decimal | None:
    """Quantity x the order's price: LIMIT and SL their price, SL-M its trigger, MARKET the last
    traded price (None when the feed has none)."""
    if order.order_type in (OrderType.LIMIT, OrderType.SL):
        price = order.price
    elif order.order_type is OrderType.SL_M:
        price = order.trigger_price
    else:
        price = last_price
    return None if price is None else price * order.quantity


def day_pnl(positions: Iterable[Position], last_prices: Mapping[str, Decimal]) -> Decimal:
    """Realised plus mark-to-market at the live ticks (``EXCHANGE:SYMBOL`` -> price; where the
    feed has no price, the position's own unrealised P&L), as ``brokergate.pnl`` computes it."""
    total = Decimal(0)
    for p in positions:
        last = last_prices.get(f"{p.exchange}:{p.symbol}")
        unrealised = p.unrealised_pnl if last is None else (last - p.average_price) * p.quantity * p.multiplier
        total += p.realised_pnl + unrealised
    return total


COUNT_LIMITS: Final = {"max_open_orders": "orders open", "max_orders_per_minute": "orders in the last minute"}


def refused_by_count(limit: str, n: int, at_most: int, src: str) -> RiskRefused:
    """The refusal by a count limit (a key of :data:`COUNT_LIMITS`) at ``n`` orders counted."""
    return RiskRefused(limit, f"{n} {COUNT_LIMITS[limit]}, at most {at_most}{src}")


def _fmt(d: Decimal) -> str:
    return f"{d.normalize():f}" if d == d.to_integral() else f"{d:f}"


def _band(order: Order, band: Decimal, last: Decimal | None, src: str) -> None:
    checked = [(n, p) for n, p in (("price", order.price), ("trigger_price", order.trigger_price)) if p is not None]
    if not checked:
        return  # a MARKET order has no price to be fat-fingered
    if last is None or last <= 0:
        raise RiskRefused("price_band_pct", f"no last traded price of {order.instrument_key} to check the "
                                            f"{band}% band against (subscribe its ticks){src}")
    for name, p in checked:
        off = abs(p - last) * HUNDRED / last
        if off > band:
            raise RiskRefused("price_band_pct", f"{name} {_fmt(p)} is {off:.2f}% from the last traded price "
                                                f"{_fmt(last)} of {order.instrument_key}, over the {band}% band{src}")


def _position(order: Order, limit: int, net: int, src: str) -> None:
    after = net + (order.quantity if order.side is Side.BUY else -order.quantity)
    shrinks = abs(after) <= abs(net) and (after == 0 or (after > 0) == (net > 0))
    if abs(after) > limit and not shrinks:
        raise RiskRefused("max_position", f"{order.instrument_key} net position would be {after} "
                                          f"(now {net}), over {limit}{src}")


def judge(order: Order, lim: RiskLimits, x: Exposure, *, counts: bool = True,
          sources: Mapping[str, str] | None = None) -> None:
    """Raise :class:`RiskRefused` for the first limit ``order`` breaks. ``counts``: also judge
    max_open_orders and max_orders_per_minute by the counts read (the client's check; the
    worker's takes them atomically instead). ``sources`` names where each limit comes from."""
    def src(key: str) -> str:
        where = (sources or {}).get(key)
        return f" (limit of {where})" if where else ""

    if lim.price_band_pct is not None:
        _band(order, lim.price_band_pct, x.last_price, src("price_band_pct"))
    if is_exit(order, x.product_position):
        return
    if lim.max_order_quantity is not None and order.quantity > lim.max_order_quantity:
        raise RiskRefused("max_order_quantity", f"quantity {order.quantity} is over "
                                                f"{lim.max_order_quantity}{src('max_order_quantity')}")
    if lim.max_order_value is not None:
        value = order_value(order, x.last_price)
        if value is None:
            raise RiskRefused("max_order_value", f"a MARKET order of {order.instrument_key} is valued at the last "
                                                 f"traded price, and there is none (subscribe its ticks)"
                                                 f"{src('max_order_value')}")
        if value > lim.max_order_value:
            raise RiskRefused("max_order_value", f"value {_fmt(value)} is over {_fmt(lim.max_order_value)} "
                                                 f"rupees{src('max_order_value')}")
    if lim.max_position is not None:
        _position(order, lim.max_position, x.net_position, src("max_position"))
    if lim.max_daily_loss is not None and x.day_pnl is not None and -x.day_pnl >= lim.max_daily_loss:
        raise RiskRefused("max_daily_loss", f"day P&L {_fmt(x.day_pnl)} has reached the loss limit "
                                            f"{_fmt(lim.max_daily_loss)}{src('max_daily_loss')}")
    if not counts:
        return
    for key, n in (("max_open_orders", x.open_orders), ("max_orders_per_minute", x.orders_last_minute)):
        at_most = getattr(lim, key)
        if at_most is not None and n + 1 > at_most:
            raise refused_by_count(key, n, at_most, src(key))
