"""Kite's margin calculators at the paper broker, the request side: the JSON list of orders of
``POST /margins/orders`` and ``POST /margins/basket`` read as the order form would read it, and
each order priced by paper/portfolio.py's margin_for (payloads.py writes the answers)."""

from __future__ import annotations

import json
from typing import Any

from paper import portfolio
from paper.kite import payloads
from paper.matching import ORDER_TYPES, TRANSACTION_TYPES, OrderError, one_of, rupees_to_units, whole_number
from paper.state import PaperState

__all__ = ["PRODUCTS", "Priced", "priced"]

PRODUCTS = ("CNC", "NRML", "MIS", "MTF")  # the order form's too (rest.py checks placed orders against it)
Priced = tuple[list[dict[str, Any]], float]  # Kite's row of each order, and their sum in rupees


def _orders(raw: bytes) -> list[dict[str, Any]]:
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = None
    if not isinstance(body, list) or not body or not all(isinstance(o, dict) for o in body):
        raise OrderError("input", "Invalid orders: a JSON list of orders is expected.")
    return body


def priced(state: PaperState, raw: bytes) -> Priced:
    """Each order of the request body priced; OrderError("input") for a field the order form would
    refuse too. A market or SL-M order is priced at the last price (margin_for's price 0), any
    other at its price."""
    rows, total = [], 0.0
    for order in _orders(raw):
        inst = state.by_symbol(str(order.get("exchange") or ""), str(order.get("tradingsymbol") or ""))
        if inst is None or not inst.tradable:
            raise OrderError("input", "Invalid `tradingsymbol`.")
        one_of(order, "transaction_type", TRANSACTION_TYPES, "Invalid `transaction_type`.")
        order_type = one_of(order, "order_type", ORDER_TYPES, "Invalid `order_type`.")
        product = one_of(order, "product", PRODUCTS, "Invalid `product`.")
        quantity = whole_number(order.get("quantity"), "Invalid `quantity`.")
        if quantity <= 0:
            raise OrderError("input", "Invalid `quantity`.")
        market = order_type in ("MARKET", "SL-M")
        price = 0 if market else rupees_to_units(order.get("price"), inst.price_divisor, "price")
        if not market and price <= 0:
            raise OrderError("input", "Invalid `price`.")
        units = portfolio.margin_for(state, inst, product, quantity, price)
        rows.append(payloads.order_margin_payload(inst, product, units))
        total += units / inst.price_divisor
    return rows, total
