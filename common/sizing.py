"""How much of one signal each account of a group trades (``common/fanout.py``); pure.

* :class:`Fixed` ``(quantity)``: the same quantity on every account.
* :class:`Multiplier` ``(base_quantity, multipliers=None)``: ``base_quantity`` times the account's
  multiplier: the group's (``[groups.<name>] multipliers``, 1 when it names none) or, given, the
  mapping's (1 for an account it does not name).
* :class:`CapitalProportional` ``(base_quantity, reference_capital)``: ``base_quantity`` scaled by
  the account's capital against a reference capital, ``base_quantity x available_margin /
  reference_capital``, with ``available_margin`` from the account's funds snapshot
  (``brokergate.funds``). The signal is sized for a reference account ("1 lot per 2 lakh"), and
  each account trades it in proportion to what it has. Chosen over "a fraction of the margin
  divided by the price": that needs a price a MARKET signal does not have, and for futures and
  sold options the margin a lot takes is not its price times its quantity.

Every result is rounded DOWN to the instrument's lot size (the account's master; 1 without one),
so no account trades more than its share. An account whose share rounds to 0 (or whose funds are
unknown) is :class:`Sized` with quantity 0 and the reason: reported for that account, not placed,
and no error for the rest of the group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, Protocol

from common.errors import InvalidOrder

__all__ = ["CapitalProportional", "Fixed", "Multiplier", "Sized", "Sizing", "SizingInputs", "size"]


@dataclass(frozen=True, slots=True)
class SizingInputs:
    """What a sizing sees of one account."""

    account: str
    lot_size: int = 1
    multiplier: Decimal = Decimal(1)  # the group's for the account
    available_margin: Decimal | None = None  # from the funds snapshot; None: unknown (or not read)


@dataclass(frozen=True, slots=True)
class Sized:
    """An account's quantity (a multiple of its lot), and why it is 0 when it is."""

    quantity: int
    reason: str = ""


class Sizing(Protocol):
    """A sizing: the account's quantity before lot rounding (units, may be fractional), or a
    reason it has none. ``needs_funds``: read each account's funds snapshot first."""

    @property
    def needs_funds(self) -> bool: ...

    @property
    def funds_max_age_s(self) -> float | None: ...

    def units(self, inp: SizingInputs) -> Decimal | str: ...


def _positive(value: Any, name: str, *, whole: bool) -> Decimal:
    bad = InvalidOrder(name, f"must be a {'whole ' if whole else ''}number > 0, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise bad
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise bad from None
    if not d.is_finite() or d <= 0 or (whole and d != d.to_integral_value()):
        raise bad
    return d


@dataclass(frozen=True)
class Fixed:
    """The same ``quantity`` (units) on every account."""

    quantity: int
    needs_funds: bool = field(default=False, init=False)
    funds_max_age_s: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        _positive(self.quantity, "sizing.quantity", whole=True)

    def units(self, inp: SizingInputs) -> Decimal | str:
        return Decimal(self.quantity)


@dataclass(frozen=True)
class Multiplier:
    """``base_quantity`` times the account's multiplier: the group's, or ``multipliers``' when given
    (1 for an account not named in either)."""

    base_quantity: int
    multipliers: Mapping[str, int | float | str | Decimal] | None = None
    needs_funds: bool = field(default=False, init=False)
    funds_max_age_s: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        _positive(self.base_quantity, "sizing.base_quantity", whole=True)
        for name, m in (self.multipliers or {}).items():
            _positive(m, f"sizing.multipliers.{name}", whole=False)

    def units(self, inp: SizingInputs) -> Decimal | str:
        own = self.multipliers
        return self.base_quantity * (inp.multiplier if own is None else Decimal(str(own.get(inp.account, 1))))


@dataclass(frozen=True)
class CapitalProportional:
    """``base_quantity x available_margin / reference_capital``: the signal sized for an account of
    ``reference_capital`` rupees, each account trading in proportion to its available margin (its
    funds snapshot, read from the broker first when older than ``funds_max_age_s``; None: as
    stored)."""

    base_quantity: int
    reference_capital: int | float | str | Decimal
    funds_max_age_s: float | None = None
    needs_funds: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        _positive(self.base_quantity, "sizing.base_quantity", whole=True)
        _positive(self.reference_capital, "sizing.reference_capital", whole=False)

    def units(self, inp: SizingInputs) -> Decimal | str:
        if inp.available_margin is None:
            return "no funds snapshot of the account (its funds were never read)"
        reference = Decimal(str(self.reference_capital))
        return self.base_quantity * max(inp.available_margin, Decimal(0)) / reference


def size(sizing: Sizing, inp: SizingInputs) -> Sized:
    """The account's quantity: ``sizing``'s units rounded down to the lot."""
    units = sizing.units(inp)
    if isinstance(units, str):
        return Sized(0, units)
    lot = max(1, inp.lot_size)
    lots = int((units / lot).to_integral_value(rounding=ROUND_FLOOR))
    if lots <= 0:
        return Sized(0, f"{type(sizing).__name__} gives {units.normalize():f} units, under one lot of {lot}")
    return Sized(lots * lot)
