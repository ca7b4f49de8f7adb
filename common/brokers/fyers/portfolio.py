"""Fyers account state, pure: the v3 answers of ``GET /api/v3/positions``, ``/holdings``,
``/funds`` and ``/tradebook`` (``{"s": "ok", "code": 200, ...}``) in, the generic models of
``common/portfolio.py`` out. Field names from the Fyers API v3 docs (myapi.fyers.in/docsv3:
"Positions", "Holdings", "Funds", "Trades"); golden payloads in tests/data/fyers/.

* Symbols are Fyers tickers ("NSE:SBIN-EQ", "NSE:NIFTY25D1624000CE", "MCX:SILVERMIC20AUGFUT").
  The generic exchange comes from the ticker's prefix and the row's ``segment`` (10 cash,
  11 F&O, 12 currency, 20 commodity), as ``instruments.py`` reads the symbol master: NSE + 11
  is NFO. Not from the row's ``exchange`` code: the docs' own positions sample has an MCX
  contract with ``"exchange": 10``. The generic symbol drops ``-EQ`` and keeps other series,
  as the instrument master does.
* ``productType`` CNC and MTF (bought with margin funding, still delivery) are DELIVERY;
  INTRADAY, CO and BO (both intraday-only) are INTRADAY; MARGIN (carry-forward derivatives)
  is NORMAL. An unknown code is kept as Fyers wrote it: guessing would merge two positions.
* Holdings come one row per holding type (``HLD`` settled, ``T1`` bought but not yet
  delivered); rows of one symbol merge into one Holding. What is held now is
  ``remainingQuantity`` ("quantity minus the quantity sold during the day").
* Funds are one list of ledger lines (``fund_limit``: id, title, equityAmount,
  commodityAmount), read by title: two Segments, ``equity`` and ``commodity``.
* Trade-book ``orderTag`` echoes our tag with a source prefix ("1:<tag>"), removed as the
  order book's is (``updates.order_tag``), so ``client_order_id`` is the tag we sent.
* The margin calculator is ``POST /api/v3/multiorder/margin`` (docs "Margin Calculator" ->
  "Multiorder Margin"; not in the fyers_apiv3 SDK): ``{"data": [legs]}``, each leg the place
  request's own fields (``translate.order_body``) cut to the calculator's (``MARGIN_LEG_FIELDS``).
  The answer's ``data`` has ``margin_avail`` (free margin), ``margin_total`` (what these orders
  need together) and ``margin_new_order`` (the account's margin once they are placed: existing
  positions and orders included, so larger than ``margin_total`` with anything open): the
  generic total is ``margin_total``. No per-order split and no charges are reported. The span
  calculator (``POST api.fyers.in/api/v2/span_margin``, derivatives only) is not used.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from common.brokers.fyers.translate import order_body
from common.brokers.fyers.updates import order_tag
from common.brokers.payload import amount, money_or, text, whole
from common.models import Instrument, Order, Product
from common.portfolio import ZERO, Funds, Holding, Margin, Position, Segment, Trade

__all__ = [
    "FUND_TITLES", "MARGIN_LEG_FIELDS", "PRODUCTS", "SEGMENTS", "SIDES", "exchange_symbol", "funds", "holdings",
    "margin", "margin_request", "positions", "product_of", "trades",
]  # fmt: skip

PRODUCTS: dict[str, str] = {
    "CNC": Product.DELIVERY.value,
    "MTF": Product.DELIVERY.value,
    "INTRADAY": Product.INTRADAY.value,
    "CO": Product.INTRADAY.value,
    "BO": Product.INTRADAY.value,
    "MARGIN": Product.NORMAL.value,
}
# (ticker prefix, segment code) -> the generic exchange (instruments.py's names)
_EXCHANGES: dict[tuple[str, int], str] = {
    ("NSE", 10): "NSE", ("NSE", 11): "NFO", ("NSE", 12): "CDS",
    ("BSE", 10): "BSE", ("BSE", 11): "BFO", ("BSE", 12): "BCD",
    ("MCX", 20): "MCX",
}  # fmt: skip
SIDES = {1: "BUY", -1: "SELL"}
SEGMENTS = {"equityAmount": "equity", "commodityAmount": "commodity"}
# The ledger titles of /funds (docs' sample; ids 1-10) -> the Segment field each fills.
FUND_TITLES: dict[str, str] = {
    "Available Balance": "available_margin",
    "Utilized Amount": "used_margin",
    "Clear Balance": "available_cash",
    "Limit at start of the day": "opening_balance",
    "Collaterals": "collateral",
    "Realized Profit and Loss": "realised_pnl",
}


# The leg fields of /api/v3/multiorder/margin (docs' request sample; the place request's names).
MARGIN_LEG_FIELDS = ("symbol", "qty", "side", "type", "productType", "limitPrice", "stopLoss", "stopPrice",
                     "takeProfit")  # fmt: skip


def _rows(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    rows = body.get(key) if isinstance(body, dict) else None
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def product_of(code: Any) -> str:
    """Fyers ``productType`` -> the generic Product value (an unknown code unchanged)."""
    raw = text(code).strip().upper()
    return PRODUCTS.get(raw, raw)


def exchange_symbol(ticker: Any, segment: Any = None) -> tuple[str, str]:
    """("NSE", "SBIN") from "NSE:SBIN-EQ"; ("NFO", "NIFTY25D1624000CE") from a derivative ticker
    with segment 11. Without a segment, a cash ticker is told by its "-<series>" suffix."""
    prefix, _, bare = text(ticker).strip().partition(":")
    prefix = prefix.upper()
    if not bare:
        return "", prefix
    seg = whole(segment) if segment not in (None, "") else (10 if "-" in bare else (20 if prefix == "MCX" else 11))
    exchange = _EXCHANGES.get((prefix, seg), prefix)
    return exchange, bare.removesuffix("-EQ") if seg == 10 else bare


def _position(row: dict[str, Any]) -> Position:
    exchange, symbol = exchange_symbol(row.get("symbol"), row.get("segment"))
    net = whole(row.get("netQty"))
    # The docs' table has no avgPrice (its sample has): without it, the average of the side held.
    side_avg = amount(row.get("buyAvg") if net > 0 else row.get("sellAvg"))
    avg = money_or(row.get("avgPrice"), side_avg) if net else ZERO
    realised = amount(row.get("realized_profit"))
    unrealised = money_or(row.get("unrealized_profit"), amount(row.get("pl")) - realised)
    return Position(
        exchange=exchange, symbol=symbol, product=product_of(row.get("productType")), quantity=net,
        average_price=avg, buy_quantity=whole(row.get("buyQty")), buy_value=amount(row.get("buyVal")),
        sell_quantity=whole(row.get("sellQty")), sell_value=amount(row.get("sellVal")),
        day_buy_quantity=whole(row.get("dayBuyQty")), day_sell_quantity=whole(row.get("daySellQty")),
        overnight_quantity=whole(row.get("cfBuyQty")) - whole(row.get("cfSellQty")),
        realised_pnl=realised, unrealised_pnl=unrealised, last_price=amount(row.get("ltp")),
        multiplier=whole(row.get("qtyMulti_com")) or 1, token=text(row.get("fyToken") or row.get("fytoken")),
    )  # fmt: skip


def positions(body: dict[str, Any]) -> list[Position]:
    """``GET /api/v3/positions`` (``netPositions``; ``overall`` is derived, not read)."""
    return [_position(row) for row in _rows(body, "netPositions") if text(row.get("symbol"))]


def _held(row: dict[str, Any]) -> tuple[int, int]:
    """(held now, of which T1) of one holdings row."""
    remaining = row.get("remainingQuantity")
    held = whole(remaining if remaining not in (None, "") else row.get("quantity"))
    if text(row.get("holdingType")).upper() == "T1":
        return held, held
    # The docs' sample values a row at ltp x quantity while it also shows qty_t1: part of it.
    return held, max(0, min(whole(row.get("qty_t1")), held))


def holdings(body: dict[str, Any]) -> list[Holding]:
    """``GET /api/v3/holdings`` (``holdings``), the HLD and T1 rows of a symbol merged; cost
    price is their quantity-weighted average."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for row in _rows(body, "holdings"):
        if not text(row.get("symbol")):
            continue
        held, t1 = _held(row)
        if held <= 0:
            continue
        key = exchange_symbol(row.get("symbol"), row.get("segment"))
        acc = merged.setdefault(key, {"qty": 0, "t1": 0, "cost": ZERO, "pnl": ZERO, "ltp": ZERO, "isin": "",
                                      "token": ""})  # fmt: skip
        acc["qty"] += held
        acc["t1"] += t1
        acc["cost"] += amount(row.get("costPrice")) * held
        acc["pnl"] += amount(row.get("pl"))
        acc["ltp"] = amount(row.get("ltp")) or acc["ltp"]
        acc["isin"] = acc["isin"] or text(row.get("isin"))
        acc["token"] = acc["token"] or text(row.get("fyToken") or row.get("fytoken"))
    return [
        Holding(exchange=ex, symbol=sym, quantity=a["qty"], average_price=a["cost"] / a["qty"], t1_quantity=a["t1"],
                last_price=a["ltp"], pnl=a["pnl"], isin=a["isin"], token=a["token"])
        for (ex, sym), a in merged.items()
    ]  # fmt: skip


def funds(body: dict[str, Any]) -> Funds:
    """``GET /api/v3/funds`` (``fund_limit``) -> Funds with segments ``equity`` and ``commodity``.
    Fyers reports no unrealised P&L here (it is in the position book)."""
    values: dict[str, dict[str, Decimal]] = {seg: {} for seg in SEGMENTS.values()}
    for line in _rows(body, "fund_limit"):
        name = FUND_TITLES.get(text(line.get("title")).strip())
        if name is None:
            continue
        for amount_key, seg in SEGMENTS.items():
            values[seg][name] = amount(line.get(amount_key))
    return Funds.of_segments({seg: Segment(**{name: v.get(name, ZERO) for name in FUND_TITLES.values()})
                              for seg, v in values.items()})


def _trade(row: dict[str, Any]) -> Trade:
    exchange, symbol = exchange_symbol(row.get("symbol"), row.get("segment"))
    return Trade(
        trade_id=text(row.get("tradeNumber")), broker_order_id=text(row.get("orderNumber")), exchange=exchange,
        symbol=symbol, product=product_of(row.get("productType")),
        side=SIDES.get(whole(row.get("side")), ""), quantity=whole(row.get("tradedQty")),
        price=amount(row.get("tradePrice")), client_order_id=order_tag(row.get("orderTag")),
        fill_time=text(row.get("orderDateTime")), token=text(row.get("fyToken") or row.get("fytoken")),
    )  # fmt: skip


def trades(body: dict[str, Any]) -> list[Trade]:
    """``GET /api/v3/tradebook`` (``tradeBook``): one Trade per fill, in Fyers' order."""
    return [_trade(row) for row in _rows(body, "tradeBook") if text(row.get("symbol"))]


def margin_request(orders: Sequence[tuple[Order, Instrument | None]]) -> dict[str, Any]:
    """The body of ``POST /api/v3/multiorder/margin``: each order as it would be placed."""
    bodies = (order_body(order, instrument) for order, instrument in orders)
    return {"data": [{k: body[k] for k in MARGIN_LEG_FIELDS} for body in bodies]}


def margin(body: dict[str, Any], asked: int = 0) -> Margin:
    """The answer of ``POST /api/v3/multiorder/margin`` for ``asked`` orders. Fyers gives one
    figure for the basket: it is the one order's own when one was asked."""
    data = body.get("data") if isinstance(body, dict) else None
    total = amount(data.get("margin_total")) if isinstance(data, dict) else ZERO
    return Margin(total=total, orders=(total,) if asked == 1 else ())
