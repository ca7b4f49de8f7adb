"""Fyers' symbol master CSVs (``https://public.fyers.in/sym_details/NSE_CM.csv``, ...) parsed
into generic Instruments.

The files have no header row; the columns (Fyers "Symbol Master" docs) are: 0 Fytoken,
1 symbol details (the name), 2 exchange instrument type, 3 lot size, 4 tick size (rupees),
5 ISIN, 6 trading session, 7 last update, 8 expiry (epoch s), 9 symbol ticker
("NSE:SBIN-EQ"), 10 exchange (10 NSE, 11 MCX, 12 BSE), 11 segment (10 cash, 11 F&O,
12 currency, 20 commodity), 12 scrip code (the exchange token), 13 underlying symbol,
14 underlying scrip code, 15 strike, 16 option type, 17 underlying Fytoken, then reserved.

The Fytoken is exchange (2 digits) + segment (2) + six digits (a derivative's expiry as
YYMMDD, zeros otherwise) + the exchange token ("10100000003045" is NSE cash token 3045,
"101126090146945" the NFO contract 46945 expiring 2026-09-01): it becomes ``Instrument.token``,
and the ticker ``broker_symbol``. As for Angel, the generic symbol drops ``-EQ`` (``NSE:SBIN``
is the same instrument on every broker) and keeps other series; an index takes its name
upper-cased (``Nifty 50`` -> ``NIFTY 50``, Kite's spelling).

Derivatives (``NSE_FO.csv`` -> NFO, ``BSE_FO.csv`` -> BFO, by the exchange and segment columns)
get the generic key of :mod:`common.derivatives` from the row's own columns, never from the
ticker's text: underlying (column 13), expiry (column 8, the contract's last trading moment in
epoch seconds, read as an IST date), strike (column 15, rupees; ``-1.0`` on futures) and option
type (column 16: CE, PE, or XX for a future). The CSV carries no freeze quantity (the JSON
masters' ``qtyFreeze`` is not read), so ``freeze_quantity`` stays 0. A contract that expired
before ``today`` (the master's trading date) is dropped: the master is refreshed daily.

The files are public; a paper broker (any non-default ``rest_url``) serves them at the same
path under its own root. ``extra.symbol_masters`` picks the files; the default, ``NSE_CM``,
``BSE_CM``, ``NSE_FO`` and ``BSE_FO``, has the equities, the indices the options are written on
(``BSE:SENSEX``) and the NFO and BFO contracts.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import requests

from common.brokers.base import get_file, session_or_new
from common.brokers.fyers.spec import SPEC
from common.brokers.payload import lot_size, strike_of, tick_size
from common.derivatives import DERIVATIVE_EXCHANGES, future_symbol, option_symbol
from common.models import Instrument
from common.settings import Account

__all__ = ["DEFAULT_MASTERS", "IST", "PUBLIC_ROOT", "SYMBOL_MASTER_DIR", "contract", "download", "fetch", "parse_csv",
           "parse_rows", "trading_date", "urls"]

SYMBOL_MASTER_DIR = "/sym_details"
PUBLIC_ROOT = "https://public.fyers.in"
TIMEOUT_S = (3.05, 120.0)
DEFAULT_MASTERS = ("NSE_CM", "BSE_CM", "NSE_FO", "BSE_FO")
# (exchange code, segment code) -> the generic exchange
_EXCHANGES = {("10", "10"): "NSE", ("10", "11"): "NFO", ("10", "12"): "CDS", ("12", "10"): "BSE",
              ("12", "11"): "BFO", ("11", "20"): "MCX", ("12", "12"): "BCD"}
_COLUMNS = 18


IST = ZoneInfo("Asia/Kolkata")
_RIGHTS = frozenset({"CE", "PE"})


def trading_date() -> date:
    """Today in India: the date a master downloaded now is valid for."""
    return datetime.now(IST).date()


# A master's 100k rows repeat a few dozen expiries and tick sizes and a few thousand strikes, so
# each distinct text is converted once (bounded caches, kept from one parse to the next).
_CACHED = 16_384


@lru_cache(maxsize=_CACHED)
def _expiry(raw: str) -> date | None:
    """Column 8 (epoch seconds of the contract's last trading moment) as an IST date."""
    try:
        return datetime.fromtimestamp(int(raw), IST).date() if raw else None
    except (ValueError, OverflowError, OSError):
        return None


_strike = lru_cache(maxsize=_CACHED)(strike_of)
_tick = lru_cache(maxsize=_CACHED)(tick_size)
_lot = lru_cache(maxsize=_CACHED)(lot_size)


def contract(row: list[str], exchange: str, today: date | None) -> Instrument | None:
    """A futures or options row (NFO, BFO, ...) as a generic Instrument; None when the row is
    not a usable contract (no underlying, expiry or strike) or expired before ``today``."""
    underlying = row[13].strip().upper()
    expiry = _expiry(row[8].strip())
    if expiry is None or not underlying or ":" in underlying or (today is not None and expiry < today):
        return None
    right = row[16].strip().upper()
    strike: Decimal | None = None
    if right in _RIGHTS:
        strike = _strike(row[15].strip())
        if strike is None:
            return None
        symbol, kind, instrument_type = option_symbol(underlying, expiry, strike, right), "option", right
    else:
        right = ""
        symbol, kind, instrument_type = future_symbol(underlying, expiry), "future", "FUT"
    return Instrument(
        exchange=exchange,
        symbol=symbol,
        token=row[0].strip(),
        lot_size=_lot(row[3]),
        tick_size=_tick(row[4]),
        name=row[1].strip(),
        instrument_type=instrument_type,
        broker_symbol=row[9].strip(),
        kind=kind,
        underlying=underlying,
        expiry=expiry,
        strike=strike,
        right=right,
    )


def _cash(row: list[str], exchange: str) -> Instrument:
    fytoken, name, ticker = row[0].strip(), row[1].strip(), row[9].strip()
    bare = ticker.split(":", 1)[1]
    index = ticker.endswith("-INDEX")
    return Instrument(
        exchange=exchange,
        symbol=(name or bare.removesuffix("-INDEX")).upper() if index else bare.removesuffix("-EQ"),
        token=fytoken,
        lot_size=lot_size(row[3]),
        tick_size=tick_size(row[4]),
        name=name,
        instrument_type="INDEX" if index else "EQ",
        broker_symbol=ticker,
        kind="index" if index else "equity",
    )


def parse_rows(rows: Iterable[list[str]], today: date | None = None) -> Iterator[Instrument]:
    """Instruments of every file's rows; derivatives that expired before ``today`` (default: the
    trading date in India) are left out."""
    today = today or trading_date()
    for row in rows:
        if len(row) < _COLUMNS:
            continue
        exchange = _EXCHANGES.get((row[10].strip(), row[11].strip()))
        if exchange is None or not row[0].strip() or ":" not in row[9]:
            continue
        if exchange in DERIVATIVE_EXCHANGES:
            inst = contract(row, exchange, today)
            if inst is not None:
                yield inst
        else:
            yield _cash(row, exchange)


def parse_csv(data: bytes | str, today: date | None = None) -> Iterator[Instrument]:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return parse_rows(csv.reader(io.StringIO(text)), today)


def urls(account: Account) -> list[str]:
    """The public URLs for the real broker; ``<rest_url>`` + the same paths for any other root."""
    base = account.rest_url.rstrip("/")
    root = PUBLIC_ROOT if base == SPEC.rest_url.rstrip("/") else base
    names: Any = account.extra.get("symbol_masters", DEFAULT_MASTERS)
    return [f"{root}{SYMBOL_MASTER_DIR}/{n}.csv" for n in names]


def download(account: Account, session: requests.Session | None = None) -> list[bytes]:
    with session_or_new(session) as s:
        return [get_file(s, url, "fyers symbol master", timeout=TIMEOUT_S).content for url in urls(account)]


def fetch(
    account: Account, access_token: str | None = None, session: requests.Session | None = None
) -> list[Instrument]:
    """The instrument list (the symbol masters are public: the token is not needed)."""
    return [inst for data in download(account, session) for inst in parse_csv(data)]
