"""The generic models every process speaks: Order, OrderUpdate, Tick, Instrument, OrderState.

Money is exact. Order and Instrument prices are ``Decimal`` rupees: they are validated
against tick sizes and sent to brokers as decimal strings, and a float would turn
``0.05 * 3`` into ``0.15000000000000002``. Ticks are the hot path (hundreds of
thousands a second), so a Tick carries integer prices in the exchange's minor unit with
``price_divisor`` (100 for paise; 10**7 for currency derivatives, where a paisa is too
coarse) and converts to Decimal only when asked (:meth:`Tick.rupees`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, NamedTuple

from common.errors import InvalidOrder
from common.orderstate import TERMINAL_STATES, OrderState  # re-exported: the state machine lives there

__all__ = [
    "TERMINAL_STATES",
    "Instrument",
    "Order",
    "OrderState",
    "OrderType",
    "OrderUpdate",
    "Product",
    "Side",
    "Tick",
    "Validity",
    "new_client_order_id",
]


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    SL = "SL"  # stop-loss limit: trigger_price and price
    SL_M = "SL-M"  # stop-loss market: trigger_price only


class Product(StrEnum):
    DELIVERY = "DELIVERY"
    INTRADAY = "INTRADAY"
    NORMAL = "NORMAL"  # carry-forward derivatives

    @classmethod
    def _missing_(cls, value: object) -> Product | None:
        # Strategies ported from any Indian broker's SDK write CNC/MIS/NRML; they mean the same
        # three products, so accept them and keep only the generic name from here on.
        return _PRODUCT_ALIASES.get(str(value).upper())


# The product codes the Indian brokers' SDKs share (each adapter maps the generic name back to
# its broker's own code on the way out).
_PRODUCT_ALIASES: dict[str, Product] = {"CNC": Product.DELIVERY, "MIS": Product.INTRADAY, "NRML": Product.NORMAL}


class Validity(StrEnum):
    DAY = "DAY"
    IOC = "IOC"


_TAG = re.compile(r"^[A-Za-z0-9]{1,20}$")  # the strictest broker tag rule: alphanumeric, at most 20
_STRATEGY = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_SYMBOL = re.compile(r"^[A-Za-z0-9&\-_. ]{1,40}$")
_DERIVATIVE_SYMBOL = re.compile(r"^[A-Za-z0-9&\-_.:]{1,60}$")
EXCHANGES = frozenset({"NSE", "BSE", "NFO", "BFO", "CDS", "BCD", "MCX"})
DEFAULT_DEADLINE_S = 30.0


def _derivative(symbol: str) -> str | None:
    """The canonical form of a generic derivative symbol (UNDERLYING:EXPIRY:STRIKE:RIGHT or
    UNDERLYING:EXPIRY:FUT), None when it is none; a malformed one raises InvalidOrder saying what
    is wrong."""
    if ":" not in symbol or not _DERIVATIVE_SYMBOL.match(symbol):
        return None
    from common.derivatives import parse_symbol

    try:
        return parse_symbol(symbol).symbol
    except ValueError as e:
        raise InvalidOrder("symbol", str(e)) from None


def new_client_order_id() -> str:
    """A fresh id that every broker accepts as an order tag (20 alphanumerics, 80 random bits)."""
    return uuid.uuid4().hex[:20]


def message_client_order_id(message_id: str) -> str:
    """The id of an order enqueued by task name without one: derived from its Celery message id, so
    every delivery of that message (and whoever reads it while queued) names the same order."""
    return str(message_id).replace("-", "")[:20]


def _decimal(name: str, value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, float):
        # repr() is the shortest string that round-trips, so 101.1 stays 101.1 exactly.
        value = repr(value)
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise InvalidOrder(name, f"not a number: {value!r}") from None
    if not d.is_finite():
        raise InvalidOrder(name, f"not a finite number: {value!r}")
    return d


def _price_for(order_type: str, name: str, value: Decimal | None, needed: bool) -> Decimal | None:
    """A price field of an order of ``order_type``: > 0 where the type needs it, else None (0 as
    None); raises InvalidOrder(``name``) when it is missing where needed or given where not."""
    if needed:
        if value is None or value <= 0:
            raise InvalidOrder(name, f"a {order_type} order needs a {name} > 0")
        return value
    if value is not None and value != 0:
        raise InvalidOrder(name, f"a {order_type} order takes no {name}")
    return None


def _enum(kind: type[StrEnum], name: str, value: Any) -> Any:
    try:
        return kind(str(value).upper())
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise InvalidOrder(name, f"{value!r} is not one of {allowed}") from None


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable (or index) instrument as the instrument master knows it for an account."""

    exchange: str
    symbol: str
    token: str  # the broker's instrument token, as a string for every broker
    lot_size: int = 1
    tick_size: Decimal = Decimal("0.05")
    name: str = ""
    instrument_type: str = "EQ"
    broker_symbol: str = ""  # the broker's own trading symbol when it differs (e.g. "INFY-EQ" with its series)
    # Derivatives (common/derivatives.py): ``symbol`` is then the generic UNDERLYING:EXPIRY[:STRIKE]:RIGHT|FUT.
    kind: str = "equity"  # equity, index, future, option
    underlying: str = ""
    expiry: date | None = None
    strike: Decimal | None = None
    right: str = ""  # CE or PE
    freeze_quantity: int = 0  # the exchange's most per order, where the broker's master says (0: unknown)

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.symbol}"

    def to_dict(self) -> dict[str, str | int]:
        # By hand, not dataclasses.asdict (which deep-copies every field): a master is 100k+ of
        # these, and asdict was ~70% of storing one (bench/derivatives.py).
        d: dict[str, str | int] = {
            "exchange": self.exchange, "symbol": self.symbol, "token": self.token, "lot_size": self.lot_size,
            "tick_size": str(self.tick_size), "name": self.name, "instrument_type": self.instrument_type,
            "broker_symbol": self.broker_symbol, "kind": self.kind,
        }  # fmt: skip
        # Derivatives only: equities stay as small as they were.
        if self.underlying:
            d["underlying"] = self.underlying
        if self.expiry is not None:
            d["expiry"] = self.expiry.isoformat()
        if self.strike is not None:
            d["strike"] = str(self.strike)
        if self.right:
            d["right"] = self.right
        if self.freeze_quantity:
            d["freeze_quantity"] = self.freeze_quantity
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Instrument:
        return cls(
            exchange=str(d["exchange"]),
            symbol=str(d["symbol"]),
            token=str(d["token"]),
            lot_size=int(d.get("lot_size", 1)),
            tick_size=Decimal(str(d.get("tick_size", "0.05"))),
            name=str(d.get("name", "")),
            instrument_type=str(d.get("instrument_type", "EQ")),
            broker_symbol=str(d.get("broker_symbol", "")),
            kind=str(d.get("kind") or "equity"),
            underlying=str(d.get("underlying") or ""),
            expiry=date.fromisoformat(d["expiry"]) if d.get("expiry") else None,
            strike=Decimal(str(d["strike"])) if d.get("strike") not in (None, "") else None,
            right=str(d.get("right") or ""),
            freeze_quantity=int(d.get("freeze_quantity") or 0),
        )


@dataclass(frozen=True, slots=True)
class Order:
    """A broker-neutral order. Construction validates every field it can judge alone;
    :meth:`check_instrument` adds lot size and tick size from the instrument master.
    Each failure is an :class:`InvalidOrder` naming the field."""

    account: str
    exchange: str
    symbol: str
    side: Side
    quantity: int
    order_type: OrderType = OrderType.MARKET
    product: Product = Product.INTRADAY
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    validity: Validity = Validity.DAY
    client_order_id: str = field(default_factory=new_client_order_id)
    deadline_s: float = DEFAULT_DEADLINE_S
    urgent: bool = False
    # The strategy that sent it: its risk limits apply, and order lists and counters name it.
    strategy: str = ""
    # An exit: it may only reduce the position it closes (refused if it would open or grow one),
    # and it still flows while the account is halted (common/safety.py).
    reduce_only: bool = False

    def __post_init__(self) -> None:
        s = object.__setattr__
        if not isinstance(self.account, str) or not self.account:
            raise InvalidOrder("account", "required")
        exchange = str(self.exchange).upper()
        if exchange not in EXCHANGES:
            raise InvalidOrder("exchange", f"{self.exchange!r} is not one of {', '.join(sorted(EXCHANGES))}")
        s(self, "exchange", exchange)
        canonical = _derivative(self.symbol) if isinstance(self.symbol, str) else None
        if canonical:
            s(self, "symbol", canonical)
        elif not isinstance(self.symbol, str) or not _SYMBOL.match(self.symbol):
            raise InvalidOrder("symbol", f"{self.symbol!r} is not a trading symbol")
        s(self, "side", _enum(Side, "side", self.side))
        s(self, "order_type", _enum(OrderType, "order_type", self.order_type))
        s(self, "product", _enum(Product, "product", self.product))
        s(self, "validity", _enum(Validity, "validity", self.validity))
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int):
            try:
                q = int(str(self.quantity))
            except ValueError:
                raise InvalidOrder("quantity", f"not a whole number: {self.quantity!r}") from None
            s(self, "quantity", q)
        if self.quantity <= 0:
            raise InvalidOrder("quantity", f"must be > 0, got {self.quantity}")
        price = _decimal("price", self.price)
        trigger = _decimal("trigger_price", self.trigger_price)
        ot = self.order_type
        s(self, "price", _price_for(ot, "price", price, ot in (OrderType.LIMIT, OrderType.SL)))
        s(self, "trigger_price", _price_for(ot, "trigger_price", trigger, ot in (OrderType.SL, OrderType.SL_M)))
        if not isinstance(self.client_order_id, str) or not _TAG.match(self.client_order_id):
            raise InvalidOrder("client_order_id", "1 to 20 letters or digits (it travels as the broker's tag)")
        try:
            deadline = float(self.deadline_s)
        except (TypeError, ValueError):
            raise InvalidOrder("deadline_s", f"not a number: {self.deadline_s!r}") from None
        if not 0 < deadline <= 3600:
            raise InvalidOrder("deadline_s", f"must be in (0, 3600] seconds, got {self.deadline_s}")
        s(self, "deadline_s", deadline)
        s(self, "urgent", bool(self.urgent))
        if not isinstance(self.strategy, str) or (self.strategy and not _STRATEGY.match(self.strategy)):
            raise InvalidOrder("strategy", f"{self.strategy!r}: 1 to 32 letters, digits, '-' or '_'")
        s(self, "reduce_only", bool(self.reduce_only))

    def check_instrument(self, instrument: Instrument) -> None:
        """Lot size and tick size, which only the instrument master knows."""
        if self.quantity % instrument.lot_size:
            raise InvalidOrder("quantity", f"{self.quantity} is not a multiple of the lot size {instrument.lot_size}")
        for name in ("price", "trigger_price"):
            value: Decimal | None = getattr(self, name)
            if value is not None and value % instrument.tick_size:
                raise InvalidOrder(name, f"{value} is not a multiple of the tick size {instrument.tick_size}")

    @property
    def instrument_key(self) -> str:
        return f"{self.exchange}:{self.symbol}"

    def to_dict(self) -> dict[str, Any]:
        """The wire form (JSON-safe: prices as decimal strings, enums as their values)."""
        d: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            d[f.name] = str(v) if isinstance(v, Decimal) else (v.value if isinstance(v, StrEnum) else v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Order:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidOrder(unknown[0], "unknown field")
        for required in ("account", "exchange", "symbol", "side", "quantity"):
            if required not in d:
                raise InvalidOrder(required, "required")
        return cls(**d)

    def with_(self, **changes: Any) -> Order:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One normalized update of an order, from a postback, an order-update socket or reconciliation."""

    account: str
    client_order_id: str  # our id; the broker's tag
    broker_order_id: str
    state: OrderState
    filled_quantity: int = 0
    pending_quantity: int = 0
    average_price: Decimal | None = None
    broker_status: str = ""  # the broker's own status text, for people
    message: str = ""
    exchange_ts: str = ""
    source: str = ""  # postback, socket, reconcile, worker

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        d["average_price"] = None if self.average_price is None else str(self.average_price)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OrderUpdate:
        avg = d.get("average_price")
        return cls(
            account=str(d["account"]),
            client_order_id=str(d.get("client_order_id") or ""),
            broker_order_id=str(d.get("broker_order_id") or ""),
            state=OrderState(d["state"]),
            filled_quantity=int(d.get("filled_quantity") or 0),
            pending_quantity=int(d.get("pending_quantity") or 0),
            average_price=None if avg in (None, "") else Decimal(str(avg)),
            broker_status=str(d.get("broker_status") or ""),
            message=str(d.get("message") or ""),
            exchange_ts=str(d.get("exchange_ts") or ""),
            source=str(d.get("source") or ""),
        )


class Tick(NamedTuple):
    """One normalized market tick, the same shape for every broker.

    Prices are integers in 1/price_divisor rupee (paise when price_divisor == 100), so
    decoding never rounds; :meth:`rupees` gives the exact Decimal. Fields a mode does
    not carry are 0. A NamedTuple because the feed builds hundreds of thousands a second.
    """

    exchange: str
    symbol: str
    token: str
    mode: str  # ltp, quote, full
    price_divisor: int
    last_price: int
    last_quantity: int = 0
    average_price: int = 0
    volume: int = 0
    oi: int = 0
    bid_price: int = 0
    bid_quantity: int = 0
    ask_price: int = 0
    ask_quantity: int = 0
    open: int = 0
    high: int = 0
    low: int = 0
    close: int = 0
    exchange_ts_ms: int = 0
    received_ns: int = 0
    # best five levels, flattened (price, quantity, orders) * 5; empty unless the mode carries depth
    bids: tuple[int, ...] = ()
    asks: tuple[int, ...] = ()

    def rupees(self, value: int) -> Decimal:
        return Decimal(value) / self.price_divisor

    @property
    def ltp(self) -> Decimal:
        return self.rupees(self.last_price)

    @property
    def instrument_key(self) -> str:
        return f"{self.exchange}:{self.symbol}"
