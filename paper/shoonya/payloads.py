"""Shoonya's (Noren's) order-book row, also the body of an ``om`` socket message, with the code
tables it is written in; prices are rupee strings with two decimals."""

from __future__ import annotations

import datetime as dt
from typing import Any

from paper.orders import PaperOrder

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
        "tsym": inst.shoonya_symbol,
        "token": inst.shoonya_token,
        "qty": str(order.quantity),
        "dscqty": str(order.disclosed_quantity),
        "prc": rupees_text(order.price, div),
        "prd": next((c for c, n in PRODUCTS.items() if n == order.product), order.product),
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


def report_type(order: PaperOrder, was_modified: bool) -> str:
    """The ``reporttype`` of an order event (the om message's event name)."""
    if order.status == "COMPLETE":
        return "Fill"
    if order.status == "CANCELLED":
        return "Canceled"
    if order.status == "REJECTED":
        return "Rejected"
    return "Replaced" if was_modified else "New"
