"""Angel SmartAPI account state, pure: the bodies of ``getPosition``, ``getHolding`` (or
``getAllHolding``), ``getRMS`` and ``getTradeBook`` -> the generic models of
``common/portfolio.py``.

Every answer is the SmartAPI envelope ``{"status": true, "message": "SUCCESS", "errorcode": "",
"data": ...}``; an empty book is ``"data": null``. Position, RMS and trade-book values are strings
("2235.80"); holding values are JSON numbers. Equity trading symbols carry the series
(``RELIANCE-EQ``): the generic symbol drops ``-EQ`` as the instrument master does
(:func:`common.brokers.angel.instruments.generic_symbol`).

Quantities are units (an NFO row of one 25-lot shows ``buyqty`` 25). ``buyqty``/``sellqty`` are
read as the day's and ``cfbuyqty``/``cfsellqty`` as what was carried in (the net position is
``netqty``, always as sent). The RMS limits are one figure for the whole account: one segment,
:data:`SEGMENT`.

The margin calculator (``POST margin/v1/batch``) takes ``{"positions": [...]}``, at most
:data:`MAX_MARGIN_POSITIONS`, each made from the order's ``placeOrder`` body (the same instrument
check and codes); it answers ``data.totalMarginRequired`` for the basket with its hedge benefit,
and no figure per order nor any charges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.brokers.angel.instruments import generic_symbol
from common.brokers.angel.translate import order_body
from common.brokers.payload import amount, day_and_carried, money, money_or, text, whole
from common.errors import InvalidOrder
from common.models import Instrument, Order, Product
from common.portfolio import ZERO, Funds, Holding, Margin, Position, Segment, Trade

__all__ = ["MAX_MARGIN_POSITIONS", "PRODUCT_OF", "SEGMENT", "funds", "holdings", "margin", "margin_request",
           "positions", "product_of", "trades"]

# Angel's producttype -> the generic product. MARGIN is Angel's margin delivery (MTF): bought on
# the broker's margin and carried, like a carry-forward position, not paid in full; BO (bracket)
# is squared off the same day.
PRODUCT_OF: dict[str, Product] = {
    "DELIVERY": Product.DELIVERY,
    "INTRADAY": Product.INTRADAY,
    "CARRYFORWARD": Product.NORMAL,
    "MARGIN": Product.NORMAL,
    "BO": Product.INTRADAY,
}
SEGMENT = "all"


def product_of(code: Any) -> str:
    """The generic product of Angel's ``producttype``; an unknown code is kept as sent, so a
    position of a product we do not know is shown apart, never merged into another."""
    raw = text(code).strip().upper()
    found = PRODUCT_OF.get(raw)
    return found.value if found is not None else raw


def _rows(body: dict[str, Any], key: str | None = None) -> list[dict[str, Any]]:
    data = body.get("data")
    if key is not None and isinstance(data, dict):
        data = data.get(key)
    return [row for row in data if isinstance(row, dict)] if isinstance(data, list) else []


def _symbol(row: dict[str, Any]) -> str:
    return generic_symbol(text(row.get("tradingsymbol")).strip(), text(row.get("instrumenttype")).strip())


def _position(row: dict[str, Any]) -> Position:
    quantities = day_and_carried(whole(row.get("buyqty")), whole(row.get("sellqty")),
                                 whole(row.get("cfbuyqty")), whole(row.get("cfsellqty")))
    net = whole(row.get("netqty"))
    return Position(
        exchange=text(row.get("exchange")).strip(),
        symbol=_symbol(row),
        product=product_of(row.get("producttype")),
        quantity=net,
        average_price=money_or(row.get("avgnetprice"), amount(row.get("netprice"))) if net else ZERO,
        buy_value=money_or(row.get("totalbuyvalue"),
                           amount(row.get("buyamount")) + amount(row.get("cfbuyamount"))),
        sell_value=money_or(row.get("totalsellvalue"),
                            amount(row.get("sellamount")) + amount(row.get("cfsellamount"))),
        realised_pnl=amount(row.get("realised")),
        unrealised_pnl=amount(row.get("unrealised")),
        last_price=amount(row.get("ltp")),
        token=text(row.get("symboltoken")).strip(),
        **quantities,
    )


def positions(body: dict[str, Any]) -> list[Position]:
    """``getPosition`` -> one Position per (instrument, product) row."""
    return [_position(row) for row in _rows(body) if row.get("tradingsymbol")]


def _holding(row: dict[str, Any]) -> Holding:
    return Holding(
        exchange=text(row.get("exchange")).strip(),
        symbol=_symbol(row),
        # ``quantity`` is the whole holding, settled (``realisedquantity``) and T1 together.
        quantity=whole(row.get("quantity")),
        average_price=amount(row.get("averageprice")),
        t1_quantity=whole(row.get("t1quantity")),
        last_price=amount(row.get("ltp")),
        pnl=amount(row.get("profitandloss")),
        isin=text(row.get("isin")).strip(),
        token=text(row.get("symboltoken")).strip(),
    )


def holdings(body: dict[str, Any]) -> list[Holding]:
    """``getHolding`` (``data``: the rows) or ``getAllHolding`` (``data.holdings``, beside the
    ``totalholding`` summary) -> Holdings."""
    return [_holding(row) for row in _rows(body, "holdings") if row.get("tradingsymbol")]


def funds(body: dict[str, Any]) -> Funds:
    """``getRMS`` -> Funds of one segment: ``net`` is what a new order can use, ``availablecash``
    the cash, ``utiliseddebits`` the total blocked (span, exposure, premium, ... included)."""
    data = body.get("data")
    row: dict[str, Any] = data if isinstance(data, dict) else {}
    segment = Segment(
        available_cash=amount(row.get("availablecash")),
        used_margin=amount(row.get("utiliseddebits")),
        available_margin=amount(row.get("net")),
        collateral=amount(row.get("collateral")),
        realised_pnl=amount(row.get("m2mrealized")),
        unrealised_pnl=amount(row.get("m2munrealized")),
    )
    return Funds.of_segments({SEGMENT: segment})


def _trade(row: dict[str, Any]) -> Trade:
    return Trade(
        trade_id=text(row.get("fillid")).strip(),
        broker_order_id=text(row.get("orderid")).strip(),
        exchange=text(row.get("exchange")).strip(),
        symbol=_symbol(row),
        product=product_of(row.get("producttype")),
        side=text(row.get("transactiontype")).strip().upper(),
        quantity=whole(row.get("fillsize")),
        price=amount(row.get("fillprice")),
        fill_time=text(row.get("filltime")).strip(),
        token=text(row.get("symboltoken")).strip(),
    )


def trades(body: dict[str, Any]) -> list[Trade]:
    """``getTradeBook`` -> one Trade per fill (the trade book carries no ``ordertag``, so
    ``client_order_id`` is "": the order book links a fill's order id to its tag)."""
    return [_trade(row) for row in _rows(body) if row.get("fillid") or row.get("orderid")]


# "You can include up to 50 positions in a single API request" (SmartAPI forum, the margin
# calculator's announcement).
MAX_MARGIN_POSITIONS = 50


def _margin_position(body: dict[str, str]) -> dict[str, Any]:
    """One ``positions`` entry from a ``placeOrder`` body: quantity and price as JSON numbers,
    as the documented request and the SDKs send them (``price`` 0 for a market order)."""
    return {
        "exchange": body["exchange"],
        "qty": int(body["quantity"]),
        "price": float(body["price"]),
        "productType": body["producttype"],
        "token": body["symboltoken"],
        "tradeType": body["transactiontype"],
        "orderType": body["ordertype"],
    }


def margin_request(orders: Sequence[tuple[Order, Instrument | None]]) -> dict[str, Any]:
    """The body of the margin calculator for these orders (each with its instrument), in order."""
    if len(orders) > MAX_MARGIN_POSITIONS:
        raise InvalidOrder("orders", f"Angel's margin calculator takes at most {MAX_MARGIN_POSITIONS} orders, "
                                     f"not {len(orders)}")
    return {"positions": [_margin_position(order_body(order, inst)) for order, inst in orders]}


def margin(body: dict[str, Any], asked: int) -> Margin | None:
    """The calculator's answer for ``asked`` orders -> Margin: ``totalMarginRequired`` is the
    basket's total (``marginBreakup`` splits it by exchange and product, not by order), so the
    figure of each order is known only when one was asked; Angel reports no charges here. None
    for an answer without the total."""
    data = body.get("data")
    total = money(data.get("totalMarginRequired")) if isinstance(data, dict) else None
    if total is None:
        return None
    return Margin(total=total, orders=(total,) if asked == 1 else ())
