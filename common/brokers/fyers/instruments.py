"""Fyers' symbol master CSVs (``https://public.fyers.in/sym_details/NSE_CM.csv``, ...) parsed
into generic Instruments.

The files have no header row; the columns (Fyers "Symbol Master" docs) are: 0 Fytoken,
1 symbol details (the name), 2 exchange instrument type, 3 lot size, 4 tick size (rupees),
5 ISIN, 6 trading session, 7 last update, 8 expiry (epoch s), 9 symbol ticker
("NSE:SBIN-EQ"), 10 exchange (10 NSE, 11 MCX, 12 BSE), 11 segment (10 cash, 11 F&O,
12 currency, 20 commodity), 12 scrip code (the exchange token), 13 underlying symbol,
14 underlying scrip code, 15 strike, 16 option type, 17 underlying Fytoken, then reserved.

The Fytoken is exchange (2 digits) + segment (2) + padding + the exchange token
("10100000003045" is NSE cash token 3045): it becomes ``Instrument.token``, and the ticker
``broker_symbol``. As for Angel, the generic symbol drops ``-EQ`` (``NSE:SBIN`` is the same
instrument on every broker) and keeps other series; an index takes its name upper-cased
(``Nifty 50`` -> ``NIFTY 50``, Kite's spelling).

The files are public; a paper broker (any non-default ``rest_url``) serves them at the same
path under its own root. ``extra.symbol_masters`` (default ``["NSE_CM"]``) picks the files.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

import requests

from common.brokers.base import get_file, session_or_new
from common.brokers.fyers.spec import SPEC
from common.brokers.payload import lot_size, tick_size
from common.models import Instrument
from common.settings import Account

__all__ = ["PUBLIC_ROOT", "SYMBOL_MASTER_DIR", "download", "fetch", "parse_csv", "parse_rows", "urls"]

SYMBOL_MASTER_DIR = "/sym_details"
PUBLIC_ROOT = "https://public.fyers.in"
TIMEOUT_S = (3.05, 120.0)
# (exchange code, segment code) -> the generic exchange
_EXCHANGES = {("10", "10"): "NSE", ("10", "11"): "NFO", ("10", "12"): "CDS", ("12", "10"): "BSE",
              ("12", "11"): "BFO", ("11", "20"): "MCX", ("12", "12"): "BCD"}
_COLUMNS = 18


def _kind(ticker: str, exchange: str, option_type: str) -> str:
    if ticker.endswith("-INDEX"):
        return "INDEX"
    if exchange in ("NSE", "BSE"):
        return "EQ"
    return option_type if option_type in ("CE", "PE") else "FUT"


def parse_rows(rows: Iterable[list[str]]) -> Iterator[Instrument]:
    for row in rows:
        if len(row) < _COLUMNS:
            continue
        fytoken, name, ticker = row[0].strip(), row[1].strip(), row[9].strip()
        exchange = _EXCHANGES.get((row[10].strip(), row[11].strip()))
        if not fytoken or ":" not in ticker or exchange is None:
            continue
        kind = _kind(ticker, exchange, row[16].strip())
        bare = ticker.split(":", 1)[1]
        if kind == "INDEX":
            symbol = (name or bare.removesuffix("-INDEX")).upper()
        else:
            symbol = bare.removesuffix("-EQ")
        yield Instrument(
            exchange=exchange,
            symbol=symbol,
            token=fytoken,
            lot_size=lot_size(row[3]),
            tick_size=tick_size(row[4]),
            name=name,
            instrument_type=kind,
            broker_symbol=ticker,
        )


def parse_csv(data: bytes | str) -> Iterator[Instrument]:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return parse_rows(csv.reader(io.StringIO(text)))


def urls(account: Account) -> list[str]:
    """The public URLs for the real broker; ``<rest_url>`` + the same paths for any other root."""
    base = account.rest_url.rstrip("/")
    root = PUBLIC_ROOT if base == SPEC.rest_url.rstrip("/") else base
    names: Any = account.extra.get("symbol_masters", ["NSE_CM"])
    return [f"{root}{SYMBOL_MASTER_DIR}/{n}.csv" for n in names]


def download(account: Account, session: requests.Session | None = None) -> list[bytes]:
    with session_or_new(session) as s:
        return [get_file(s, url, "fyers symbol master", timeout=TIMEOUT_S).content for url in urls(account)]


def fetch(
    account: Account, access_token: str | None = None, session: requests.Session | None = None
) -> list[Instrument]:
    """The instrument list (the symbol masters are public: the token is not needed)."""
    return [inst for data in download(account, session) for inst in parse_csv(data)]
