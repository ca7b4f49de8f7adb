"""Fyers' derivative symbol masters, built from the paper universe: ``/sym_details/NSE_FO.csv``
(the NFO contracts) and ``/sym_details/BSE_FO.csv`` (BFO), in the live files' format
(docs/brokers.md § Derivative instrument masters; tests/data/fyers/NSE_FO_rows.csv holds real rows):
no header row, 21 columns: Fytoken, symbol details (``NIFTY 01 Sep 26 23000 CE``), exchange
instrument type (11 index future, 13 stock future, 14 index option, 15 stock option), lot size,
tick size (rupees), ISIN (blank), trading session, last update (the trading date), expiry (epoch
seconds of the contract's last trading moment, 15:30 IST), ticker (``NSE:NIFTY2690123000CE``),
exchange (10 NSE, 12 BSE), segment (11 F&O), scrip code, underlying symbol, underlying scrip code,
strike (``23000.0``; ``-1.0`` for a future), option type (CE, PE, XX for a future), underlying
Fytoken, then ``None,0,0.0``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable

from paper.derivatives import MONTHS, contract_type, paise_text
from paper.orders import IST
from paper.universe import PaperInstrument

__all__ = ["FILES", "expiry_epoch", "fo_csv", "fo_row", "symbol_details"]

FILES = {"NSE_FO": "NFO", "BSE_FO": "BFO"}  # file name -> the generic exchange of its contracts
EXCHANGE_CODES = {"NFO": "10", "BFO": "12"}
FO_SEGMENT = "11"
SESSION = "0915-1530|1815-1915:"
CLOSE = dt.time(15, 30)


def _strike(paise: int) -> str:
    """``23000.0``: the strike column always has a decimal point."""
    text = paise_text(paise)
    return text if "." in text else f"{text}.0"


def expiry_epoch(expiry: dt.date) -> int:
    """The contract's last trading moment, as the file gives it: the expiry day's close in IST."""
    return int(dt.datetime.combine(expiry, CLOSE, IST).timestamp())


def symbol_details(inst: PaperInstrument) -> str:
    """Fyers' description: ``NIFTY 01 Sep 26 23000 CE``, ``NIFTY 25 Aug 26 FUT``."""
    assert inst.expiry is not None
    when = f"{inst.expiry.day:02d} {MONTHS[inst.expiry.month - 1].title()} {inst.expiry.year % 100:02d}"
    tail = f"{paise_text(inst.strike_paise)} {inst.right}" if inst.kind == "option" else "FUT"
    return f"{inst.underlying} {when} {tail}"


# Fyers' exchange instrument type of each kind of contract.
_INSTRUMENT_TYPES = {"FUTIDX": 11, "FUTSTK": 13, "OPTIDX": 14, "OPTSTK": 15}


def fo_row(inst: PaperInstrument, trading_date: dt.date) -> list[str | int]:
    """One contract's row."""
    assert inst.expiry is not None
    spot = inst.spot
    option = inst.kind == "option"
    return [
        inst.fyers_token, symbol_details(inst), _INSTRUMENT_TYPES[contract_type(inst)], inst.lot_size,
        paise_text(inst.tick_size_paise), "", SESSION, trading_date.isoformat(), expiry_epoch(inst.expiry),
        inst.fyers_symbol, EXCHANGE_CODES[inst.exchange], FO_SEGMENT, inst.fyers_exchange_token, inst.underlying,
        spot.fyers_exchange_token if spot is not None else "-1", _strike(inst.strike_paise) if option else "-1.0",
        inst.right if option else "XX", spot.fyers_token if spot is not None else "-1", "None", 0, "0.0",
    ]  # fmt: skip


def fo_csv(instruments: Iterable[PaperInstrument], name: str, trading_date: dt.date) -> str:
    """The file ``name`` (``NSE_FO`` or ``BSE_FO``): every listed contract of its exchange."""
    exchange = FILES[name]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for inst in instruments:
        if inst.exchange == exchange and inst.kind in ("future", "option"):
            writer.writerow(fo_row(inst, trading_date))
    return buf.getvalue()
