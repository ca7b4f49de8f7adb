"""Angel's scrip master (``OpenAPIScripMaster.json``) parsed into generic Instruments.

Rows: ``token, symbol, name, expiry, strike, lotsize, instrumenttype, exch_seg, tick_size``,
every value a string. ``tick_size`` is in paise ("5.000000" is 0.05 rupee). Equity
symbols carry the series (``INFY-EQ``): the generic symbol drops the ``-EQ`` so that
``NSE:INFY`` names the same instrument on every broker, and ``broker_symbol`` keeps the
original for order requests. Other series (``-BE``, ``-BL``) stay, as at Kite. Index
names are upper-cased (``Nifty 50`` -> ``NIFTY 50``, Kite's spelling).

Futures and options of NFO and BFO become generic contracts (``NFO:NIFTY:2026-10-06:22100:PE``,
:mod:`common.brokers.angel.contracts`); contracts that expired before the master's trading day
are dropped (the file is republished every morning, about 08:30 IST).

The real file is a public URL that needs no login; a paper broker (any non-default
``rest_url``) serves it at the same path under its own root.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import requests

from common.brokers.angel import contracts
from common.brokers.angel.spec import SPEC
from common.brokers.base import get_file, session_or_new
from common.brokers.payload import lot_size, tick_size
from common.models import Instrument
from common.settings import Account

__all__ = ["PUBLIC_URL", "SCRIP_MASTER_PATH", "download", "fetch", "generic_symbol", "parse_json", "parse_rows", "url"]

SCRIP_MASTER_PATH = "/OpenAPI_File/files/OpenAPIScripMaster.json"
PUBLIC_URL = f"https://margincalculator.angelbroking.com{SCRIP_MASTER_PATH}"
TIMEOUT_S = (3.05, 120.0)  # the real file is tens of MB
_INDEX_TYPES = frozenset({"AMXIDX", "INDEX"})


def generic_symbol(symbol: str, instrument_type: str) -> str:
    if instrument_type in _INDEX_TYPES:
        return symbol.upper()
    return symbol.removesuffix("-EQ")


def parse_rows(rows: Iterable[dict[str, Any]], today: date | None = None) -> Iterator[Instrument]:
    """Every row as a generic Instrument; ``today`` (the master's trading day) drops expired
    futures and options (None keeps them all)."""
    for row in rows:
        token = str(row.get("token") or "").strip()
        symbol = str(row.get("symbol") or "").strip()
        exchange = str(row.get("exch_seg") or "").strip()
        if not token or not symbol or not exchange:
            continue
        itype = str(row.get("instrumenttype") or "").strip()
        if exchange in contracts.SEGMENTS and itype in contracts.KINDS:
            found = contracts.derivative(row, today)
            if found is not None:
                yield found
            continue
        yield Instrument(
            exchange=exchange,
            symbol=generic_symbol(symbol, itype),
            token=token,
            lot_size=lot_size(row.get("lotsize")),
            tick_size=tick_size(row.get("tick_size"), per_rupee=100),
            name=str(row.get("name") or "").strip(),
            instrument_type="INDEX" if itype in _INDEX_TYPES else (itype or "EQ"),
            broker_symbol=symbol,
            kind="index" if itype in _INDEX_TYPES else "equity",
        )


def parse_json(data: bytes | str, today: date | None = None) -> Iterator[Instrument]:
    rows = json.loads(data)
    if not isinstance(rows, list):
        raise ValueError("the scrip master is not a JSON list")
    return parse_rows(rows, today)


def url(account: Account) -> str:
    """The public URL for the real broker; ``<rest_url>`` + the same path for any other root."""
    base = account.rest_url.rstrip("/")
    if base == SPEC.rest_url.rstrip("/"):
        return str(account.extra.get("scrip_master_url", PUBLIC_URL))
    return f"{base}{SCRIP_MASTER_PATH}"


def download(account: Account, session: requests.Session | None = None) -> bytes:
    with session_or_new(session) as s:
        return get_file(s, url(account), "angel scrip master", timeout=TIMEOUT_S).content


def fetch(
    account: Account, access_token: str | None = None, session: requests.Session | None = None
) -> list[Instrument]:
    """The instrument list (the scrip master is public: the token is not needed); contracts that
    expired before today in the account's time zone are left out."""
    today = datetime.now(ZoneInfo(account.timezone)).date()
    return list(parse_json(download(account, session), today))
