"""Angel's order-book row (also the ``orderData`` of an order-update message), its order type
and ``order-status`` codes, the rows of the account-state answers (getPosition, getHolding,
getRMS, getTradeBook) made from the paper books (paper/portfolio.py), and the margin
calculator's answer (margin/v1/batch) from paper/portfolio.py's margin_for."""

from __future__ import annotations

import datetime as dt
from typing import Any

from paper.angel.master import contract_fields, trading_symbol
from paper.orders import PaperOrder, PaperTrade
from paper.portfolio import PaperFunds, PaperHolding, PaperPosition

_ANGEL_STATUS = {
    "OPEN": "open",
    "TRIGGER PENDING": "trigger pending",
    "COMPLETE": "complete",
    "CANCELLED": "cancelled",
    "REJECTED": "rejected",
}
# Kite (generic) order types -> Angel's, and back.
ANGEL_ORDERTYPE = {"MARKET": "MARKET", "LIMIT": "LIMIT", "SL": "STOPLOSS_LIMIT", "SL-M": "STOPLOSS_MARKET"}
ORDERTYPE_TO_KITE = {v: k for k, v in ANGEL_ORDERTYPE.items()}


def _angel_time(moment: dt.datetime | None) -> str:
    return moment.strftime("%d-%b-%Y %H:%M:%S") if moment else ""


def angel_order_payload(order: PaperOrder) -> dict[str, Any]:
    """One row of Angel's getOrderBook / details/{uniqueorderid}."""
    div = order.instrument.price_divisor
    status = _ANGEL_STATUS.get(order.status, order.status.lower())
    last_fill = order.trades[-1] if order.trades else None
    contract = contract_fields(order.instrument)
    return {
        "variety": order.variety,
        "ordertype": ANGEL_ORDERTYPE.get(order.order_type, order.order_type),
        "producttype": order.product,
        "duration": order.validity,
        "price": order.price / div,
        "triggerprice": order.trigger_price / div,
        "quantity": str(order.quantity),
        "disclosedquantity": str(order.disclosed_quantity),
        "squareoff": 0.0,
        "stoploss": 0.0,
        "trailingstoploss": 0.0,
        "tradingsymbol": trading_symbol(order.instrument),
        "transactiontype": order.transaction_type,
        "exchange": order.instrument.exchange,
        "symboltoken": order.instrument.angel_token,
        "ordertag": order.tag or "",
        # a contract's as users' captured rows show them ("OPTSTK", 1480, "CE", "25NOV2025")
        "instrumenttype": contract["instrumenttype"] if contract else "",
        "strikeprice": float(contract["strikeprice"]) if contract else -1.0,
        "optiontype": contract["optiontype"] if contract else "",
        "expirydate": contract["expirydate"] if contract else "",
        "lotsize": str(order.instrument.lot_size),
        "cancelsize": str(order.cancelled_quantity),
        "averageprice": order.average_price(),
        "filledshares": str(order.filled_quantity),
        "unfilledshares": str(order.quantity - order.filled_quantity),
        "orderid": order.order_id,
        "text": order.status_message or "",
        "status": status,
        "orderstatus": status,
        "updatetime": _angel_time(order.exchange_update_timestamp or order.order_timestamp),
        "exchtime": _angel_time(order.exchange_timestamp),
        "exchorderupdatetime": _angel_time(order.exchange_update_timestamp),
        "fillid": last_fill.trade_id if last_fill else "",
        "filltime": last_fill.fill_time.strftime("%H:%M:%S") if last_fill else "",
        "parentorderid": "",
        "uniqueorderid": order.unique_order_id,
        "exchangeorderid": order.exchange_order_id or "",
    }


ORDER_STATUS_CODES = {
    "OPEN": "AB01",
    "CANCELLED": "AB02",
    "REJECTED": "AB03",
    "COMPLETE": "AB05",
    "OPEN PENDING": "AB09",
    "TRIGGER PENDING": "AB10",
    "MODIFY PENDING": "AB11",
}


def order_status_code(order: PaperOrder, was_modified: bool) -> str:
    """Angel's ``order-status`` for an event: AB04 for a modification, else by status."""
    if was_modified and order.status in ("OPEN", "TRIGGER PENDING"):
        return "AB04"
    return ORDER_STATUS_CODES.get(order.status, "AB01")


# ----- account state (getPosition, getHolding, getRMS, getTradeBook) -----
# The paper books (paper/portfolio.py) keep Angel orders' own producttype; Kite's names are
# mapped for books kept in those.
ANGEL_PRODUCT = {"CNC": "DELIVERY", "MIS": "INTRADAY", "NRML": "CARRYFORWARD"}


def _rupees(units: float, div: int) -> str:
    """A money string as Angel's position, RMS and trade-book answers carry it ("2235.80")."""
    return f"{units / div:.2f}"


# The contract fields every position and trade-book row repeats, for the paper universe's equities
# (no expiry, strike -1, multiplier -1: "not applicable", as Angel sends them).
_EQUITY_CONTRACT = {"instrumenttype": "", "symbolgroup": "EQ", "strikeprice": "-1", "optiontype": "",
                    "expirydate": "", "precision": "2", "multiplier": "-1"}


def angel_position_payload(pos: PaperPosition, close: int) -> dict[str, str]:
    """One row of getPosition (nothing is carried in overnight at the paper broker: cf* are 0)."""
    inst, div = pos.instrument, pos.instrument.price_divisor
    buy, sell = _rupees(pos.buy_value, div), _rupees(pos.sell_value, div)
    average = _rupees(pos.average_price, div)
    return {
        "exchange": inst.exchange, "symboltoken": inst.angel_token,
        "producttype": ANGEL_PRODUCT.get(pos.product, pos.product), "tradingsymbol": trading_symbol(inst),
        "symbolname": inst.underlying if inst.is_derivative else inst.symbol,
        **(contract_fields(inst) or _EQUITY_CONTRACT),
        "priceden": "1", "pricenum": "1", "genden": "1", "gennum": "1", "boardlotsize": "1",
        "lotsize": str(inst.lot_size),
        "buyqty": str(pos.buy_quantity), "sellqty": str(pos.sell_quantity), "buyamount": buy, "sellamount": sell,
        "cfbuyqty": "0", "cfsellqty": "0", "cfbuyamount": "0", "cfsellamount": "0",
        "buyavgprice": _rupees(pos.buy_price, div), "sellavgprice": _rupees(pos.sell_price, div),
        "avgnetprice": average, "netvalue": _rupees(pos.sell_value - pos.buy_value, div),
        "netqty": str(pos.quantity), "totalbuyvalue": buy, "totalsellvalue": sell,
        "cfbuyavgprice": "0", "cfsellavgprice": "0",
        "totalbuyavgprice": _rupees(pos.buy_price, div), "totalsellavgprice": _rupees(pos.sell_price, div),
        "netprice": average,
        "pnl": _rupees(pos.pnl, div), "realised": _rupees(pos.realised, div),
        "unrealised": _rupees(pos.unrealised, div), "ltp": _rupees(pos.last_price, div), "close": _rupees(close, div),
    }


def angel_holding_payload(holding: PaperHolding, close: int) -> dict[str, Any]:
    """One row of getHolding: JSON numbers, not strings; ``quantity`` is settled plus T1 and
    ``profitandloss`` is whole rupees, as in Angel's documented example."""
    inst, div = holding.instrument, holding.instrument.price_divisor
    average = holding.average_price / div
    return {
        "tradingsymbol": inst.angel_symbol, "exchange": inst.exchange, "isin": "",
        "t1quantity": holding.t1_quantity, "realisedquantity": holding.quantity,
        "quantity": holding.quantity + holding.t1_quantity, "authorisedquantity": 0, "product": "DELIVERY",
        "collateralquantity": None, "collateraltype": None, "haircut": 0,
        "averageprice": round(average, 2), "ltp": round(holding.last_price / div, 2),
        "symboltoken": inst.angel_token, "close": round(close / div, 2),
        "profitandloss": round(holding.pnl / div),
        "pnlpercentage": round((holding.last_price - holding.average_price) * 100 / holding.average_price, 2)
        if holding.average_price else 0,
    }


def angel_rms_payload(funds: PaperFunds) -> dict[str, str]:
    """getRMS: one set of limits for the account. ``net`` and ``availablecash`` are what is free
    (opening balance + realised P&L - margin used); the margin used is all in ``utiliseddebits``."""
    free = _rupees(funds.available_margin, 100)
    zero = "0.00"
    return {
        "net": free, "availablecash": free, "availableintradaypayin": zero, "availablelimitmargin": zero,
        "collateral": zero, "m2munrealized": _rupees(funds.unrealised, 100),
        "m2mrealized": _rupees(funds.realised, 100), "utiliseddebits": _rupees(funds.used_margin, 100),
        "utilisedspan": zero, "utilisedoptionpremium": zero, "utilisedholdingsales": zero, "utilisedexposure": zero,
        "utilisedturnover": zero, "utilisedpayout": zero,
    }


def angel_trade_payload(order: PaperOrder, trade: PaperTrade) -> dict[str, str]:
    """One row of getTradeBook (every value a string, as documented)."""
    inst, div = order.instrument, order.instrument.price_divisor
    return {
        "exchange": inst.exchange, "producttype": ANGEL_PRODUCT.get(order.product, order.product),
        "tradingsymbol": trading_symbol(inst), **(contract_fields(inst) or _EQUITY_CONTRACT),
        "marketlot": str(inst.lot_size),
        "tradevalue": _rupees(trade.quantity * trade.price, div), "transactiontype": order.transaction_type,
        "fillprice": _rupees(trade.price, div), "fillsize": str(trade.quantity), "orderid": order.order_id,
        "fillid": trade.trade_id, "filltime": trade.fill_time.strftime("%H:%M:%S"),
    }


# ----- margin calculator (margin/v1/batch) -----
def angel_margin_payload(legs: list[tuple[str, str, float]]) -> dict[str, Any]:
    """The ``data`` of margin/v1/batch for legs of (exchange, productType, rupees), in Angel's
    documented shape: JSON numbers, ``marginBreakup`` one row per (exchange, productType). The
    paper universe is cash equities with no hedge benefit and no option premium, so all of it is
    ``nonNFOMargin`` (margin outside NFO) and the other components are 0."""
    by_kind: dict[tuple[str, str], float] = {}
    for exchange, product, rupees in legs:
        by_kind[exchange, product] = by_kind.get((exchange, product), 0.0) + rupees
    total = round(sum(rupees for _, _, rupees in legs), 2)
    return {
        "totalMarginRequired": total,
        "marginComponents": {"netPremium": 0, "spanMargin": 0, "marginBenefit": 0, "deliveryMargin": 0,
                             "nonNFOMargin": total, "totOptionsPremium": 0},
        "marginBreakup": [{"exchange": exchange, "productType": product, "totalMarginRequired": round(rupees, 2)}
                          for (exchange, product), rupees in by_kind.items()],
        "optionsBuy": {"totOptionsPremium": 0, "optionDetails": []},
    }
