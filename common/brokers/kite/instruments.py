"""Kite's instrument dump (``GET /instruments``, CSV) parsed into generic Instruments.

Columns: instrument_token, exchange_token, tradingsymbol, name, last_price, expiry,
strike, tick_size, lot_size, instrument_type, segment, exchange. ``tradingsymbol`` is
already the generic symbol (``INFY``); ``tick_size`` is in rupees.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation

import requests

from common.errors import BrokerUnavailable, TokenExpired
from common.models import Instrument
from common.settings import Account

__all__ = ["download", "parse_csv", "url"]

TIMEOUT_S = (3.05, 60.0)
# Indices carry tick_size 0 (they cannot be traded); the generic default keeps a stray
# tick-size check from dividing by zero.
_DEFAULT_TICK = Decimal("0.05")


def _tick(text: str) -> Decimal:
    try:
        value = Decimal(text.strip() or "0")
    except InvalidOperation:
        return _DEFAULT_TICK
    return value.normalize() if value > 0 else _DEFAULT_TICK


def parse_csv(text: str) -> Iterator[Instrument]:
    """Instruments from the CSV text; rows without a token or symbol are skipped."""
    for row in csv.DictReader(io.StringIO(text)):
        token = (row.get("instrument_token") or "").strip()
        symbol = (row.get("tradingsymbol") or "").strip()
        exchange = (row.get("exchange") or "").strip()
        if not token or not symbol or not exchange:
            continue
        segment = (row.get("segment") or "").strip()
        try:
            lot = int(float(row.get("lot_size") or 1)) or 1
        except ValueError:
            lot = 1
        yield Instrument(
            exchange=exchange,
            symbol=symbol,
            token=token,
            lot_size=lot,
            tick_size=_tick(row.get("tick_size") or ""),
            name=(row.get("name") or "").strip(),
            instrument_type="INDEX" if segment == "INDICES" else (row.get("instrument_type") or "EQ").strip(),
            broker_symbol=symbol,
        )


def url(account: Account) -> str:
    return f"{account.rest_url.rstrip('/')}/instruments"


def download(account: Account, access_token: str | None, session: requests.Session | None = None) -> str:
    """The CSV text. Needs the session's token (``Authorization: token key:access``)."""
    headers = {"X-Kite-Version": "3"}
    if access_token:
        headers["Authorization"] = f"token {account.api_key}:{access_token}"
    s = session or requests.Session()
    try:
        resp = s.get(url(account), headers=headers, timeout=TIMEOUT_S)
    except requests.RequestException as e:
        raise BrokerUnavailable(f"kite instruments: {type(e).__name__}") from None
    finally:
        if session is None:
            s.close()
    if resp.status_code == 403:
        raise TokenExpired("kite instruments: token refused", http_status=403)
    if resp.status_code != 200:
        raise BrokerUnavailable(f"kite instruments: HTTP {resp.status_code}", http_status=resp.status_code)
    return resp.text


def fetch(
    account: Account, access_token: str | None, session: requests.Session | None = None
) -> list[Instrument]:
    return list(parse_csv(download(account, access_token, session)))
