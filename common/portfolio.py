"""The generic account-state models: what a strategy asks before it enters and after a restart.

:class:`Position`, :class:`Holding`, :class:`Funds` and :class:`Trade` are what every broker's
positions, holdings, margins and trade book translate into (``common/brokers/<broker>/``
``portfolio.py``), what ``common/accountstate.py`` keeps in Redis, and what the client returns.
Money is exact (``Decimal`` rupees, as on :class:`common.models.Order`); quantities are units
(shares, or contracts times the lot size, as every broker reports them).

A position is keyed by ``EXCHANGE:SYMBOL:PRODUCT`` (:attr:`Position.key`): the same symbol held
intraday and carried forward is two positions at every broker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from typing import Any, Self, cast

__all__ = ["Funds", "Holding", "Margin", "Position", "Segment", "Trade", "position_key", "with_fill"]

ZERO = Decimal(0)


def position_key(exchange: str, symbol: str, product: str) -> str:
    return f"{exchange}:{symbol}:{product}"


def _dec(value: Any) -> Decimal:
    if value is None or value == "":
        return ZERO
    return value if isinstance(value, Decimal) else Decimal(str(value))


class _Record:
    """``to_dict``/``from_dict`` of a flat model: Decimals as their exact text (JSON in Redis and the
    API), read back by each field's declared type; a missing key takes the field's default."""

    __slots__ = ()  # the models are slotted dataclasses: no __dict__ from the base

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(cast(Any, self)).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        kwargs: dict[str, Any] = {}
        for f in fields(cast(Any, cls)):
            if f.name not in d:
                continue
            v = d[f.name]
            kwargs[f.name] = _dec(v) if f.type == "Decimal" else (int(v) if f.type == "int" else v)
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class Position(_Record):
    """A net position in one instrument and product, as the broker's position book shows it for
    today (``day_*``: today's trades only; net: today's plus what was carried in)."""

    exchange: str
    symbol: str
    product: str  # the generic Product value: DELIVERY, INTRADAY, NORMAL
    quantity: int  # net: > 0 long, < 0 short, 0 flat (closed today)
    average_price: Decimal  # of the net position (0 when flat)
    buy_quantity: int = 0
    buy_value: Decimal = ZERO  # rupees
    sell_quantity: int = 0
    sell_value: Decimal = ZERO
    day_buy_quantity: int = 0
    day_sell_quantity: int = 0
    overnight_quantity: int = 0  # carried in from earlier days
    realised_pnl: Decimal = ZERO
    unrealised_pnl: Decimal = ZERO  # at last_price, as the broker computed it when read
    last_price: Decimal = ZERO
    multiplier: int = 1  # units per quantity for P&L (1 for equity and F&O; lots already in quantity)
    token: str = ""  # the broker's instrument token, for the feed

    @property
    def key(self) -> str:
        return position_key(self.exchange, self.symbol, self.product)

    @property
    def day_quantity(self) -> int:
        return self.day_buy_quantity - self.day_sell_quantity

    def pnl_at(self, last_price: Decimal) -> Decimal:
        """Realised plus mark-to-market P&L at ``last_price`` (rupees)."""
        open_value = Decimal(self.quantity) * last_price * self.multiplier
        return (self.sell_value - self.buy_value) * self.multiplier + open_value


@dataclass(frozen=True, slots=True)
class Holding(_Record):
    """Delivery holdings in the demat account (settled, plus today's T1 where the broker says)."""

    exchange: str
    symbol: str
    quantity: int  # settled + t1
    average_price: Decimal
    t1_quantity: int = 0
    last_price: Decimal = ZERO
    pnl: Decimal = ZERO
    isin: str = ""
    token: str = ""


@dataclass(frozen=True, slots=True)
class Segment(_Record):
    """Margins of one segment (``equity``, ``commodity``) where the broker splits them."""

    available_cash: Decimal  # cash that can be used now (opening balance plus payin, minus what is blocked)
    used_margin: Decimal  # blocked by open orders and positions
    available_margin: Decimal  # what a new order can use (the broker's "net")
    opening_balance: Decimal = ZERO
    collateral: Decimal = ZERO
    realised_pnl: Decimal = ZERO
    unrealised_pnl: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Funds:
    """Funds and margins. ``segments`` holds the broker's split (equity and commodity, where it splits them);
    the totals are the sums (or the broker's single figure where it has no split)."""

    available_cash: Decimal
    used_margin: Decimal
    available_margin: Decimal
    segments: dict[str, Segment] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"available_cash": str(self.available_cash), "used_margin": str(self.used_margin),
                "available_margin": str(self.available_margin),
                "segments": {k: v.to_dict() for k, v in self.segments.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Funds:
        return cls(available_cash=_dec(d.get("available_cash")), used_margin=_dec(d.get("used_margin")),
                   available_margin=_dec(d.get("available_margin")),
                   segments={k: Segment.from_dict(v) for k, v in (d.get("segments") or {}).items()})

    @classmethod
    def of_segments(cls, segments: dict[str, Segment]) -> Funds:
        """Totals summed over the broker's segments."""
        vals = list(segments.values())
        return cls(available_cash=sum((s.available_cash for s in vals), ZERO),
                   used_margin=sum((s.used_margin for s in vals), ZERO),
                   available_margin=sum((s.available_margin for s in vals), ZERO), segments=dict(segments))


@dataclass(frozen=True, slots=True)
class Trade(_Record):
    """One fill (an execution of an order at the exchange)."""

    trade_id: str
    broker_order_id: str
    exchange: str
    symbol: str
    product: str
    side: str  # BUY / SELL
    quantity: int
    price: Decimal
    client_order_id: str = ""  # our tag, where the broker's trade book carries it (else "")
    fill_time: str = ""  # the broker's timestamp text
    token: str = ""  # the broker's instrument token, where its trade book carries it


@dataclass(frozen=True, slots=True)
class Margin:
    """What orders need, as the broker's own margin calculator answers (rupees)."""

    total: Decimal  # the orders together, with the broker's hedge benefit where it computes one
    orders: tuple[Decimal, ...] = ()  # each order alone, in the order asked (where the broker says)
    charges: Decimal = ZERO  # brokerage, taxes and fees, where the broker reports them

    def to_dict(self) -> dict[str, Any]:
        return {"total": str(self.total), "orders": [str(o) for o in self.orders], "charges": str(self.charges)}


def with_fill(pos: Position | None, *, exchange: str, symbol: str, product: str, side: str, quantity: int,
              price: Decimal, token: str = "") -> Position:
    """The position after one fill of ``quantity`` at ``price`` (a pushed fill, before the next read
    from the broker). Average cost as every Indian broker's position book keeps it: a fill that
    grows the position moves the average; one that shrinks it realises P&L at the average and
    leaves it; one that flips it opens the remainder at the fill price."""
    pos = pos or Position(exchange=exchange, symbol=symbol, product=product, quantity=0, average_price=ZERO,
                          token=token)
    buy = side.upper() == "BUY"
    signed = quantity if buy else -quantity
    old, new = pos.quantity, pos.quantity + signed
    realised = pos.realised_pnl
    if old == 0 or (old > 0) == buy:  # opens or grows
        average = (abs(old) * pos.average_price + quantity * price) / abs(new)
    else:
        closed = min(quantity, abs(old))
        realised += (price - pos.average_price) * closed * (1 if old > 0 else -1) * pos.multiplier
        average = pos.average_price if new and (new > 0) == (old > 0) else (price if new else ZERO)
    value = price * quantity
    return Position(
        exchange=pos.exchange, symbol=pos.symbol, product=pos.product, quantity=new, average_price=average,
        buy_quantity=pos.buy_quantity + (quantity if buy else 0), buy_value=pos.buy_value + (value if buy else ZERO),
        sell_quantity=pos.sell_quantity + (0 if buy else quantity),
        sell_value=pos.sell_value + (ZERO if buy else value),
        day_buy_quantity=pos.day_buy_quantity + (quantity if buy else 0),
        day_sell_quantity=pos.day_sell_quantity + (0 if buy else quantity),
        overnight_quantity=pos.overnight_quantity, realised_pnl=realised,
        unrealised_pnl=(price - average) * new * pos.multiplier if new else ZERO,
        last_price=price, multiplier=pos.multiplier, token=pos.token or token,
    )
