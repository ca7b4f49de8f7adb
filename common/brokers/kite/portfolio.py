"""Kite account state, pure: the ``data`` of ``GET /portfolio/positions``, ``GET /portfolio/holdings``,
``GET /user/margins`` and ``GET /trades`` -> the generic models of ``common/portfolio.py``.

Kite's quirks, and what is done about them (sources in docs/brokers.md § Zerodha):

* Positions come as ``{"net": [...], "day": [...]}``; ``net`` is the position (carried in plus
  today), ``day`` only today's activity: the net rows are read.
* Kite's ``buy_value`` / ``sell_value`` already carry the lot ``multiplier`` (MCX ``LEADMINI``:
  quantity 1 at 161.05, multiplier 1000, buy_value 161050), while a generic Position keeps
  price x quantity and multiplies in ``pnl_at``: they are divided by the multiplier here.
* ``product`` CNC / MIS / NRML become the generic DELIVERY / INTRADAY / NORMAL; any other code
  (CO, BO, MTF) is kept as Kite wrote it, so such a row is neither lost nor merged into another.
* Holdings' ``quantity`` is documented as "Net quantity (T+1 + realised)": it already includes
  ``t1_quantity``, so it is the generic quantity as is.
* Margins come per segment (``equity``, ``commodity``): ``available.cash`` is the cash,
  ``utilised.debits`` the margin used, ``net`` what a new order can use.
* The trade book carries no tag: a Trade's client_order_id is "".
* Margins are asked of ``POST /margins/basket?consider_positions=true`` (a JSON list of orders, the
  place form's fields as numbers): ``final.total`` is the basket with Kite's hedge (spread) benefit
  and the open positions netted, ``orders[].total`` each order alone. Charges are the sum of the
  orders' ``charges.total``: the basket's own ``charges`` block is not their sum (Zerodha's example
  answer lists brokerage 40 with a total of 0), so it is read only when no order carries charges.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from common.brokers.kite import translate
from common.brokers.payload import amount, text, whole
from common.models import Instrument, Order, Product
from common.portfolio import ZERO, Funds, Holding, Margin, Position, Segment, Trade

__all__ = ["MARGIN_PATH", "PRODUCTS", "funds_of", "holdings_of", "margin_of", "margin_orders", "positions_of",
           "product_of", "trades_of"]

# The basket calculator, with consider_positions=true (the official SDK's default, sent explicitly)
# so that an order that closes or hedges an open position is priced as Kite would block it.
MARGIN_PATH = "/margins/basket?consider_positions=true"
# The calculators' documented order fields, as the place form (translate.order_form) names them.
_MARGIN_TEXT = ("exchange", "tradingsymbol", "transaction_type", "product", "order_type")

# Kite's product codes -> the generic ones (translate.PRODUCT is the way out).
PRODUCTS: dict[str, str] = {"CNC": Product.DELIVERY.value, "MIS": Product.INTRADAY.value,
                            "NRML": Product.NORMAL.value}


def product_of(code: Any) -> str:
    text = str(code or "")
    return PRODUCTS.get(text, text)


def _rows(data: Any) -> list[dict[str, Any]]:
    return [row for row in data if isinstance(row, dict)] if isinstance(data, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def position_of(row: dict[str, Any]) -> Position:
    """One row of ``data.net``."""
    multiplier = whole(row.get("multiplier")) or 1
    return Position(
        exchange=str(row.get("exchange") or ""),
        symbol=str(row.get("tradingsymbol") or ""),
        product=product_of(row.get("product")),
        quantity=whole(row.get("quantity")),
        average_price=amount(row.get("average_price")),
        buy_quantity=whole(row.get("buy_quantity")),
        buy_value=amount(row.get("buy_value")) / multiplier,
        sell_quantity=whole(row.get("sell_quantity")),
        sell_value=amount(row.get("sell_value")) / multiplier,
        day_buy_quantity=whole(row.get("day_buy_quantity")),
        day_sell_quantity=whole(row.get("day_sell_quantity")),
        overnight_quantity=whole(row.get("overnight_quantity")),
        realised_pnl=amount(row.get("realised")),
        unrealised_pnl=amount(row.get("unrealised")),
        last_price=amount(row.get("last_price")),
        multiplier=multiplier,
        token=text(row.get("instrument_token")),
    )


def positions_of(data: Any) -> list[Position]:
    """``data`` of ``GET /portfolio/positions`` -> the net positions, in Kite's order."""
    net = data.get("net") if isinstance(data, dict) else None
    return [position_of(row) for row in _rows(net)]


def holding_of(row: dict[str, Any]) -> Holding:
    return Holding(
        exchange=str(row.get("exchange") or ""),
        symbol=str(row.get("tradingsymbol") or ""),
        quantity=whole(row.get("quantity")),
        average_price=amount(row.get("average_price")),
        t1_quantity=whole(row.get("t1_quantity")),
        last_price=amount(row.get("last_price")),
        pnl=amount(row.get("pnl")),
        isin=str(row.get("isin") or ""),
        token=text(row.get("instrument_token")),
    )


def holdings_of(data: Any) -> list[Holding]:
    """``data`` of ``GET /portfolio/holdings``."""
    return [holding_of(row) for row in _rows(data)]


def segment_of(seg: dict[str, Any]) -> Segment:
    """One segment of ``GET /user/margins`` (``equity`` or ``commodity``)."""
    available, utilised = _dict(seg.get("available")), _dict(seg.get("utilised"))
    return Segment(
        available_cash=amount(available.get("cash")),
        used_margin=amount(utilised.get("debits")),
        available_margin=amount(seg.get("net")),
        opening_balance=amount(available.get("opening_balance")),
        collateral=amount(available.get("collateral")),
        realised_pnl=amount(utilised.get("m2m_realised")),
        unrealised_pnl=amount(utilised.get("m2m_unrealised")),
    )


def funds_of(data: Any) -> Funds:
    """``data`` of ``GET /user/margins`` -> Funds with one Segment per Kite segment."""
    segments = {str(name): segment_of(seg) for name, seg in (data.items() if isinstance(data, dict) else [])
                if isinstance(seg, dict)}
    return Funds.of_segments(segments)


def trade_of(row: dict[str, Any]) -> Trade:
    return Trade(
        trade_id=str(row.get("trade_id") or ""),
        broker_order_id=str(row.get("order_id") or ""),
        exchange=str(row.get("exchange") or ""),
        symbol=str(row.get("tradingsymbol") or ""),
        product=product_of(row.get("product")),
        side=str(row.get("transaction_type") or ""),
        quantity=whole(row.get("quantity")),
        price=amount(row.get("average_price")),
        client_order_id="",  # Kite's trade book has no tag
        fill_time=str(row.get("fill_timestamp") or ""),
        token=text(row.get("instrument_token")),
    )


def trades_of(data: Any) -> list[Trade]:
    """``data`` of ``GET /trades`` (the day's fills), in Kite's order."""
    return [trade_of(row) for row in _rows(data)]


def _number(text: str | None) -> float:
    """A price of the place form as a JSON number (the calculators take numbers; 0 when absent)."""
    return float(Decimal(text)) if text else 0.0


def margin_orders(orders: Sequence[tuple[Order, Instrument | None]]) -> list[dict[str, Any]]:
    """The JSON list of ``POST /margins/basket``: each order's fields as ``POST /orders/regular``
    would send them (one translation: translate.order_form), without what the calculators do not
    take (validity, tag, market_protection), with the variety of the path and numbers as numbers.
    A future or option is named by its instrument's trading symbol, as the place form names it."""
    out = []
    for order, instrument in orders:
        form = translate.order_form(order, instrument)
        row: dict[str, Any] = {key: form[key] for key in _MARGIN_TEXT}
        row.update(variety=translate.VARIETY, quantity=int(form["quantity"]), price=_number(form.get("price")),
                   trigger_price=_number(form.get("trigger_price")))
        out.append(row)
    return out


def margin_of(data: Any) -> Margin:
    """``data`` of ``POST /margins/basket`` -> Margin: ``final.total`` together (``initial.total``
    when there is no final), ``orders[].total`` one by one, the orders' charges summed."""
    body = _dict(data)
    final, initial = _dict(body.get("final")), _dict(body.get("initial"))
    rows = _rows(body.get("orders"))
    charged = [_dict(row.get("charges")) for row in rows if isinstance(row.get("charges"), dict)]
    charges = (sum((amount(c.get("total")) for c in charged), ZERO) if charged
               else amount(_dict(body.get("charges")).get("total")))
    return Margin(total=amount(final.get("total") if "total" in final else initial.get("total")),
                  orders=tuple(amount(row.get("total")) for row in rows), charges=charges)
