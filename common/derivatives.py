"""Generic keys of futures and options: one name a person can type and a program can build, the
same on every broker.

    NFO:NIFTY:2025-12-16:24000:CE      an option: exchange, underlying, expiry, strike, right
    NFO:NIFTY:2025-12-30:FUT           a future: exchange, underlying, expiry
    NSE:INFY                           equities and indices keep EXCHANGE:SYMBOL

The part after the exchange is the instrument's generic ``symbol`` (``NIFTY:2025-12-16:24000:CE``)
and what an :class:`~common.models.Order` carries; the broker's own trading symbol
(``NIFTY25D1624000CE``, ``NIFTY16DEC2524000CE``, ``NSE:NIFTY25D1624000CE``, ``NIFTY16DEC25C24000``)
stays ``Instrument.broker_symbol``, found by looking the contract up in the broker's master, never
by formatting strings. Strikes are exact (``Decimal``), written without trailing zeros
(``24000``, ``24050.5``); expiries are ISO dates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Literal

__all__ = [
    "DERIVATIVE_EXCHANGES", "ContractKey", "Kind", "Right", "format_strike", "future_symbol", "is_derivative_symbol",
    "option_symbol", "parse_symbol",
]  # fmt: skip

Kind = Literal["equity", "index", "future", "option"]
Right = Literal["CE", "PE"]
DERIVATIVE_EXCHANGES = frozenset({"NFO", "BFO", "CDS", "BCD", "MCX"})
_UNDERLYING = re.compile(r"^[A-Z0-9&\-_.]{1,30}$")


def format_strike(strike: Decimal | int | str) -> str:
    """``24000``, ``24050.5``: the canonical text of a strike (no exponent, no trailing zeros)."""
    return format(Decimal(str(strike)).normalize(), "f")


def option_symbol(underlying: str, expiry: date, strike: Decimal | int | str, right: str) -> str:
    return f"{underlying.upper()}:{expiry.isoformat()}:{format_strike(strike)}:{right.upper()}"


def future_symbol(underlying: str, expiry: date) -> str:
    return f"{underlying.upper()}:{expiry.isoformat()}:FUT"


def is_derivative_symbol(symbol: str) -> bool:
    return ":" in symbol


@dataclass(frozen=True, slots=True)
class ContractKey:
    """A derivative's generic symbol, parsed."""

    underlying: str
    expiry: date
    kind: Kind  # future or option
    strike: Decimal | None = None
    right: Right | None = None

    @property
    def symbol(self) -> str:
        if self.kind == "future":
            return future_symbol(self.underlying, self.expiry)
        assert self.strike is not None and self.right is not None
        return option_symbol(self.underlying, self.expiry, self.strike, self.right)


def parse_symbol(symbol: str) -> ContractKey:
    """``NIFTY:2025-12-16:24000:CE`` or ``NIFTY:2025-12-30:FUT`` parsed; ValueError naming what is wrong."""
    parts = symbol.upper().split(":")
    if len(parts) not in (3, 4):
        raise ValueError(f"{symbol!r} is not UNDERLYING:YYYY-MM-DD:FUT or UNDERLYING:YYYY-MM-DD:STRIKE:CE|PE")
    underlying, expiry_text = parts[0], parts[1]
    if not _UNDERLYING.match(underlying):
        raise ValueError(f"{underlying!r} is not an underlying")
    try:
        expiry = date.fromisoformat(expiry_text)
    except ValueError:
        raise ValueError(f"{expiry_text!r} is not an expiry date (YYYY-MM-DD)") from None
    if len(parts) == 3:
        if parts[2] != "FUT":
            raise ValueError(f"{symbol!r}: a future ends in :FUT")
        return ContractKey(underlying, expiry, "future")
    strike_text, right = parts[2], parts[3]
    try:
        strike = Decimal(strike_text)
    except InvalidOperation:
        raise ValueError(f"{strike_text!r} is not a strike") from None
    if not strike.is_finite() or strike <= 0:
        raise ValueError(f"{strike_text!r} is not a strike > 0")
    if right not in ("CE", "PE"):
        raise ValueError(f"{right!r} is not CE or PE")
    return ContractKey(underlying, expiry, "option", strike, "CE" if right == "CE" else "PE")
