"""Kite's futures and options rows (``GET /instruments``, segments NFO-FUT/NFO-OPT, BFO-FUT/BFO-OPT)
read into generic derivative Instruments. Pure: one CSV row in, one Instrument (or None) out.

The row carries everything the generic key needs, so nothing is read out of the trading symbol
when the row says it: ``name`` is the underlying (``NIFTY``, ``SENSEX``, ``RELIANCE``; blank in
Zerodha's documented sample and in older dumps), ``expiry`` is ``YYYY-MM-DD``, ``strike`` rupees
(``24350``, ``24350.0``; blank or 0 for a future), ``instrument_type`` CE/PE/FUT, ``tick_size``
rupees, ``lot_size`` units. Kite publishes no freeze quantity. ``tradingsymbol``
(``NIFTY2642124350CE`` weekly, ``NIFTY26SEP23150CE`` monthly, ``NIFTY26OCTFUT``) stays the
instrument's ``broker_symbol``: orders send it as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal

from common.brokers.payload import lot_size, strike_of, tick_size
from common.derivatives import future_symbol, option_symbol
from common.models import Instrument

__all__ = ["EXCHANGES", "RIGHTS", "from_row", "is_derivative_row"]

# Kite's derivative exchanges that the generic key covers for it (equity F&O on NSE and BSE).
EXCHANGES = frozenset({"NFO", "BFO"})
RIGHTS = frozenset({"CE", "PE"})
_TYPES = RIGHTS | {"FUT"}
_UNDERLYING = re.compile(r"^[A-Z0-9&\-_.]{1,30}$")  # what a generic key's underlying may be


def is_derivative_row(exchange: str, instrument_type: str) -> bool:
    return exchange in EXCHANGES and instrument_type in _TYPES


def from_row(row: Mapping[str, str | None], token: str, tradingsymbol: str, exchange: str,
             trading_date: date | None) -> Instrument | None:
    """The row's future or option; None for a row that cannot be one (no readable expiry, an
    option without a strike > 0, an underlying that cannot be told) or that expired before
    ``trading_date`` (None: keep every row)."""
    kind_code = (row.get("instrument_type") or "").strip()
    try:
        expiry = date.fromisoformat((row.get("expiry") or "").strip())
    except ValueError:
        return None
    if trading_date is not None and expiry < trading_date:
        return None
    underlying = (row.get("name") or "").strip().upper() or _underlying_of(tradingsymbol, expiry)
    if not _UNDERLYING.match(underlying):
        return None  # no generic key could name it
    strike: Decimal | None = None
    if kind_code == "FUT":
        symbol = future_symbol(underlying, expiry)
    else:
        strike = strike_of(row.get("strike"))
        if strike is None:
            return None
        symbol = option_symbol(underlying, expiry, strike, kind_code)
    return Instrument(
        exchange=exchange, symbol=symbol, token=token, lot_size=lot_size(row.get("lot_size")),
        tick_size=tick_size(row.get("tick_size")), name=(row.get("name") or "").strip() or underlying,
        instrument_type=kind_code, broker_symbol=tradingsymbol, kind="future" if strike is None else "option",
        underlying=underlying, expiry=expiry, strike=strike, right="" if strike is None else kind_code,
    )


def _underlying_of(tradingsymbol: str, expiry: date) -> str:
    """The underlying of a row whose ``name`` is blank (Zerodha's documented sample, older dumps):
    the symbol's text before the expiry's two-digit year where a contract month follows it (a
    month's three letters: ``BANKNIFTY18JAN23500CE``; or a weekly month code and day:
    ``NIFTY20D1713600CE``). Read from the row's own expiry, never guessed; '' when it does not fit."""
    yy = f"{expiry.year % 100:02d}"
    match = re.match(rf"^([A-Z][A-Z0-9&\-_.]*?){yy}(?:[A-Z]{{3}}|[1-9OND]\d\d)", tradingsymbol)
    return match.group(1) if match else ""
