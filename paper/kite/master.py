"""The paper Kite dump's futures and options: rows of ``GET /instruments`` (and ``/instruments/NFO``,
``/instruments/BFO``) as Kite writes them for NFO/BFO, after the equity rows of
:func:`paper.universe.kite_instruments_csv`.

A derivative row (Kite's current dump): ``instrument_token`` (exchange token << 8 | segment, NFO 2,
BFO 5), ``exchange_token``, ``tradingsymbol`` (``NIFTY25D1624000CE`` weekly, ``NIFTY25DEC24000CE``
monthly, ``NIFTY25DECFUT``), ``name`` the underlying, ``last_price`` 0, ``expiry`` YYYY-MM-DD,
``strike`` rupees (0 for a future), ``tick_size`` rupees, ``lot_size`` units, ``instrument_type``
CE/PE/FUT, ``segment`` NFO-OPT/NFO-FUT/BFO-OPT/BFO-FUT, ``exchange`` NFO/BFO (tests/data/kite/
instruments_fo.csv holds real rows of that shape).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from paper.derivatives import paise_text
from paper.universe import PaperInstrument, kite_instruments_csv

__all__ = ["derivative_rows", "instruments_csv"]


def derivative_rows(instruments: Iterable[PaperInstrument], exchange: str | None = None) -> list[list[object]]:
    """The CSV rows (columns of :data:`paper.universe.KITE_CSV_COLUMNS`) of every future and option,
    or of one exchange's."""
    rows: list[list[object]] = []
    for inst in instruments:
        if not inst.is_derivative or inst.expiry is None or (exchange is not None and inst.exchange != exchange):
            continue
        rows.append([
            inst.kite_token, inst.exchange_token, inst.symbol, inst.underlying, "0", inst.expiry.isoformat(),
            paise_text(inst.strike_paise), paise_text(inst.tick_size_paise), inst.lot_size, inst.instrument_type,
            inst.segment, inst.exchange,
        ])  # fmt: skip
    return rows


def instruments_csv(instruments: list[PaperInstrument], exchange: str | None = None) -> str:
    """The whole dump (or one exchange's): the equity and index rows, then the futures and options."""
    buf = io.StringIO()
    buf.write(kite_instruments_csv(instruments, exchange))
    csv.writer(buf, lineterminator="\n").writerows(derivative_rows(instruments, exchange))
    return buf.getvalue()
