"""The paper Shoonya's symbol masters: ``/<EXCHANGE>_symbols.txt.zip`` for NSE and BSE (the
equity format of :func:`paper.universe.shoonya_symbols_txt`) and for NFO and BFO, the derivative
universe's futures and options in Finvasia's derivative format (issue #16; docs/brokers.md
§ Derivative instrument masters; real rows in tests/data/shoonya/*_symbols_rows.txt).

A contract's line: ``Exchange,Token,LotSize,Symbol,TradingSymbol,Expiry,Instrument,OptionType,
StrikePrice,TickSize,`` with the trailing comma of Finvasia's files; ``Expiry`` ``16-DEC-2025``;
``Instrument`` OPTIDX / OPTSTK / FUTIDX / FUTSTK; ``OptionType`` CE / PE, ``XX`` on futures;
``StrikePrice`` rupees (NFO futures ``-0.01``, BFO futures ``0``, as the real files write them);
``TickSize`` rupees. NFO's ``Symbol`` is the underlying and its trading symbols put the right
before the strike (``NIFTY16DEC25C24000``, ``NIFTY30DEC25F``); BFO's ``Symbol`` is BSE's product
code (``BSXOPT``, ``BKXFUT``) and its trading symbols are the exchange's own (``SENSEX25D1880000CE``
weekly, ``SENSEX25DEC80000CE`` monthly, ``SENSEX25DECFUT``: Kite's spelling of the contract).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable

from paper.derivatives import MONTHS, contract_type, paise_text
from paper.universe import PaperInstrument, shoonya_symbols_txt

__all__ = ["DERIVATIVE_COLUMNS", "EXCHANGES", "contract_line", "symbols_txt", "symbols_zip", "trading_symbol"]

EXCHANGES = ("NSE", "BSE", "NFO", "BFO")
DERIVATIVE_COLUMNS = ["Exchange", "Token", "LotSize", "Symbol", "TradingSymbol", "Expiry", "Instrument", "OptionType",
                      "StrikePrice", "TickSize"]  # fmt: skip
# BSE's product codes, which Noren's BFO file carries as Symbol (BSXOPT and BKXFUT are in the
# public copies; the other two follow BSE's naming).
_BSE_PRODUCTS = {("SENSEX", "option"): "BSXOPT", ("SENSEX", "future"): "BSXFUT",
                 ("BANKEX", "option"): "BKXOPT", ("BANKEX", "future"): "BKXFUT"}  # fmt: skip


def trading_symbol(inst: PaperInstrument) -> str:
    """Shoonya's trading symbol of a paper instrument: a BFO contract's is the exchange's own
    (Kite writes the same), everything else :attr:`PaperInstrument.shoonya_symbol`."""
    return inst.symbol if inst.exchange == "BFO" and inst.is_derivative else inst.shoonya_symbol


def contract_line(inst: PaperInstrument) -> str:
    """One future or option as a line of ``NFO_symbols.txt`` / ``BFO_symbols.txt``."""
    assert inst.expiry is not None, inst
    bfo = inst.exchange == "BFO"
    symbol = _BSE_PRODUCTS.get((inst.underlying, inst.kind), inst.underlying) if bfo else inst.underlying
    expiry = f"{inst.expiry.day:02d}-{MONTHS[inst.expiry.month - 1]}-{inst.expiry.year}"
    if inst.kind == "option":
        right, strike = inst.right, paise_text(inst.strike_paise)
    else:
        right, strike = "XX", "0" if bfo else "-0.01"
    return (f"{inst.exchange},{inst.shoonya_token},{inst.lot_size},{symbol},{trading_symbol(inst)},{expiry},"
            f"{contract_type(inst)},{right},{strike},{paise_text(inst.tick_size_paise)},")


def symbols_txt(instruments: list[PaperInstrument], exchange: str) -> str:
    """The text inside ``<exchange>_symbols.txt.zip``."""
    if exchange not in ("NFO", "BFO"):
        return shoonya_symbols_txt(instruments, exchange)
    lines = [",".join(DERIVATIVE_COLUMNS) + ","]
    lines.extend(contract_line(i) for i in instruments if i.exchange == exchange and i.is_derivative)
    return "\n".join(lines) + "\n"


def symbols_zip(instruments: Iterable[PaperInstrument], exchange: str) -> bytes:
    """``<exchange>_symbols.txt.zip``: one ``<exchange>_symbols.txt`` inside."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{exchange}_symbols.txt", symbols_txt(list(instruments), exchange))
    return buf.getvalue()
