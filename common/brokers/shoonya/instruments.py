"""Shoonya's symbol masters (``NSE_symbols.txt.zip``, ...) parsed into generic Instruments.

Finvasia publishes one zipped text file per exchange at the API host's root
(``https://api.shoonya.com/NSE_symbols.txt.zip``): CSV with the header
``Exchange,Token,LotSize,Symbol,TradingSymbol,Instrument,TickSize,`` (a trailing comma on every
line), tick size in rupees; derivative files add Expiry, OptionType and StrikePrice, which the
reader ignores. The files are public: no token is needed.

Equity trading symbols carry the series (``SBIN-EQ``): the generic symbol drops ``-EQ`` so that
``NSE:SBIN`` names the same instrument on every broker, and ``broker_symbol`` keeps the
original for order requests; other series (``-BE``, ``-BL``) stay, as at Kite. Index names are
upper-cased (``Nifty 50`` -> ``NIFTY 50``, Kite's spelling). Which exchanges are fetched is
``extra.symbol_exchanges`` (default NSE); a paper broker (any non-default ``rest_url``) serves
the same paths under its own root.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator

import requests

from common.brokers.base import get_file, session_or_new
from common.brokers.payload import lot_size, tick_size
from common.brokers.shoonya.spec import SPEC
from common.errors import BrokerUnavailable
from common.models import Instrument
from common.settings import Account

__all__ = ["download", "fetch", "generic_symbol", "parse_text", "parse_zip", "url"]

TIMEOUT_S = (3.05, 120.0)
DEFAULT_EXCHANGES = ("NSE",)
_INDEX_TYPES = frozenset({"INDEX", "UNDIND"})


def generic_symbol(trading_symbol: str, instrument_type: str) -> str:
    if instrument_type in _INDEX_TYPES:
        return trading_symbol.upper()
    return trading_symbol[:-3] if trading_symbol.endswith("-EQ") else trading_symbol


def parse_text(text: str) -> Iterator[Instrument]:
    """Instruments of one symbols text file; rows without exchange, token or symbol are skipped."""
    for row in csv.DictReader(io.StringIO(text)):
        exchange = (row.get("Exchange") or "").strip()
        token = (row.get("Token") or "").strip()
        tsym = (row.get("TradingSymbol") or "").strip()
        if not exchange or not token or not tsym:
            continue
        itype = (row.get("Instrument") or "").strip().upper()
        yield Instrument(
            exchange=exchange,
            symbol=generic_symbol(tsym, itype),
            token=token,
            lot_size=lot_size(row.get("LotSize")),
            tick_size=tick_size(row.get("TickSize")),
            name=(row.get("Symbol") or "").strip(),
            instrument_type="INDEX" if itype in _INDEX_TYPES else (itype or "EQ"),
            broker_symbol=tsym,
        )


def parse_zip(data: bytes) -> Iterator[Instrument]:
    """Every ``*.txt`` inside one downloaded zip."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for name in z.namelist():
            if name.lower().endswith(".txt"):
                yield from parse_text(z.read(name).decode("utf-8", "replace"))


def url(account: Account, exchange: str = "NSE") -> str:
    """``<root>/<EXCHANGE>_symbols.txt.zip``; the real root is the API host."""
    base = account.rest_url.rstrip("/")
    if base == SPEC.rest_url.rstrip("/"):
        base = str(account.extra.get("symbols_url_root", base)).rstrip("/")
    return f"{base}/{exchange}_symbols.txt.zip"


def download(account: Account, exchange: str = "NSE", session: requests.Session | None = None) -> bytes:
    with session_or_new(session) as s:
        return get_file(s, url(account, exchange), f"shoonya symbols {exchange}", timeout=TIMEOUT_S).content


def fetch(
    account: Account, access_token: str | None = None, session: requests.Session | None = None
) -> list[Instrument]:
    """The instrument list of the account's exchanges (public files: the token is not needed)."""
    exchanges = account.extra.get("symbol_exchanges") or DEFAULT_EXCHANGES
    out: list[Instrument] = []
    for exchange in exchanges:
        try:
            out.extend(parse_zip(download(account, str(exchange), session)))
        except zipfile.BadZipFile:
            raise BrokerUnavailable(f"shoonya symbols {exchange}: not a zip file") from None
    return out
