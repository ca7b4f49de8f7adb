"""Kite's instrument dump (``GET /instruments``, CSV) parsed into generic Instruments.

Columns: instrument_token, exchange_token, tradingsymbol, name, last_price, expiry,
strike, tick_size, lot_size, instrument_type, segment, exchange. For equities and indices
``tradingsymbol`` is already the generic symbol (``INFY``); ``tick_size`` is in rupees.
Futures and options of NFO and BFO take the generic key (``NFO:NIFTY:2026-04-21:24350:CE``) from
their row's columns (``contracts.py``), their ``tradingsymbol`` staying the broker symbol; the
dump is regenerated every morning, so contracts that expired before the trading date are dropped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime
from zoneinfo import ZoneInfo

import requests

from common.brokers.base import get_file, session_or_new
from common.brokers.kite import contracts
from common.brokers.payload import lot_size, tick_size
from common.models import Instrument
from common.settings import Account

__all__ = ["download", "fetch", "parse_csv", "url"]

TIMEOUT_S = (3.05, 60.0)


def parse_csv(text: str, trading_date: date | None = None) -> Iterator[Instrument]:
    """Instruments from the CSV text; rows without a token or symbol are skipped, and futures and
    options that expired before ``trading_date`` (None: none are dropped)."""
    for row in csv.DictReader(io.StringIO(text)):
        token = (row.get("instrument_token") or "").strip()
        symbol = (row.get("tradingsymbol") or "").strip()
        exchange = (row.get("exchange") or "").strip()
        if not token or not symbol or not exchange:
            continue
        segment = (row.get("segment") or "").strip()
        instrument_type = (row.get("instrument_type") or "").strip()
        if contracts.is_derivative_row(exchange, instrument_type):
            contract = contracts.from_row(row, token, symbol, exchange, trading_date)
            if contract is not None:
                yield contract
            continue
        index = segment == "INDICES"
        yield Instrument(
            exchange=exchange,
            symbol=symbol,
            token=token,
            lot_size=lot_size(row.get("lot_size")),
            tick_size=tick_size(row.get("tick_size")),
            name=(row.get("name") or "").strip(),
            instrument_type="INDEX" if index else (instrument_type or "EQ"),
            broker_symbol=symbol,
            kind="index" if index else "equity",
        )


def url(account: Account) -> str:
    return f"{account.rest_url.rstrip('/')}/instruments"


def download(account: Account, access_token: str | None, session: requests.Session | None = None) -> str:
    """The CSV text. Needs the session's token (``Authorization: token key:access``)."""
    headers = {"X-Kite-Version": "3"}
    if access_token:
        headers["Authorization"] = f"token {account.api_key}:{access_token}"
    with session_or_new(session) as s:
        resp = get_file(s, url(account), "kite instruments", timeout=TIMEOUT_S, headers=headers, token_refused=403)
    return resp.text


def fetch(
    account: Account, access_token: str | None, session: requests.Session | None = None
) -> list[Instrument]:
    today = datetime.now(ZoneInfo(account.timezone)).date()
    return list(parse_csv(download(account, access_token, session), today))
