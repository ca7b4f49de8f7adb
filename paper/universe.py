"""The paper broker's instrument universe: real tokens for the well-known names, the Kite
mock repository's NSE rows, and generated NSE equities up to a realistic size.

Kite instrument tokens are `exchange_token << 8 | segment` (NSE = 1, indices = 9); for NSE
cash the exchange token is also Angel's symbol token (INFY: 408065 = 1594 << 8 | 1), and Fyers'
and Shoonya's tokens derive from it too, so every broker's names for one instrument are derived
from each other, as at the real brokers.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

# Kite segment ids (low byte of instrument_token) and Angel exchange types, per docs/brokers.md.
KITE_SEGMENT_NSE = 1
ANGEL_NSE_CM = 1

# Generated names start far above real NSE exchange tokens (< 100,000) so they never collide.
GENERATED_TOKEN_BASE = 200_000
GENERATED_COUNT = 9_000

_FIXTURE_CSV = Path(__file__).resolve().parent / "data" / "instruments_nse.csv"


@dataclass
class PaperInstrument:
    """One instrument as every broker names it. Prices are integers in 1/price_divisor rupees."""

    exchange: str
    symbol: str
    angel_symbol: str
    kite_token: int
    angel_token: str
    angel_exchange_type: int
    tick_size_paise: int
    lot_size: int
    name: str
    instrument_type: str
    segment: str
    is_index: bool = False
    price_divisor: int = 100
    base_price_paise: int = 0
    # Derivatives (paper/derivatives.py; issue #16). kind: equity, index, future, option;
    # underlying: the derivatives' name ("NIFTY", also set on the index itself); strike in paise.
    kind: str = "equity"
    underlying: str = ""
    expiry: dt.date | None = None
    strike_paise: int = 0
    right: str = ""  # CE or PE
    freeze_quantity: int = 0  # the exchange's most per order, in units (0: none modelled)
    monthly: bool = False  # the expiry is the month's last (Kite's monthly symbol form)
    volatility: float = 0.0  # the option price model's annual volatility (paper/prices.py)
    # Identities that do not derive from the fields above (derivatives, indices beyond Nifty 50);
    # empty means "derived", as for the equities: read them through the properties below.
    fyers_ticker: str = ""
    fyers_fytoken: str = ""
    shoonya_tsym: str = ""
    shoonya_tok: str = ""
    # The underlying's paper instrument, whose price a derivative's follows.
    spot: PaperInstrument | None = field(default=None, repr=False, compare=False)

    @property
    def exchange_token(self) -> int:
        return self.kite_token >> 8

    @property
    def tradable(self) -> bool:
        return not self.is_index

    @property
    def is_derivative(self) -> bool:
        return self.kind in ("future", "option")

    @property
    def shoonya_token(self) -> str:
        """Shoonya's token: the exchange token, as Angel's; NSE indices are 26000 + n where Angel
        has 99926000 + n (Nifty 50: 26000, Nifty Bank: 26009); BSE indices the index code."""
        if self.shoonya_tok:
            return self.shoonya_tok
        if self.is_index and self.angel_token.startswith("999"):
            return str(int(self.angel_token) - 99_900_000)
        return self.angel_token

    @property
    def shoonya_symbol(self) -> str:
        """Shoonya's trading symbol: Angel's ("SBIN-EQ", "Nifty 50") but for derivatives
        ("NIFTY16DEC25C24000")."""
        return self.shoonya_tsym or self.angel_symbol

    @property
    def fyers_exchange_token(self) -> str:
        """The exchange token Fyers uses: Angel's, and for indices Shoonya's (Nifty 50: 26000)."""
        if self.is_index:
            return self.shoonya_token
        return self.angel_token

    @property
    def fyers_token(self) -> str:
        """The Fytoken: exchange 10 (NSE), segment 10 (cash), six zeros, the exchange token
        ("10100000003045" is SBIN, "101000000026000" Nifty 50); derivatives carry their own."""
        return self.fyers_fytoken or f"1010000000{self.fyers_exchange_token}"

    @property
    def fyers_symbol(self) -> str:
        """Fyers' symbol ticker: "NSE:SBIN-EQ", "NSE:NIFTY50-INDEX", "NSE:NIFTY25D1624000CE"."""
        if self.fyers_ticker:
            return self.fyers_ticker
        if self.is_index:
            return f"{self.exchange}:{self.symbol.replace(' ', '')}-INDEX"
        return f"{self.exchange}:{self.symbol}-EQ"


# (symbol, kite token, angel token, name, base price in rupees) from docs/brokers.md § Instruments.
_KNOWN: list[tuple[str, int, str, str, int]] = [
    ("INFY", 408065, "1594", "INFOSYS", 1570),
    ("SBIN", 779521, "3045", "STATE BANK OF INDIA", 800),
    ("RELIANCE", 738561, "2885", "RELIANCE INDUSTRIES", 1300),
    ("TCS", 2953217, "11536", "TATA CONSULTANCY SERV LT", 3500),
    ("HDFCBANK", 341249, "1333", "HDFC BANK", 1700),
]


def _base_price_paise(symbol: str, tick_paise: int) -> int:
    """A stable, seed-independent reference price between ₹50 and ₹5,000, on the tick grid."""
    digest = int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:4], "big")
    paise = 5_000 + digest % 495_000
    return max(tick_paise, paise - paise % tick_paise)


def _equity(symbol: str, kite_token: int, name: str, tick_paise: int, base_paise: int) -> PaperInstrument:
    angel_symbol = symbol if "-" in symbol else f"{symbol}-EQ"
    return PaperInstrument(
        exchange="NSE",
        symbol=symbol,
        angel_symbol=angel_symbol,
        kite_token=kite_token,
        angel_token=str(kite_token >> 8),
        angel_exchange_type=ANGEL_NSE_CM,
        tick_size_paise=tick_paise,
        lot_size=1,
        name=name,
        instrument_type="EQ",
        segment="NSE",
        base_price_paise=base_paise,
    )


def _fixture_rows() -> list[dict[str, str]]:
    with _FIXTURE_CSV.open() as fh:
        return list(csv.DictReader(fh))


def build_universe(derivatives_on: dt.date | None = None) -> list[PaperInstrument]:
    """Every instrument, in a stable order: the index, the known names, fixtures, generated; with
    ``derivatives_on`` a trading date, then the indices the derivatives need and the contracts
    listed on that date (paper/derivatives.py). Without it, the equities and Nifty 50 only."""
    from paper import derivatives  # it builds on PaperInstrument, defined here

    out: list[PaperInstrument] = [derivatives.index_instrument(derivatives.NIFTY_50)]
    out.extend(_equity(symbol, token, name, 5, rupees * 100) for symbol, token, _, name, rupees in _KNOWN)
    seen_tokens = {inst.kite_token for inst in out}
    seen_symbols = {inst.symbol for inst in out}
    for row in _fixture_rows():
        token = int(row["instrument_token"])
        symbol = row["tradingsymbol"]
        if row["exchange"] != "NSE" or token in seen_tokens or symbol in seen_symbols:
            continue
        tick_paise = round(float(row["tick_size"]) * 100)
        out.append(_equity(symbol, token, row["name"], tick_paise, _base_price_paise(symbol, tick_paise)))
        seen_tokens.add(token)
        seen_symbols.add(symbol)
    for i in range(1, GENERATED_COUNT + 1):
        symbol = f"PAPER{i:04d}"
        token = (GENERATED_TOKEN_BASE + i) << 8 | KITE_SEGMENT_NSE
        out.append(_equity(symbol, token, f"PAPER EQUITY {i:04d}", 5, _base_price_paise(symbol, 5)))
    if derivatives_on is not None:
        out.extend(derivatives.index_instruments())
        spots = {inst.symbol: inst for inst in out if inst.exchange in ("NSE", "BSE")}
        out.extend(derivatives.derivative_universe(derivatives_on, spots))
    return out


def _listed(inst: PaperInstrument) -> bool:
    """In the equity-format masters below: equities and indices. Each dialect exports the
    derivatives in its own master format (paper/<broker>/)."""
    return not inst.is_derivative


KITE_CSV_COLUMNS = [
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "last_price",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
]


def _rupees(paise: int, divisor: int) -> str:
    return repr(paise / divisor)


def kite_instruments_csv(instruments: list[PaperInstrument], exchange: str | None = None) -> str:
    """The Kite `/instruments` CSV, with the exact columns of the real dump."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(KITE_CSV_COLUMNS)
    for inst in instruments:
        if (exchange is not None and inst.exchange != exchange) or not _listed(inst):
            continue
        writer.writerow(
            [
                inst.kite_token,
                inst.exchange_token,
                inst.symbol,
                inst.name,
                "0.0",
                "",
                "0.0",
                _rupees(inst.tick_size_paise, inst.price_divisor) if not inst.is_index else "0.0",
                inst.lot_size,
                inst.instrument_type,
                inst.segment,
                inst.exchange,
            ]
        )
    return buf.getvalue()


def angel_scrip_master(instruments: list[PaperInstrument]) -> list[dict[str, str]]:
    """Angel's OpenAPIScripMaster.json rows; tick_size is in paise, as a string ("5.000000")."""
    return [
        {
            "token": inst.angel_token,
            "symbol": inst.angel_symbol,
            "name": (inst.underlying or "NIFTY") if inst.is_index else inst.symbol,
            "expiry": "",
            "strike": "-1.000000" if not inst.is_index else "0.000000",
            "lotsize": str(inst.lot_size),
            "instrumenttype": "AMXIDX" if inst.is_index else "",
            "exch_seg": inst.exchange,
            "tick_size": f"{inst.tick_size_paise:.6f}" if not inst.is_index else "0.000000",
        }
        for inst in filter(_listed, instruments)
    ]


SHOONYA_SYMBOLS_COLUMNS = ["Exchange", "Token", "LotSize", "Symbol", "TradingSymbol", "Instrument", "TickSize"]


def shoonya_symbols_txt(instruments: list[PaperInstrument], exchange: str = "NSE") -> str:
    """Shoonya's ``NSE_symbols.txt`` (the text inside NSE_symbols.txt.zip): CSV with the columns
    above and, as in Finvasia's files, a trailing comma on every line; tick size in rupees."""
    lines = [",".join(SHOONYA_SYMBOLS_COLUMNS) + ","]
    for inst in instruments:
        if inst.exchange != exchange or not _listed(inst):
            continue
        tick = f"{inst.tick_size_paise / inst.price_divisor:.2f}"
        symbol = (inst.underlying or "NIFTY") if inst.is_index else inst.symbol
        kind = "INDEX" if inst.is_index else "EQ"
        lines.append(f"{inst.exchange},{inst.shoonya_token},{inst.lot_size},{symbol},{inst.shoonya_symbol},{kind},{tick},")
    return "\n".join(lines) + "\n"


def fyers_symbol_master_csv(instruments: list[PaperInstrument], exchange: str = "NSE") -> str:
    """Fyers' ``NSE_CM.csv`` symbol master: no header; Fytoken, name, instrument type (0 equity,
    10 index), lot, tick (rupees), ISIN, session, last update, expiry, ticker, exchange (10),
    segment (10), scrip code, underlying, underlying scrip code, strike, option type,
    underlying Fytoken and three reserved columns."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    code = 12 if exchange == "BSE" else 10  # Fyers' exchange codes: NSE 10, BSE 12
    for inst in instruments:
        if inst.exchange != exchange or not _listed(inst):
            continue
        tick = f"{inst.tick_size_paise / inst.price_divisor:.2f}" if not inst.is_index else "0.05"
        name = inst.angel_symbol if inst.is_index else inst.name
        ticker = inst.fyers_symbol
        underlying = ticker.split(":", 1)[1].rsplit("-", 1)[0]
        writer.writerow([
            inst.fyers_token, name, 10 if inst.is_index else 0, inst.lot_size, tick, "",
            "0915-1530|1815-1915:", "1764547200", "", ticker, code, 10, inst.fyers_exchange_token,
            underlying, inst.fyers_exchange_token, "-1.0", "XX", inst.fyers_token, "None", "0", "0.0",
        ])  # fmt: skip
    return buf.getvalue()
