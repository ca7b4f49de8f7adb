"""The paper broker's derivative universe (issue #16): index and stock futures and options on NFO
and BFO, generated relative to a trading date, with every broker's identity for each contract.

The paper broker IS the broker, so it may format trading symbols; product code never does (it
looks contracts up in the masters the dialects export from these rows).

- Expiries (the exchanges' expiry days from 1 Sep 2025): NSE on Tuesdays (NIFTY weekly for the
  next 4 weeks, every NSE underlying monthly on the month's last Tuesday for the next 3 months),
  BSE on Thursdays (SENSEX weekly and monthly, BANKEX monthly). Exchange holidays are not modelled:
  an expiry never moves to the previous trading day here.
- Strikes: ATM +/- 15 steps around the underlying's reference price, CE and PE, for every expiry;
  a future for every monthly expiry. Lot sizes and freeze quantities per docs/brokers.md and the
  exchanges' circulars (sources in /tmp/h17/notes16_paper.md); tick 0.05 for every contract.
- Tokens: one exchange token per contract, stable for the contract's life, far above every equity
  token: ``300_000 + ((u * 512 + expiry.toordinal() % 512) * 64 + slot)`` (u the underlying's row,
  slot 0 the future, 1-31 the calls, 32-62 the puts). From it, as at the brokers: Kite
  ``exchange_token << 8 | segment`` (NFO 2, BFO 5, kiteconnect's ticker EXCHANGE_MAP), Angel and
  Shoonya the exchange token itself (exchangeType NFO 2, BFO 4), Fyers' Fytoken exchange, segment,
  expiry YYMMDD and exchange token (``1011`` NSE F&O, ``1211`` BSE F&O).
"""

from __future__ import annotations

import calendar
import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass

from paper.orders import IST
from paper.universe import PaperInstrument

__all__ = [
    "INDICES", "MONTHS", "NIFTY_50", "UNDERLYINGS", "IndexSpec", "UnderlyingSpec", "angel_future_symbol",
    "angel_option_symbol", "contract_type", "derivative_universe", "expiries", "fyers_ticker", "fyers_token",
    "index_instrument", "index_instruments", "kite_future_symbol", "kite_option_symbol", "last_weekday",
    "monthly_expiries", "paise_text", "shoonya_future_symbol", "shoonya_option_symbol", "trading_date",
    "weekly_expiries",
]  # fmt: skip

TUESDAY, THURSDAY = 1, 3
WEEKLY_COUNT, MONTHLY_COUNT, STRIKES_EACH_SIDE = 4, 3, 15
TICK_PAISE = 5
TOKEN_BASE = 300_000
KITE_SEGMENT = {"NFO": 2, "BFO": 5}
ANGEL_EXCHANGE_TYPE = {"NFO": 2, "BFO": 4, "BSE": 3}
FYERS_EXCHANGE_SEGMENT = {"NFO": "1011", "BFO": "1211"}
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKLY_MONTH = "123456789OND"  # Kite's and Fyers' weekly month letter: 1-9, then O, N, D


def trading_date(now: dt.datetime | None = None) -> dt.date:
    """The paper broker's trading date: ``PAPER_TRADING_DATE`` (ISO) when set, else today in IST."""
    pinned = os.environ.get("PAPER_TRADING_DATE")
    if pinned:
        return dt.date.fromisoformat(pinned)
    return (now or dt.datetime.now(IST)).astimezone(IST).date()


# ----- the expiry calendar -----
def last_weekday(year: int, month: int, weekday: int) -> dt.date:
    """The month's last ``weekday`` (0 Monday ... 6 Sunday)."""
    last = dt.date(year, month, calendar.monthrange(year, month)[1])
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7)


def weekly_expiries(today: dt.date, weekday: int, count: int = WEEKLY_COUNT) -> list[dt.date]:
    """The next ``count`` ``weekday``s from ``today`` (today included: an expiry trades until the close)."""
    first = today + dt.timedelta(days=(weekday - today.weekday()) % 7)
    return [first + dt.timedelta(weeks=i) for i in range(count)]


def monthly_expiries(today: dt.date, weekday: int, count: int = MONTHLY_COUNT) -> list[dt.date]:
    """The next ``count`` monthly expiries (the month's last ``weekday``) on or after ``today``."""
    out: list[dt.date] = []
    year, month = today.year, today.month
    while len(out) < count:
        expiry = last_weekday(year, month, weekday)
        if expiry >= today:
            out.append(expiry)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def expiries(today: dt.date, weekday: int, weekly: bool) -> list[tuple[dt.date, bool]]:
    """(expiry, is monthly) in date order: the monthlies, and the weeklies when the underlying has them."""
    monthly = set(monthly_expiries(today, weekday))
    dates = monthly | (set(weekly_expiries(today, weekday)) if weekly else set())
    return [(d, d in monthly) for d in sorted(dates)]


# ----- each broker's trading symbol -----
# Dates by hand: date.__format__ goes through strftime, ~20 us a call, most of building 2,500 rows.
def _yy(d: dt.date) -> str:
    return f"{d.year % 100:02d}"


def paise_text(paise: int) -> str:
    """Paise as the symbols and the masters write a strike or tick in rupees: ``24000``,
    ``24050.5``, ``0.05``."""
    rupees, rest = divmod(paise, 100)
    return str(rupees) if not rest else f"{rupees}.{rest:02d}".rstrip("0")


def contract_type(inst: PaperInstrument) -> str:
    """Angel's and Shoonya's instrument type of a contract: OPTIDX, OPTSTK, FUTIDX or FUTSTK."""
    index = inst.spot is not None and inst.spot.is_index
    return ("OPT" if inst.kind == "option" else "FUT") + ("IDX" if index else "STK")


def kite_option_symbol(name: str, expiry: dt.date, strike_paise: int, right: str, monthly: bool) -> str:
    """Kite (and Fyers after the exchange prefix): monthly ``NIFTY25DEC24000CE``, weekly
    ``NIFTY25D1624000CE`` (YY, month 1-9/O/N/D, DD)."""
    if monthly:
        when = f"{_yy(expiry)}{MONTHS[expiry.month - 1]}"
    else:
        when = f"{_yy(expiry)}{_WEEKLY_MONTH[expiry.month - 1]}{expiry.day:02d}"
    return f"{name}{when}{paise_text(strike_paise)}{right}"


def kite_future_symbol(name: str, expiry: dt.date) -> str:
    """``NIFTY25DECFUT``."""
    return f"{name}{_yy(expiry)}{MONTHS[expiry.month - 1]}FUT"


def _angel_date(expiry: dt.date) -> str:
    return f"{expiry.day:02d}{MONTHS[expiry.month - 1]}{_yy(expiry)}"


def angel_option_symbol(name: str, expiry: dt.date, strike_paise: int, right: str) -> str:
    """Angel, weekly and monthly alike: ``NIFTY16DEC2524000CE`` (DD MON YY)."""
    return f"{name}{_angel_date(expiry)}{paise_text(strike_paise)}{right}"


def angel_future_symbol(name: str, expiry: dt.date) -> str:
    """``NIFTY30DEC25FUT``."""
    return f"{name}{_angel_date(expiry)}FUT"


def shoonya_option_symbol(name: str, expiry: dt.date, strike_paise: int, right: str) -> str:
    """Shoonya: ``NIFTY16DEC25C24000`` (C/P before the strike)."""
    return f"{name}{_angel_date(expiry)}{right[0]}{paise_text(strike_paise)}"


def shoonya_future_symbol(name: str, expiry: dt.date) -> str:
    """``NIFTY30DEC25F``."""
    return f"{name}{_angel_date(expiry)}F"


def fyers_ticker(exchange: str, kite_symbol: str) -> str:
    """Fyers' ticker: the Kite-style symbol behind the cash exchange (``NSE:NIFTY25D1624000CE``,
    ``BSE:SENSEX25D1880000CE``)."""
    return f"{'BSE' if exchange == 'BFO' else 'NSE'}:{kite_symbol}"


def fyers_token(exchange: str, expiry: dt.date, exchange_token: int) -> str:
    """The Fytoken: exchange and segment (``1011`` NSE F&O), expiry YYMMDD, exchange token."""
    return f"{FYERS_EXCHANGE_SEGMENT[exchange]}{_yy(expiry)}{expiry.month:02d}{expiry.day:02d}{exchange_token}"


# ----- what is listed -----
@dataclass(frozen=True)
class UnderlyingSpec:
    """One underlying's contract specification. ``spot`` is the underlying's Kite symbol in the
    paper universe; strike step in paise; the exchange's freeze quantity in units (0: not modelled)."""

    name: str
    exchange: str  # NFO or BFO
    spot: str
    step_paise: int
    lot_size: int
    freeze_quantity: int
    weekday: int
    weekly: bool
    volatility: float  # the option model's annual volatility (paper/prices.py)


UNDERLYINGS: tuple[UnderlyingSpec, ...] = (
    UnderlyingSpec("NIFTY", "NFO", "NIFTY 50", 5_000, 65, 1800, TUESDAY, True, 0.13),
    UnderlyingSpec("BANKNIFTY", "NFO", "NIFTY BANK", 10_000, 30, 600, TUESDAY, False, 0.15),
    UnderlyingSpec("FINNIFTY", "NFO", "NIFTY FIN SERVICE", 5_000, 60, 1800, TUESDAY, False, 0.14),
    UnderlyingSpec("MIDCPNIFTY", "NFO", "NIFTY MID SELECT", 2_500, 120, 2800, TUESDAY, False, 0.17),
    UnderlyingSpec("SENSEX", "BFO", "SENSEX", 10_000, 20, 1000, THURSDAY, True, 0.13),
    UnderlyingSpec("BANKEX", "BFO", "BANKEX", 10_000, 30, 900, THURSDAY, False, 0.15),
    # Stock F&O: monthly only; NSE publishes per-stock freeze quantities, not modelled here (0).
    UnderlyingSpec("INFY", "NFO", "INFY", 2_000, 400, 0, TUESDAY, False, 0.25),
    UnderlyingSpec("SBIN", "NFO", "SBIN", 1_000, 750, 0, TUESDAY, False, 0.25),
    UnderlyingSpec("RELIANCE", "NFO", "RELIANCE", 2_000, 500, 0, TUESDAY, False, 0.24),
    UnderlyingSpec("TCS", "NFO", "TCS", 5_000, 175, 0, TUESDAY, False, 0.22),
    UnderlyingSpec("HDFCBANK", "NFO", "HDFCBANK", 2_000, 550, 0, TUESDAY, False, 0.22),
)


@dataclass(frozen=True)
class IndexSpec:
    """An index: Nifty 50 (:data:`NIFTY_50`, in every universe) or one the derivatives need that the
    equity universe lacks (:data:`INDICES`). Kite's token is the index's
    exchange token << 8 | 9; Shoonya's NSE index tokens are Angel's less 99,900,000, BSE's the
    exchange's index code."""

    exchange: str  # NSE or BSE
    kite_symbol: str
    angel_symbol: str  # also Shoonya's trading symbol and the Fyers HSM index name
    kite_token: int
    angel_token: str
    shoonya_token: str
    fyers_ticker: str
    underlying: str
    base_rupees: int


NIFTY_50 = IndexSpec("NSE", "NIFTY 50", "Nifty 50", 256265, "99926000", "26000", "NSE:NIFTY50-INDEX", "NIFTY", 24_000)
INDICES: tuple[IndexSpec, ...] = (
    IndexSpec("NSE", "NIFTY BANK", "Nifty Bank", 260105, "99926009", "26009", "NSE:NIFTYBANK-INDEX", "BANKNIFTY", 58_000),
    IndexSpec("NSE", "NIFTY FIN SERVICE", "Nifty Fin Service", 257801, "99926037", "26037", "NSE:FINNIFTY-INDEX",
              "FINNIFTY", 26_000),
    IndexSpec("NSE", "NIFTY MID SELECT", "NIFTY MID SELECT", 288009, "99926074", "26074", "NSE:MIDCPNIFTY-INDEX",
              "MIDCPNIFTY", 13_000),
    IndexSpec("BSE", "SENSEX", "SENSEX", 265, "99919000", "1", "BSE:SENSEX-INDEX", "SENSEX", 80_000),
    # Kite's BANKEX token derived from BSE's index code 12 (12 << 8 | 9): not seen in a public master.
    IndexSpec("BSE", "BANKEX", "BANKEX", 3081, "99919012", "12", "BSE:BANKEX-INDEX", "BANKEX", 62_000),
)  # fmt: skip


def index_instrument(spec: IndexSpec) -> PaperInstrument:
    """One index as a paper instrument."""
    fytoken = f"{'1210' if spec.exchange == 'BSE' else '1010'}000000{spec.shoonya_token}"
    return PaperInstrument(
        exchange=spec.exchange, symbol=spec.kite_symbol, angel_symbol=spec.angel_symbol,
        kite_token=spec.kite_token, angel_token=spec.angel_token,
        angel_exchange_type=ANGEL_EXCHANGE_TYPE.get(spec.exchange, 1), tick_size_paise=TICK_PAISE, lot_size=1,
        name=spec.kite_symbol, instrument_type="EQ", segment="INDICES", is_index=True,
        base_price_paise=spec.base_rupees * 100, kind="index", underlying=spec.underlying,
        fyers_ticker=spec.fyers_ticker, fyers_fytoken=fytoken, shoonya_tok=spec.shoonya_token,
    )  # fmt: skip


def index_instruments() -> list[PaperInstrument]:
    """The indices of :data:`INDICES` as paper instruments."""
    return [index_instrument(spec) for spec in INDICES]


def _exchange_token(row: int, expiry: dt.date, slot: int) -> int:
    return TOKEN_BASE + (row * 512 + expiry.toordinal() % 512) * 64 + slot


def _contract(
    spec: UnderlyingSpec, spot: PaperInstrument, token: int, expiry: dt.date, strike_paise: int, right: str,
    monthly: bool,
) -> PaperInstrument:
    """One future (``right`` "") or option of ``spec``, named as every broker names it."""
    name, exchange = spec.name, spec.exchange
    if right:
        kite = kite_option_symbol(name, expiry, strike_paise, right, monthly)
        angel = angel_option_symbol(name, expiry, strike_paise, right)
        shoonya = shoonya_option_symbol(name, expiry, strike_paise, right)
        kind, instrument_type, segment = "option", right, f"{exchange}-OPT"
    else:
        kite, angel = kite_future_symbol(name, expiry), angel_future_symbol(name, expiry)
        shoonya = shoonya_future_symbol(name, expiry)
        kind, instrument_type, segment = "future", "FUT", f"{exchange}-FUT"
    return PaperInstrument(
        exchange=exchange, symbol=kite, angel_symbol=angel, kite_token=token << 8 | KITE_SEGMENT[exchange],
        angel_token=str(token), angel_exchange_type=ANGEL_EXCHANGE_TYPE[exchange], tick_size_paise=TICK_PAISE,
        lot_size=spec.lot_size, name=name, instrument_type=instrument_type, segment=segment,
        base_price_paise=spot.base_price_paise, kind=kind, underlying=name, expiry=expiry,
        strike_paise=strike_paise, right=right, freeze_quantity=spec.freeze_quantity, monthly=monthly,
        fyers_ticker=fyers_ticker(exchange, kite), fyers_fytoken=fyers_token(exchange, expiry, token),
        shoonya_tsym=shoonya, spot=spot, volatility=spec.volatility,
    )  # fmt: skip


def _contracts_of(row: int, spec: UnderlyingSpec, spot: PaperInstrument, today: dt.date) -> list[PaperInstrument]:
    step = spec.step_paise
    atm = round(spot.base_price_paise / step) * step
    strikes = [atm + (i - STRIKES_EACH_SIDE) * step for i in range(2 * STRIKES_EACH_SIDE + 1)]
    out: list[PaperInstrument] = []
    for expiry, monthly in expiries(today, spec.weekday, spec.weekly):
        if monthly:
            out.append(_contract(spec, spot, _exchange_token(row, expiry, 0), expiry, 0, "", True))
        for i, strike in enumerate(strikes):
            for right, slot in (("CE", 1 + i), ("PE", 32 + i)):
                out.append(_contract(spec, spot, _exchange_token(row, expiry, slot), expiry, strike, right, monthly))
    return out


def derivative_universe(today: dt.date, spots: Mapping[str, PaperInstrument]) -> list[PaperInstrument]:
    """Every contract listed on ``today``, in a stable order. ``spots`` maps each underlying's spot
    symbol (``NIFTY 50``, ``INFY``, ...) to its paper instrument; an underlying without one is skipped."""
    out: list[PaperInstrument] = []
    for row, spec in enumerate(UNDERLYINGS):
        spot = spots.get(spec.spot)
        if spot is not None:
            out.extend(_contracts_of(row, spec, spot, today))
    return out
