"""Reading numbers out of broker payloads, leniently and exactly (shared by every broker's parsers),
the spellings of an expiry in exchange trading symbols, and writing a price into a request.

Brokers send money as JSON floats, strings or integers; a float goes through its shortest
repr, so 109.4 stays Decimal("109.4"), never 109.400000000000005684...
"""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal
from typing import Any, TypedDict

from common.derivatives import format_strike


def money(v: Any) -> Decimal | None:
    """Exact rupees, or None for a missing, non-numeric or non-finite value."""
    if v is None or v == "" or isinstance(v, bool):
        return None
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        v = repr(v)
    try:
        d = Decimal(str(v))
    except ArithmeticError:
        return None
    return d if d.is_finite() else None


def amount(v: Any) -> Decimal:
    """Exact rupees as :func:`money` reads them, 0 for a missing or unreadable value (a book's
    blank figure is no money); the value keeps its own places ("0.00" stays 0.00)."""
    return money_or(v, Decimal(0))


def money_or(v: Any, otherwise: Decimal) -> Decimal:
    """Exact rupees as :func:`money` reads them, ``otherwise`` for a missing or unreadable value (a
    figure an answer may leave out, made from its other figures)."""
    found = money(v)
    return otherwise if found is None else found


def whole(v: Any) -> int:
    """A whole quantity; 0 for a missing or non-numeric value ("10", 10, 10.0 and "10.0" are 10)."""
    if v is None or v == "" or isinstance(v, bool):
        return 0
    try:
        return int(Decimal(str(v)))
    except (ArithmeticError, ValueError):
        return 0


def text(v: Any) -> str:
    """A payload value as text; "" for a missing one (None), never the string "None"."""
    return "" if v is None else str(v)


def price_text(v: Decimal | None) -> str:
    """A price as a request's text field: its exact decimal digits, "0" for none."""
    return "0" if v is None else format(v, "f")


def fill_price(v: Any, filled: int) -> Decimal | None:
    """The average fill price; None before any fill (brokers report 0 then: no price, not a
    price of zero) and for a missing or unreadable value."""
    avg = money(v)
    if avg is not None and avg == 0 and filled == 0:
        return None
    return avg


def lot_size(v: Any) -> int:
    """An instrument's lot size; 1 for a missing, non-numeric or zero value."""
    return whole(v) or 1


DEFAULT_TICK = Decimal("0.05")


def tick_size(v: Any, per_rupee: int = 1) -> Decimal:
    """An instrument's tick size in rupees, from a value in 1/``per_rupee`` rupee (100 for paise).

    A missing, non-numeric, non-finite, zero or negative value (indices carry tick size 0: they
    cannot be traded) is DEFAULT_TICK, which keeps a stray tick-size check from dividing by zero.
    """
    try:
        value = Decimal(text(v).strip() or "0")
    except ArithmeticError:
        return DEFAULT_TICK
    if not value.is_finite() or value <= 0:
        return DEFAULT_TICK
    return (value / per_rupee).normalize()


def strike_of(v: Any, per_rupee: int = 1) -> Decimal | None:
    """An option's strike in rupees, from a value in 1/``per_rupee`` rupee (100 for paise), written
    one way (``24350.0`` is 24350, never 2.435E+4); None unless > 0 (a future's -1 or 0)."""
    value = money(v)
    if value is None or value <= 0:
        return None
    return Decimal(format_strike(value / per_rupee))


MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
MONTHS = {m: i for i, m in enumerate(MONTH_NAMES, start=1)}
_WEEK_MONTH = "123456789OND"  # the month of the exchanges' weekly symbols (O, N, D: Oct to Dec)


def expiry_spellings(expiry: date) -> tuple[str, str, str]:
    """How trading symbols write ``expiry``: ``18AUG26`` (NFO), ``26SEP`` (a monthly), ``25O09`` (a
    weekly: YY, month 1-9/O/N/D, DD)."""
    yy, mon, dd = f"{expiry.year % 100:02d}", MONTH_NAMES[expiry.month - 1], f"{expiry.day:02d}"
    return f"{dd}{mon}{yy}", f"{yy}{mon}", f"{yy}{_WEEK_MONTH[expiry.month - 1]}{dd}"


class DayAndCarried(TypedDict):
    """A generic Position's quantities, as keywords (``Position(**day_and_carried(...))``)."""

    buy_quantity: int
    sell_quantity: int
    day_buy_quantity: int
    day_sell_quantity: int
    overnight_quantity: int


def day_and_carried(day_buy: int, day_sell: int, carried_buy: int, carried_sell: int) -> DayAndCarried:
    """A position's quantities from a book that splits today's buys and sells from those carried
    forward from earlier days: bought and sold are both together, overnight is the carried net."""
    return DayAndCarried(buy_quantity=day_buy + carried_buy, sell_quantity=day_sell + carried_sell,
                         day_buy_quantity=day_buy, day_sell_quantity=day_sell,
                         overnight_quantity=carried_buy - carried_sell)
