"""The paper Angel's ``OpenAPIScripMaster.json``: the equity and index rows of
:func:`paper.universe.angel_scrip_master` and the derivative universe's futures and options in the
real file's row shape (issue #16; docs/brokers.md § Derivative instrument masters).

A contract's row: ``token`` (the exchange token), ``symbol`` (NFO ``NIFTY16DEC2524000CE`` /
``NIFTY30DEC25FUT``; BFO in the exchange's own pattern, as Angel lists it: ``SENSEX25D1880000CE``
weekly, ``SENSEX25DEC80000CE`` monthly, ``SENSEX25DECFUT``, which is the Kite-style symbol),
``name`` (the underlying), ``expiry`` ``16DEC2025``, ``strike`` in paise with six decimals
(``-1.000000`` on futures), ``lotsize``, ``instrumenttype`` OPTIDX / OPTSTK / FUTIDX / FUTSTK,
``exch_seg`` NFO / BFO, ``tick_size`` in paise, ``freeze_qty`` (the first quantity the exchange
freezes: the most an order may carry plus one, NIFTY ``1801``; ``0`` where none is modelled) and
``is_cas_enabled``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from paper.derivatives import MONTHS, contract_type
from paper.universe import PaperInstrument, angel_scrip_master

__all__ = ["contract_fields", "contract_row", "scrip_master", "trading_symbol"]

def _expiry(inst: PaperInstrument) -> str:
    assert inst.expiry is not None, inst
    return f"{inst.expiry.day:02d}{MONTHS[inst.expiry.month - 1]}{inst.expiry.year}"


def trading_symbol(inst: PaperInstrument) -> str:
    """Angel's trading symbol, in the master and in every book alike."""
    return inst.symbol if inst.is_derivative and inst.exchange == "BFO" else inst.angel_symbol


def contract_fields(inst: PaperInstrument) -> dict[str, str] | None:
    """The contract columns of a future's or option's getPosition and getTradeBook rows, as users'
    captured rows show them (``"instrumenttype": "OPTIDX", "symbolgroup": "XX", "strikeprice":
    "40200.0", "optiontype": "CE", "expirydate": "29MAR2023"``); None for anything else."""
    if not inst.is_derivative:
        return None
    strike = f"{inst.strike_paise / 100:.1f}" if inst.kind == "option" else "-1"
    return {"instrumenttype": contract_type(inst), "symbolgroup": "XX", "strikeprice": strike,
            "optiontype": inst.right, "expirydate": _expiry(inst), "precision": "2", "multiplier": "-1"}


def contract_row(inst: PaperInstrument) -> dict[str, Any]:
    """One future or option as a scrip-master row."""
    return {
        "token": inst.angel_token,
        "symbol": trading_symbol(inst),
        "name": inst.underlying,
        "expiry": _expiry(inst),
        "strike": f"{inst.strike_paise}.000000" if inst.kind == "option" else "-1.000000",
        "lotsize": str(inst.lot_size),
        "instrumenttype": contract_type(inst),
        "exch_seg": inst.exchange,
        "tick_size": f"{inst.tick_size_paise}.000000",
        "freeze_qty": str(inst.freeze_quantity + 1 if inst.freeze_quantity else 0),
        "is_cas_enabled": False,
    }


def scrip_master(instruments: Iterable[PaperInstrument]) -> list[dict[str, Any]]:
    """Every row: equities and indices first, then the contracts."""
    listed = list(instruments)
    return [*angel_scrip_master(listed), *(contract_row(i) for i in listed if i.is_derivative)]
