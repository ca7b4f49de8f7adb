"""Shoonya's derivative rows (``NFO_symbols.txt``, ``BFO_symbols.txt``) -> generic futures and
options. Pure: one CSV row in, one Instrument (or None) out.

A row (header ``Exchange,Token,LotSize,Symbol,TradingSymbol,Expiry,Instrument,OptionType,
StrikePrice,TickSize,``, a trailing comma on every line): ``NFO,48407,65,NIFTY,
NIFTY18AUG26C18550,18-AUG-2026,OPTIDX,CE,18550,0.05,``. ``Expiry`` ``DD-MON-YYYY``; ``Instrument``
OPTIDX / OPTSTK / FUTIDX / FUTSTK; ``OptionType`` CE / PE (XX on futures); ``StrikePrice`` rupees
(``-0.01`` or ``0`` on futures); ``TickSize`` rupees. The master has no freeze quantity.

The trading symbol stays Shoonya's own (``broker_symbol``), never rebuilt: NFO writes the right
before the strike (``NIFTY18AUG26C18550``, futures ``NIFTY29SEP26F``), BFO the exchange's own
form (``SENSEX2591181200CE`` weekly, ``SENSEX26SEP91000PE`` monthly, ``BANKEX24FEBFUT``). On NFO
``Symbol`` is the underlying; on BFO it is BSE's product code (``BSXOPT``, ``BKXFUT``), so the
underlying is then the trading symbol's text before the row's own expiry, in whichever of the
exchanges' spellings the symbol uses. Some Noren files name the strike column ``Strike``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from common.brokers.payload import MONTHS, expiry_spellings, lot_size, strike_of, text, tick_size
from common.derivatives import future_symbol, option_symbol
from common.models import Instrument

__all__ = ["KINDS", "SEGMENTS", "derivative", "expiry_of", "is_derivative_row", "strike_of", "underlying_of"]

SEGMENTS = frozenset({"NFO", "BFO"})
KINDS = {"OPTIDX": "option", "OPTSTK": "option", "FUTIDX": "future", "FUTSTK": "future"}
RIGHTS = frozenset({"CE", "PE"})


def is_derivative_row(exchange: str, instrument: str) -> bool:
    return exchange in SEGMENTS and instrument in KINDS


def expiry_of(value: Any) -> date | None:
    """``16-DEC-2025`` (any case) -> date; None for anything else."""
    day, _, rest = text(value).strip().upper().partition("-")
    month, _, year = rest.partition("-")
    if month not in MONTHS or not (day.isdigit() and year.isdigit() and len(year) == 4):
        return None
    try:
        return date(int(year), MONTHS[month], int(day))
    except ValueError:
        return None


def underlying_of(symbol: str, tsym: str, expiry: date) -> str:
    """``Symbol`` when the trading symbol starts with it (NFO); else the symbol's text before its
    expiry, found in the spellings Noren's files use: ``18AUG26`` (NFO), ``26SEP`` (a BSE
    monthly), ``25911`` / ``25O09`` (a BSE weekly: YY, month 1-9/O/N/D, DD). '' when none fits."""
    symbol, tsym = symbol.upper(), tsym.upper()
    if symbol and tsym.startswith(symbol):
        return symbol
    found = [tsym.find(code) for code in expiry_spellings(expiry)]
    at = min((i for i in found if i > 0), default=-1)
    return tsym[:at] if at > 0 else ""


def _right(row: Mapping[str, Any], tsym: str) -> str:
    """The OptionType column; where a file leaves it out, the BSE symbol's CE/PE ending."""
    right = text(row.get("OptionType")).strip().upper()
    if right in RIGHTS:
        return right
    return tsym[-2:] if tsym[-2:] in RIGHTS else ""


def derivative(row: Mapping[str, Any], today: date | None = None) -> Instrument | None:
    """The generic Instrument of an NFO/BFO future or option row; None for any other row, for one
    that cannot be read whole, and for a contract that expired before ``today`` (None: keep all)."""
    exchange = text(row.get("Exchange")).strip()
    itype = text(row.get("Instrument")).strip().upper()
    token, tsym = text(row.get("Token")).strip(), text(row.get("TradingSymbol")).strip()
    expiry = expiry_of(row.get("Expiry"))
    kind = KINDS.get(itype)
    if exchange not in SEGMENTS or kind is None or not token or not tsym or expiry is None:
        return None
    if today is not None and expiry < today:
        return None
    underlying = underlying_of(text(row.get("Symbol")).strip(), tsym, expiry)
    if not underlying:
        return None
    strike: Decimal | None = None
    right = ""
    if kind == "option":
        strike = strike_of(row.get("StrikePrice", row.get("Strike")))
        right = _right(row, tsym)
        if strike is None or not right:
            return None
        generic = option_symbol(underlying, expiry, strike, right)
    else:
        generic = future_symbol(underlying, expiry)
    return Instrument(
        exchange=exchange, symbol=generic, token=token, lot_size=lot_size(row.get("LotSize")),
        tick_size=tick_size(row.get("TickSize")), name=underlying, instrument_type=itype, broker_symbol=tsym,
        kind=kind, underlying=underlying, expiry=expiry, strike=strike, right=right,
    )
