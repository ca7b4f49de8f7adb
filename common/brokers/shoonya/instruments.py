"""Shoonya's symbol masters (``NSE_symbols.txt.zip``, ...) parsed into generic Instruments.

Finvasia publishes one zipped text file per exchange at the API host's root
(``https://api.shoonya.com/NSE_symbols.txt.zip``): CSV with the header
``Exchange,Token,LotSize,Symbol,TradingSymbol,Instrument,TickSize,`` (a trailing comma on every
line), tick size in rupees; the derivative files (``NFO_symbols.txt.zip``, ``BFO_symbols.txt.zip``)
add Expiry, OptionType and StrikePrice. The files are public: no token is needed.

Futures and options of NFO and BFO become generic contracts (``NFO:NIFTY:2026-08-18:18550:CE``,
:mod:`common.brokers.shoonya.contracts`); contracts that expired before the master's trading day
are dropped (the files are rebuilt every morning).

Equity trading symbols carry the series (``SBIN-EQ``): the generic symbol drops ``-EQ`` so that
``NSE:SBIN`` names the same instrument on every broker, and ``broker_symbol`` keeps the
original for order requests; other series (``-BE``, ``-BL``) stay, as at Kite. Index names are
upper-cased (``Nifty 50`` -> ``NIFTY 50``, Kite's spelling); Finvasia's current file spells Nifty
50's trading symbol ``NIFTY INDEX`` with ``Nifty 50`` in ``Symbol``, so an index symbol ending in
`` INDEX`` takes ``Symbol``'s name. Which exchanges are fetched is ``extra.symbol_exchanges``
(default NSE, BSE, NFO, BFO, as Fyers' default masters); a paper broker (any non-default
``rest_url``) serves the same paths under its own root.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from datetime import date, datetime
from zoneinfo import ZoneInfo

import requests

from common.brokers.base import get_file, session_or_new
from common.brokers.payload import lot_size, tick_size
from common.brokers.shoonya import contracts
from common.brokers.shoonya.spec import SPEC
from common.errors import BrokerUnavailable
from common.models import Instrument
from common.settings import Account

__all__ = ["download", "fetch", "generic_symbol", "parse_text", "parse_zip", "url"]

TIMEOUT_S = (3.05, 120.0)
DEFAULT_EXCHANGES = ("NSE", "BSE", "NFO", "BFO")
_INDEX_TYPES = frozenset({"INDEX", "UNDIND"})


def generic_symbol(trading_symbol: str, instrument_type: str, name: str = "") -> str:
    if instrument_type in _INDEX_TYPES:
        upper = trading_symbol.upper()
        return name.upper() if upper.endswith(" INDEX") and name else upper
    return trading_symbol.removesuffix("-EQ")


def parse_text(text: str, today: date | None = None) -> Iterator[Instrument]:
    """Instruments of one symbols text file; rows without exchange, token or symbol are skipped,
    and NFO/BFO futures and options that cannot be read whole or expired before ``today`` (the
    master's trading day; None keeps them all)."""
    for row in csv.DictReader(io.StringIO(text)):
        exchange = (row.get("Exchange") or "").strip()
        token = (row.get("Token") or "").strip()
        tsym = (row.get("TradingSymbol") or "").strip()
        if not exchange or not token or not tsym:
            continue
        itype = (row.get("Instrument") or "").strip().upper()
        if contracts.is_derivative_row(exchange, itype):
            found = contracts.derivative(row, today)
            if found is not None:
                yield found
            continue
        name = (row.get("Symbol") or "").strip()
        index = itype in _INDEX_TYPES
        yield Instrument(
            exchange=exchange,
            symbol=generic_symbol(tsym, itype, name),
            token=token,
            lot_size=lot_size(row.get("LotSize")),
            tick_size=tick_size(row.get("TickSize")),
            name=name,
            instrument_type="INDEX" if index else (itype or "EQ"),
            broker_symbol=tsym,
            kind="index" if index else "equity",
        )


def parse_zip(data: bytes, today: date | None = None) -> Iterator[Instrument]:
    """Every ``*.txt`` inside one downloaded zip."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for name in z.namelist():
            if name.lower().endswith(".txt"):
                yield from parse_text(z.read(name).decode("utf-8", "replace"), today)


def url(account: Account, exchange: str) -> str:
    """``<root>/<EXCHANGE>_symbols.txt.zip``; the real root is the API host."""
    base = account.rest_url.rstrip("/")
    if base == SPEC.rest_url.rstrip("/"):
        base = str(account.extra.get("symbols_url_root", base)).rstrip("/")
    return f"{base}/{exchange}_symbols.txt.zip"


def download(account: Account, exchange: str, session: requests.Session | None = None) -> bytes:
    with session_or_new(session) as s:
        return get_file(s, url(account, exchange), f"shoonya symbols {exchange}", timeout=TIMEOUT_S).content


def fetch(
    account: Account, access_token: str | None = None, session: requests.Session | None = None
) -> list[Instrument]:
    """The instrument list of the account's exchanges (public files: the token is not needed);
    contracts that expired before today in the account's time zone are left out."""
    exchanges = account.extra.get("symbol_exchanges") or DEFAULT_EXCHANGES
    today = datetime.now(ZoneInfo(account.timezone)).date()
    out: list[Instrument] = []
    for exchange in exchanges:
        try:
            out.extend(parse_zip(download(account, str(exchange), session), today))
        except zipfile.BadZipFile:
            raise BrokerUnavailable(f"shoonya symbols {exchange}: not a zip file") from None
    return out
