"""Angel's derivative rows (``exch_seg`` NFO and BFO) -> generic futures and options. Pure.

A row of ``OpenAPIScripMaster.json``: ``{"token": "40672", "symbol": "NIFTY06OCT2622100PE",
"name": "NIFTY", "expiry": "06OCT2026", "strike": "2210000.000000", "lotsize": "65",
"instrumenttype": "OPTIDX", "exch_seg": "NFO", "tick_size": "5.000000", "freeze_qty": "1801", ...}``:
every value a string; ``strike`` in paise (rupees x 100; ``-1.000000`` on futures); ``tick_size``
in paise; ``expiry`` ``DDMONYYYY`` (upper case in the current file, ``04Apr2024`` in older copies);
``instrumenttype`` OPTIDX / OPTSTK / FUTIDX / FUTSTK. The master has no option-type field: the
right is the trading symbol's last two letters (CE/PE). ``freeze_qty`` is the first quantity the
exchange freezes (NIFTY ``1801`` where NSE's limit is 1800 units an order), so the most an order
may carry is one less. The trading symbol is kept as Angel wrote it (``broker_symbol``): BFO
symbols do not follow NFO's pattern (``SENSEX26O0884600PE`` weekly, ``SENSEX26SEP85000CE``
monthly), which is why nothing here formats one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from common.brokers import payload
from common.brokers.payload import MONTHS, expiry_spellings, lot_size, text, tick_size, whole
from common.derivatives import future_symbol, option_symbol
from common.models import Instrument

__all__ = ["KINDS", "SEGMENTS", "derivative", "expiry_of", "strike_of"]

SEGMENTS = frozenset({"NFO", "BFO"})
KINDS = {"OPTIDX": "option", "OPTSTK": "option", "FUTIDX": "future", "FUTSTK": "future"}


def expiry_of(value: Any) -> date | None:
    """``06OCT2026`` (any case) -> date; None for anything else."""
    t = text(value).strip().upper()
    if len(t) != 9 or t[2:5] not in MONTHS:
        return None
    try:
        return date(int(t[5:]), MONTHS[t[2:5]], int(t[:2]))
    except ValueError:
        return None


def strike_of(value: Any) -> Decimal | None:
    """Rupees from Angel's paise (``2210000.000000`` -> 22100); None unless > 0."""
    return payload.strike_of(value, per_rupee=100)


def _underlying(name: str, symbol: str, expiry: date) -> str:
    """The row's ``name``; a few BFO stock rows ship it empty (``360ONE26NOV1260CE``): then the
    symbol's text before its expiry code, found in Angel's three spellings of an expiry."""
    if name:
        return name.upper()
    for code in expiry_spellings(expiry):
        at = symbol.find(code)
        if at > 0:
            return symbol[:at]
    return ""


def derivative(row: Mapping[str, Any], today: date | None = None) -> Instrument | None:
    """The generic Instrument of an NFO/BFO future or option row; None for any other row, for
    one that cannot be read whole, and for a contract that expired before ``today``."""
    exchange = text(row.get("exch_seg")).strip()
    kind = KINDS.get(text(row.get("instrumenttype")).strip())
    token, symbol = text(row.get("token")).strip(), text(row.get("symbol")).strip()
    expiry = expiry_of(row.get("expiry"))
    if exchange not in SEGMENTS or kind is None or not token or not symbol or expiry is None:
        return None
    if today is not None and expiry < today:
        return None
    underlying = _underlying(text(row.get("name")).strip(), symbol, expiry)
    if not underlying:
        return None
    strike: Decimal | None = None
    right = ""
    if kind == "option":
        strike, right = strike_of(row.get("strike")), symbol[-2:]
        if strike is None or right not in ("CE", "PE"):
            return None
        generic = option_symbol(underlying, expiry, strike, right)
    else:
        generic = future_symbol(underlying, expiry)
    freeze = whole(row.get("freeze_qty"))
    return Instrument(
        exchange=exchange, symbol=generic, token=token, lot_size=lot_size(row.get("lotsize")),
        tick_size=tick_size(row.get("tick_size"), per_rupee=100), name=underlying,
        instrument_type=text(row.get("instrumenttype")).strip(), broker_symbol=symbol, kind=kind,
        underlying=underlying, expiry=expiry, strike=strike, right=right,
        freeze_quantity=freeze - 1 if freeze > 1 else 0,
    )
