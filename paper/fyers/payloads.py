"""Fyers' order-book row, its order type and status codes, and the raw field names its order
socket sends the same row in; the account-state answers (positions, holdings, funds, trade
book) from paper/portfolio.py's books, and the margin calculator's, in the shapes of the
Fyers API v3 docs' samples."""

from __future__ import annotations

import json
from typing import Any

from paper.orders import PaperOrder, PaperTrade, rupees_number
from paper.portfolio import PaperFunds, PaperHolding, PaperPosition
from paper.universe import PaperInstrument

ORDER_TYPES = {1: "LIMIT", 2: "MARKET", 3: "SL-M", 4: "SL"}
# Fyers productType -> the paper's product (Kite's names, which paper/portfolio.py's margin rates
# use); CO, BO and MTF have no Kite name and stay as they are.
PRODUCTS_IN = {"CNC": "CNC", "INTRADAY": "MIS", "MARGIN": "NRML", "CO": "CO", "BO": "BO", "MTF": "MTF"}
PRODUCTS_OUT = {v: k for k, v in PRODUCTS_IN.items()}
# Fyers' exchange code 10 (NSE), segment 10 (capital market): the equities'. Every instrument's
# own pair is its Fytoken's first four digits (10 11 NFO, 12 11 BFO): exchange_segment().
NSE, CASH = 10, 10
ORDER_TYPE_CODES = {v: k for k, v in ORDER_TYPES.items()}
STATUS_CODES = {"OPEN": 6, "TRIGGER PENDING": 6, "COMPLETE": 2, "CANCELLED": 1, "REJECTED": 5}
# Order-book names → the raw names the order socket sends (map.json ``order_mapper``, inverted).
RAW_ORDER_FIELDS = {
    "clientId": "client_id", "id": "id", "exchOrdId": "id_exchange", "qty": "qty",
    "remainingQuantity": "qty_remaining", "filledQty": "qty_filled", "limitPrice": "price_limit",
    "stopPrice": "price_stop", "tradedPrice": "price_traded", "type": "ord_type", "fyToken": "fy_token",
    "exchange": "exchange", "segment": "segment", "symbol": "symbol", "instrument": "instrument",
    "message": "oms_msg", "offlineOrder": "offline_flag", "orderDateTime": "time_oms",
    "orderValidity": "validity", "productType": "product_type", "side": "tran_side",
    "status": "org_ord_status", "source": "ord_source", "ex_sym": "symbol_exch",
    "description": "symbol_desc", "orderTag": "ordertag",
}  # fmt: skip


def fyers_product(product: str) -> str:
    return PRODUCTS_OUT.get(product, product)


def exchange_segment(inst: PaperInstrument) -> tuple[int, int]:
    """Fyers' (exchange, segment) codes of an instrument, from its Fytoken: (10, 10) NSE cash,
    (10, 11) NSE F&O, (12, 11) BSE F&O."""
    token = inst.fyers_token
    return int(token[:2]), int(token[2:4])


def _tag_of(order: PaperOrder) -> str:
    return f"1:{order.tag}" if order.tag else "2:Untagged"


def fyers_order_payload(order: PaperOrder) -> dict[str, Any]:
    """One row of ``GET /api/v3/orders`` (the order book)."""
    inst = order.instrument
    div = inst.price_divisor
    status = STATUS_CODES.get(order.status, 6)
    return {
        "clientId": order.user_id,
        "id": order.order_id,
        "exchOrdId": order.exchange_order_id or "",
        "qty": order.quantity,
        "remainingQuantity": order.pending_quantity,
        "filledQty": order.filled_quantity,
        "discloseQty": order.disclosed_quantity,
        "limitPrice": rupees_number(order.price, div),
        "stopPrice": rupees_number(order.trigger_price, div),
        "tradedPrice": order.average_price(),
        "type": ORDER_TYPE_CODES.get(order.order_type, 2),
        "fyToken": inst.fyers_token,
        "exchange": exchange_segment(inst)[0],
        "segment": exchange_segment(inst)[1],
        "symbol": inst.fyers_symbol,
        "instrument": 0,
        "message": order.status_message or "",
        "offlineOrder": False,
        "orderDateTime": order.order_timestamp.strftime("%d-%b-%Y %H:%M:%S"),
        "orderValidity": order.validity,
        "pan": "",
        "productType": fyers_product(order.product),
        "side": 1 if order.transaction_type == "BUY" else -1,
        "status": status,
        "source": "API",
        "ex_sym": inst.symbol,
        "description": inst.name,
        "orderNumStatus": f"{order.order_id}:{status}",
        "disclosedQty": order.disclosed_quantity,
        "orderTag": _tag_of(order),
    }


def order_socket_message(order: PaperOrder) -> str:
    """The order socket's push for an order event: the order-book row under its raw names."""
    row = fyers_order_payload(order)
    raw = {RAW_ORDER_FIELDS[k]: v for k, v in row.items() if k in RAW_ORDER_FIELDS}
    return json.dumps({"s": "ok", "orders": raw}, default=str)


# ----- account state -----
def _rupees(units: float, divisor: int) -> float | int:
    """Units (possibly a float average) as a JSON rupee number."""
    return rupees_number(units, divisor) if float(units).is_integer() else round(units / divisor, 4)


def fyers_position_row(pos: PaperPosition, serial: int) -> dict[str, Any]:
    """One ``netPositions`` row of ``GET /api/v3/positions``. Nothing is carried in overnight, so
    the day's buys and sells are all of them."""
    inst, div = pos.instrument, pos.instrument.price_divisor
    qty = pos.quantity
    product = fyers_product(pos.product)
    return {
        "netQty": qty, "qty": abs(qty), "avgPrice": _rupees(pos.average_price, div),
        "netAvg": _rupees((pos.buy_value - pos.sell_value) / qty, div) if qty else 0,
        "side": (qty > 0) - (qty < 0), "productType": product,
        "realized_profit": _rupees(pos.realised, div), "unrealized_profit": _rupees(pos.unrealised, div),
        "pl": _rupees(pos.pnl, div), "ltp": _rupees(pos.last_price, div),
        "buyQty": pos.buy_quantity, "buyAvg": _rupees(pos.buy_price, div), "buyVal": _rupees(pos.buy_value, div),
        "sellQty": pos.sell_quantity, "sellAvg": _rupees(pos.sell_price, div),
        "sellVal": _rupees(pos.sell_value, div), "slNo": serial, "fyToken": inst.fyers_token,
        "crossCurrency": "N", "rbiRefRate": 1.0, "qtyMulti_com": 1.0, "segment": exchange_segment(inst)[1],
        "symbol": inst.fyers_symbol, "id": f"{inst.fyers_symbol}-{product}",
        "cfBuyQty": 0, "cfSellQty": 0, "dayBuyQty": pos.buy_quantity, "daySellQty": pos.sell_quantity,
        "exchange": exchange_segment(inst)[0],
    }  # fmt: skip


def fyers_positions(positions: list[PaperPosition]) -> dict[str, Any]:
    """The body of ``GET /api/v3/positions`` past ``s``/``code``/``message``."""
    rows = [fyers_position_row(p, i) for i, p in enumerate(positions)]
    overall = {
        "count_total": len(rows), "count_open": sum(1 for p in positions if p.quantity),
        "pl_total": round(sum(r["pl"] for r in rows), 4),
        "pl_realized": round(sum(r["realized_profit"] for r in rows), 4),
        "pl_unrealized": round(sum(r["unrealized_profit"] for r in rows), 4),
    }  # fmt: skip
    return {"netPositions": rows, "overall": overall}


def _holding_row(h: PaperHolding, kind: str, quantity: int, remaining: int, serial: int) -> dict[str, Any]:
    inst, div = h.instrument, h.instrument.price_divisor
    return {
        "holdingType": kind, "quantity": quantity, "costPrice": _rupees(h.average_price, div),
        "marketVal": _rupees(remaining * h.last_price, div), "remainingQuantity": remaining,
        "pl": _rupees(remaining * (h.last_price - h.average_price), div), "ltp": _rupees(h.last_price, div),
        "id": serial, "fyToken": inst.fyers_token, "exchange": NSE, "symbol": inst.fyers_symbol,
        "segment": CASH, "isin": "", "qty_t1": quantity if kind == "T1" else 0,
        "remainingPledgeQuantity": 0, "collateralQuantity": 0,
    }  # fmt: skip


def fyers_holdings(holdings: list[PaperHolding]) -> dict[str, Any]:
    """The body of ``GET /api/v3/holdings``: a ``HLD`` row for the settled quantity and a ``T1``
    row for today's delivery buys, as Fyers lists them; a sale of settled shares today lowers
    the ``HLD`` row's ``remainingQuantity``."""
    rows: list[dict[str, Any]] = []
    for h in holdings:
        t1 = max(h.t1_quantity, 0)
        if h.quantity:
            remaining = h.quantity + min(h.t1_quantity, 0)
            rows.append(_holding_row(h, "HLD", h.quantity, remaining, len(rows) + 1))
        if t1:
            rows.append(_holding_row(h, "T1", t1, t1, len(rows) + 1))
    invested = sum(r["costPrice"] * r["remainingQuantity"] for r in rows)
    current = sum(r["marketVal"] for r in rows)
    overall = {
        "count_total": len(rows), "total_investment": round(invested, 4), "total_current_value": round(current, 4),
        "total_pl": round(current - invested, 4),
        "pnl_perc": round((current - invested) / invested * 100, 2) if invested else 0,
    }  # fmt: skip
    return {"holdings": rows, "overall": overall}


# (id, title) of Fyers' ledger lines, in the docs' order.
FUND_LINES = (
    (1, "Total Balance"), (2, "Utilized Amount"), (3, "Clear Balance"), (4, "Realized Profit and Loss"),
    (5, "Collaterals"), (6, "Fund Transfer"), (7, "Receivables"), (8, "Adhoc Limit"),
    (9, "Limit at start of the day"), (10, "Available Balance"),
)  # fmt: skip


def fyers_funds(funds: PaperFunds) -> dict[str, Any]:
    """The body of ``GET /api/v3/funds`` (paise in; every paper instrument is equity, so the
    commodity ledger is all zeros). Total and clear balance are the cash: the opening balance
    plus the realised P&L; available is that less the margin used."""
    cash = funds.opening_balance + funds.realised
    equity = {1: cash, 2: funds.used_margin, 3: cash, 4: funds.realised, 9: funds.opening_balance,
              10: funds.available_margin}  # fmt: skip
    return {"fund_limit": [
        {"id": i, "title": title, "equityAmount": rupees_number(equity.get(i, 0), 100), "commodityAmount": 0}
        for i, title in FUND_LINES
    ]}  # fmt: skip


def fyers_trade_row(order: PaperOrder, trade: PaperTrade) -> dict[str, Any]:
    """One ``tradeBook`` row of ``GET /api/v3/tradebook``."""
    inst, div = order.instrument, order.instrument.price_divisor
    return {
        "clientId": order.user_id, "orderDateTime": trade.fill_time.strftime("%d-%b-%Y %H:%M:%S"),
        "orderNumber": order.order_id, "exchangeOrderNo": order.exchange_order_id or "",
        "exchange": exchange_segment(inst)[0], "segment": exchange_segment(inst)[1],
        "side": 1 if order.transaction_type == "BUY" else -1,
        "orderType": ORDER_TYPE_CODES.get(order.order_type, 2), "fyToken": inst.fyers_token,
        "productType": fyers_product(order.product), "tradedQty": trade.quantity,
        "tradePrice": rupees_number(trade.price, div), "tradeValue": rupees_number(trade.quantity * trade.price, div),
        "tradeNumber": trade.trade_id, "row": int(trade.trade_id), "symbol": inst.fyers_symbol,
        "orderTag": _tag_of(order),
    }  # fmt: skip


def fyers_margin(needed: int, funds: PaperFunds) -> dict[str, Any]:
    """The body of ``POST /api/v3/multiorder/margin`` past ``s``/``code``/``message`` (paise in):
    what the orders need, the free margin, and the account's margin once they are placed (what
    is already used plus theirs, as Fyers reports ``margin_new_order``)."""
    return {"data": {
        "margin_avail": rupees_number(funds.available_margin, 100), "margin_total": rupees_number(needed, 100),
        "margin_new_order": rupees_number(funds.used_margin + needed, 100),
    }}  # fmt: skip
