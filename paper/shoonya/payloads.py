"""Shoonya's (Noren's) order-book row, also the body of an ``om`` socket message, with the code
tables it is written in, and the account-state answers (PositionBook rows, Holdings rows, Limits,
and the margin calculators GetOrderMargin and GetBasketMargin) from the books of
``paper/portfolio.py``; prices are rupee strings with two decimals."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from paper.orders import PaperOrder
from paper.portfolio import PaperFunds, PaperHolding, PaperPosition
from paper.shoonya.master import trading_symbol
from paper.universe import PaperInstrument

PRODUCTS = {"C": "CNC", "M": "NRML", "I": "MIS"}
SIDES = {"B": "BUY", "S": "SELL"}
PRICE_TYPES = {"MKT": "MARKET", "LMT": "LIMIT", "SL-LMT": "SL", "SL-MKT": "SL-M"}
PRICE_TYPE_OF = {v: k for k, v in PRICE_TYPES.items()}
STATUSES = {"OPEN": "OPEN", "TRIGGER PENDING": "TRIGGER_PENDING", "COMPLETE": "COMPLETE",
            "CANCELLED": "CANCELED", "REJECTED": "REJECTED"}  # fmt: skip


def rupees_text(units: int, divisor: int) -> str:
    """Exact rupees with two decimals, as Noren prints prices ("1570.05")."""
    whole, frac = divmod(abs(units) * 100 // divisor, 100)
    return f"{'-' if units < 0 else ''}{whole}.{frac:02d}"


def _time(moment: dt.datetime | None) -> str:
    return moment.strftime("%H:%M:%S %d-%m-%Y") if moment else ""


def shoonya_order_payload(order: PaperOrder) -> dict[str, Any]:
    """One ``OrderBook`` row (also the body of an ``om`` socket message), every value a string."""
    inst = order.instrument
    div = inst.price_divisor
    row: dict[str, Any] = {
        "stat": "Ok",
        "norenordno": order.order_id,
        "uid": order.user_id,
        "actid": order.user_id,
        "exch": inst.exchange,
        "tsym": trading_symbol(inst),
        "token": inst.shoonya_token,
        "qty": str(order.quantity),
        "dscqty": str(order.disclosed_quantity),
        "prc": rupees_text(order.price, div),
        "prd": product_code(order.product),
        "trantype": order.transaction_type[0],
        "prctyp": PRICE_TYPE_OF.get(order.order_type, order.order_type),
        "ret": order.validity,
        "status": STATUSES.get(order.status, order.status),
        "fillshares": str(order.filled_quantity),
        "pp": "2",
        "ls": str(inst.lot_size),
        "ti": rupees_text(inst.tick_size_paise, div),
        "amo": "No",
        "norentm": _time(order.order_timestamp),
        "ordenttm": str(int(order.order_timestamp.timestamp())),
    }
    if order.trigger_price:
        row["trgprc"] = rupees_text(order.trigger_price, div)
    if order.filled_quantity:
        row["avgprc"] = rupees_text(order.filled_value // order.filled_quantity, div)
    if order.tag:
        row["remarks"] = order.tag
    if order.exchange_order_id:
        row["exchordid"] = order.exchange_order_id
    if order.exchange_update_timestamp:
        row["exch_tm"] = order.exchange_update_timestamp.strftime("%d-%m-%Y %H:%M:%S")
    if order.status == "CANCELLED":
        row["cancelqty"] = str(order.cancelled_quantity)
    if order.status == "REJECTED":
        row["rejreason"] = order.status_message or ""
    return row


_REPORT_TYPES = {"COMPLETE": "Fill", "CANCELLED": "Canceled", "REJECTED": "Rejected"}


def report_type(order: PaperOrder, was_modified: bool) -> str:
    """The ``reporttype`` of an order event (the om message's event name)."""
    return _REPORT_TYPES.get(order.status) or ("Replaced" if was_modified else "New")


def amount_text(units: float, divisor: int) -> str:
    """Rupees with two decimals (half up) of a figure in 1/divisor rupees that may be fractional
    (an average, a P&L); never "-0.00"."""
    rupees = (Decimal(repr(float(units))) / divisor).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return f"{rupees:.2f}" if rupees else "0.00"


def product_code(product: str) -> str:
    return next((c for c, n in PRODUCTS.items() if n == product), product)


def _scrip_fields(inst: PaperInstrument) -> dict[str, str]:
    div = inst.price_divisor
    return {"exch": inst.exchange, "token": inst.shoonya_token, "tsym": trading_symbol(inst), "pp": "2",
            "ti": rupees_text(inst.tick_size_paise, div), "ls": str(inst.lot_size)}  # fmt: skip


def shoonya_position_row(pos: PaperPosition, user_id: str) -> dict[str, Any]:
    """One ``PositionBook`` row. Nothing is carried in at the paper broker, so every ``cf*``
    figure is zero and net = day; ``rpnl`` / ``urmtom`` are P&L (profit positive)."""
    div = pos.instrument.price_divisor
    return {
        "stat": "Ok", "uid": user_id, "actid": user_id, **_scrip_fields(pos.instrument),
        "prd": product_code(pos.product), "mult": "1", "prcftr": "1.000000",
        "daybuyqty": str(pos.buy_quantity), "daysellqty": str(pos.sell_quantity),
        "daybuyamt": amount_text(pos.buy_value, div), "daybuyavgprc": amount_text(pos.buy_price, div),
        "daysellamt": amount_text(pos.sell_value, div), "daysellavgprc": amount_text(pos.sell_price, div),
        "cfbuyqty": "0", "cfsellqty": "0", "cfbuyamt": "0.00", "cfbuyavgprc": "0.00", "cfsellamt": "0.00",
        "cfsellavgprc": "0.00", "cforgavgprc": "0.00",
        "netqty": str(pos.quantity), "netavgprc": amount_text(pos.average_price, div),
        "lp": rupees_text(pos.last_price, div), "urmtom": amount_text(pos.unrealised, div),
        "rpnl": amount_text(pos.realised, div),
    }  # fmt: skip


def shoonya_holding_row(held: PaperHolding) -> dict[str, Any]:
    """One ``Holdings`` row: the settled quantity as ``holdqty``, today's delivery buys as
    ``btstqty`` (T1), and delivery sells beyond them as ``usedqty`` (holdings used today)."""
    div = held.instrument.price_divisor
    return {
        "stat": "Ok", "exch_tsym": [_scrip_fields(held.instrument)],
        "holdqty": str(held.quantity), "dpqty": "0", "npoadqty": "0", "colqty": "0", "benqty": "0",
        "unplgdqty": "0", "brkcolqty": "0", "btstqty": str(max(held.t1_quantity, 0)), "btstcolqty": "0",
        "usedqty": str(max(-held.t1_quantity, 0)), "upldprc": rupees_text(held.average_price, div),
    }  # fmt: skip


def shoonya_limits(funds: PaperFunds, user_id: str) -> dict[str, Any]:
    """The fields of the ``Limits`` answer (one segment: the whole account) beside ``stat`` and
    ``request_time``; money in paise in ``funds``.
    ``rpnl`` and ``urmtom`` are debits here, as Noren lists them among the margin-used components
    (a profit negative); ``marginused`` nets the realised P&L (the paper broker's available margin
    is opening balance + realised - used, so ``cash + payin - marginused`` is that figure)."""
    return {
        "actid": user_id, "cash": rupees_text(funds.opening_balance, 100), "payin": "0.00",
        "payout": "0.00", "brkcollamt": "0.00", "unclearedcash": "0.00", "daycash": "0.00",
        "marginused": rupees_text(funds.used_margin - funds.realised, 100), "mtomcurper": "0.00",
        "rpnl": rupees_text(-funds.realised, 100), "urmtom": rupees_text(-funds.unrealised, 100),
        "brokerage": "0.00",
    }  # fmt: skip


def _two(rupees: Decimal) -> str:
    return f"{rupees.quantize(Decimal('0.01'), ROUND_HALF_UP):.2f}"


def _used_before(funds: PaperFunds) -> Decimal:
    # Limits' marginused (shoonya_limits): the basket margin is documented as the difference.
    return Decimal(funds.used_margin - funds.realised) / 100


def shoonya_order_margin(funds: PaperFunds, need: Decimal) -> dict[str, Any]:
    """The fields of a ``GetOrderMargin`` answer for an order that needs ``need`` rupees: ``cash``
    as Limits says it, ``marginusedprev`` Limits' ``marginused``, ``ordermargin`` the need, and
    ``marginused`` the total after the order or, with "Insufficient Balance", the shortfall
    (what the docs' "meaning changes with remarks" says, read from published answers in which
    ``marginused = marginusedprev + ordermargin - cash`` when the balance is short)."""
    cash, before = Decimal(funds.opening_balance) / 100, _used_before(funds)
    short = before + need - cash
    return {
        "cash": _two(cash), "marginused": _two(short if short > 0 else before + need),
        "remarks": "Insufficient Balance" if short > 0 else "Order Success",
        "marginusedprev": _two(before), "ordermargin": _two(need),
    }  # fmt: skip


def shoonya_basket_margin(funds: PaperFunds, need: Decimal) -> dict[str, Any]:
    """The fields of a ``GetBasketMargin`` answer for orders that need ``need`` rupees together:
    ``marginused`` includes the account's margin used (Limits' ``marginused``); after the trades
    the same margin stays used (``marginusedtrade``: nothing at the paper broker nets or hedges).
    ``remarks`` carries a rejection reason; the published answers leave it empty otherwise."""
    total = _used_before(funds) + need
    return {"marginused": _two(total), "marginusedtrade": _two(total), "remarks": ""}
