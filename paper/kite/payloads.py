"""Kite's order and trade bodies, its account-state bodies (positions, holdings, margins), its margin
calculators' answers (``POST /margins/orders``, ``/margins/basket``), and its SHA-256 checksums
(session token, postbacks)."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import TYPE_CHECKING, Any

from paper import portfolio
from paper.orders import IST, PaperOrder, PaperTrade, fmt_ts, now_ist, rupees_number
from paper.portfolio import PaperFunds, PaperHolding, PaperPosition

if TYPE_CHECKING:
    from paper.state import PaperState
    from paper.universe import PaperInstrument


def checksum_hex(*parts: str) -> str:
    """sha256 of the concatenation, hex: Kite's session checksum and postback checksum."""
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def kite_order_payload(order: PaperOrder) -> dict[str, Any]:
    """The Kite order body: one item of GET /orders, a postback body (without checksum/app_id)."""
    div = order.instrument.price_divisor
    return {
        "account_id": order.user_id,
        "placed_by": order.user_id,
        "order_id": order.order_id,
        "exchange_order_id": order.exchange_order_id,
        "parent_order_id": None,
        "status": order.status,
        "status_message": order.status_message,
        "status_message_raw": order.status_message,
        "order_timestamp": fmt_ts(order.order_timestamp),
        "exchange_update_timestamp": fmt_ts(order.exchange_update_timestamp),
        "exchange_timestamp": fmt_ts(order.exchange_timestamp),
        "variety": order.variety,
        "modified": order.modified,
        "exchange": order.instrument.exchange,
        "tradingsymbol": order.instrument.symbol,
        "instrument_token": order.instrument.kite_token,
        "order_type": order.order_type,
        "transaction_type": order.transaction_type,
        "validity": order.validity,
        "validity_ttl": 0,
        "product": order.product,
        "quantity": order.quantity,
        "disclosed_quantity": order.disclosed_quantity,
        "price": rupees_number(order.price, div),
        "trigger_price": rupees_number(order.trigger_price, div),
        "average_price": order.average_price(),
        "filled_quantity": order.filled_quantity,
        "pending_quantity": order.pending_quantity,
        "cancelled_quantity": order.cancelled_quantity,
        "market_protection": 0,
        "meta": {},
        "tag": order.tag,
        "tags": [order.tag] if order.tag else [],
        "guid": order.unique_order_id,
    }


def trade_row(order: PaperOrder, trade: PaperTrade) -> dict[str, Any]:
    """One row of GET /trades (and of GET /orders/{order_id}/trades)."""
    return {
        "trade_id": trade.trade_id,
        "order_id": order.order_id,
        "exchange": order.instrument.exchange,
        "tradingsymbol": order.instrument.symbol,
        "instrument_token": order.instrument.kite_token,
        "product": order.product,
        "average_price": rupees_number(trade.price, order.instrument.price_divisor),
        "quantity": trade.quantity,
        "exchange_order_id": order.exchange_order_id,
        "transaction_type": order.transaction_type,
        "fill_timestamp": fmt_ts(trade.fill_time),
        "order_timestamp": trade.fill_time.astimezone(IST).strftime("%H:%M:%S"),
        "exchange_timestamp": fmt_ts(trade.fill_time),
    }


def trade_payload(order: PaperOrder) -> list[dict[str, Any]]:
    """The rows of GET /trades for one order."""
    return [trade_row(order, trade) for trade in order.trades]


# ----- account state (paper/portfolio.py's books in Kite's shapes) -----
def _money(units: float, divisor: int) -> float | int:
    """Units (possibly fractional: an average) to a JSON number, as ``rupees_number`` prints prices."""
    rupees = round(units / divisor, 6)
    return int(rupees) if rupees == int(rupees) else rupees


def position_payload(pos: PaperPosition, close_price: int) -> dict[str, Any]:
    """One row of ``GET /portfolio/positions`` (``net`` and ``day`` alike: nothing is carried in
    overnight at the paper broker). Kite's values carry the multiplier, 1 for every paper instrument."""
    inst = pos.instrument
    div = inst.price_divisor
    buy_value, sell_value = _money(pos.buy_value, div), _money(pos.sell_value, div)
    buy_price, sell_price = _money(pos.buy_price, div), _money(pos.sell_price, div)
    return {
        "tradingsymbol": inst.symbol,
        "exchange": inst.exchange,
        "instrument_token": inst.kite_token,
        "product": pos.product,
        "quantity": pos.quantity,
        "overnight_quantity": 0,
        "multiplier": 1,
        "average_price": _money(pos.average_price, div),
        "close_price": _money(close_price, div),
        "last_price": _money(pos.last_price, div),
        "value": _money(pos.sell_value - pos.buy_value, div),
        "pnl": _money(pos.pnl, div),
        "m2m": _money(pos.pnl, div),  # from today's prices: the same as pnl without a carried-in part
        "unrealised": _money(pos.unrealised, div),
        "realised": _money(pos.realised, div),
        "buy_quantity": pos.buy_quantity,
        "buy_price": buy_price,
        "buy_value": buy_value,
        "buy_m2m": buy_value,
        "sell_quantity": pos.sell_quantity,
        "sell_price": sell_price,
        "sell_value": sell_value,
        "sell_m2m": sell_value,
        "day_buy_quantity": pos.buy_quantity,
        "day_buy_price": buy_price,
        "day_buy_value": buy_value,
        "day_sell_quantity": pos.sell_quantity,
        "day_sell_price": sell_price,
        "day_sell_value": sell_value,
    }


def holding_payload(holding: PaperHolding, close_price: int, day: dt.date) -> dict[str, Any]:
    """One row of ``GET /portfolio/holdings``: ``quantity`` is settled + T1 as Kite documents it
    ("Net quantity (T+1 + realised)"); what was sold out of the settled quantity is ``used_quantity``."""
    inst = holding.instrument
    div = inst.price_divisor
    t1 = max(holding.t1_quantity, 0)
    used = max(-holding.t1_quantity, 0)
    change = holding.last_price - close_price
    return {
        "tradingsymbol": inst.symbol,
        "exchange": inst.exchange,
        "instrument_token": inst.kite_token,
        "isin": "",  # the paper universe has no ISINs
        "product": "CNC",
        "price": 0,
        "quantity": holding.quantity + holding.t1_quantity,
        "used_quantity": used,
        "t1_quantity": t1,
        "realised_quantity": holding.quantity,
        "authorised_quantity": 0,
        "authorised_date": f"{day.isoformat()} 00:00:00",
        "authorisation": {},
        "opening_quantity": holding.quantity,
        "short_quantity": 0,
        "collateral_quantity": 0,
        "collateral_type": "",
        "discrepancy": False,
        "average_price": _money(holding.average_price, div),
        "last_price": _money(holding.last_price, div),
        "close_price": _money(close_price, div),
        "pnl": _money(holding.pnl, div),
        "day_change": _money(change, div),
        "day_change_percentage": change * 100 / close_price if close_price else 0,
        "mtf": {"quantity": 0, "used_quantity": 0, "average_price": 0, "value": 0, "initial_margin": 0},
    }


def _segment(net: int, cash: int, debits: int, realised: int, unrealised: int) -> dict[str, Any]:
    return {
        "enabled": True,
        "net": _money(net, 100),
        "available": {"adhoc_margin": 0, "cash": _money(cash, 100), "opening_balance": _money(cash, 100),
                      "live_balance": _money(net, 100), "collateral": 0, "intraday_payin": 0},
        "utilised": {"debits": _money(debits, 100), "exposure": 0, "m2m_realised": _money(realised, 100),
                     "m2m_unrealised": _money(unrealised, 100), "option_premium": 0, "payout": 0, "span": 0,
                     "holding_sales": 0, "turnover": 0, "liquid_collateral": 0, "stock_collateral": 0,
                     "delivery": 0},
    }  # fmt: skip


def margins_payload(funds: PaperFunds) -> dict[str, Any]:
    """``GET /user/margins``: the paper broker keeps one pot (paise), so it is all ``equity`` and
    ``commodity`` is enabled but empty (the paper universe lists no MCX contracts)."""
    return {
        "equity": _segment(funds.available_margin, funds.opening_balance, funds.used_margin, funds.realised,
                           funds.unrealised),
        "commodity": _segment(0, 0, 0, 0, 0),
    }


# ----- the ``data`` of each account-state endpoint, from the user's books -----
def positions_data(state: PaperState, user_id: str) -> dict[str, Any]:
    """``GET /portfolio/positions``: nothing is carried in overnight, so the day's rows are the net rows."""
    close = state.prices.close_price
    rows = [position_payload(p, close(p.instrument)) for p in portfolio.positions(state, "kite", user_id)]
    return {"net": rows, "day": [dict(r) for r in rows]}


def holdings_data(state: PaperState, user_id: str) -> list[dict[str, Any]]:
    today = now_ist().date()
    close = state.prices.close_price
    return [holding_payload(h, close(h.instrument), today) for h in portfolio.holdings(state, "kite", user_id)]


def margins_data(state: PaperState, user_id: str) -> dict[str, Any]:
    return margins_payload(portfolio.funds(state, "kite", user_id))


def trades_data(state: PaperState, user_id: str) -> list[dict[str, Any]]:
    """``GET /trades``: every fill of the day, in fill order."""
    return [trade_row(order, trade) for order, trade in portfolio.trades(state, "kite", user_id)]


# ----- margin calculators: paper/portfolio.py's margin_for in Kite's shapes (margins.py reads the orders) -----
def _charges(tax_type: str) -> dict[str, Any]:
    """Kite's ``charges`` block: the paper broker charges nothing, so every amount is 0."""
    return {"transaction_tax": 0, "transaction_tax_type": tax_type, "exchange_turnover_charge": 0,
            "sebi_turnover_charge": 0, "brokerage": 0, "stamp_duty": 0,
            "gst": {"igst": 0, "cgst": 0, "sgst": 0, "total": 0}, "total": 0}


def _margin_block(total: float | int, *, kind: str = "", symbol: str = "", exchange: str = "",
                  leverage: float | int = 0, tax_type: str = "") -> dict[str, Any]:
    """Kite's margin structure (an order's, or a basket's ``initial`` / ``final`` with empty names).
    The paper's only component is the product's rate on the value: it is shown as ``var``, where
    Kite shows an equity order's margin."""
    return {"type": kind, "tradingsymbol": symbol, "exchange": exchange, "span": 0, "exposure": 0,
            "option_premium": 0, "additional": 0, "bo": 0, "cash": 0, "var": total,
            "pnl": {"realised": 0, "unrealised": 0}, "leverage": leverage, "charges": _charges(tax_type),
            "total": total}  # fmt: skip


def order_margin_payload(inst: PaperInstrument, product: str, units: int) -> dict[str, Any]:
    """One order's answer of ``POST /margins/orders`` (and of the basket's ``orders``): ``units``
    (1/price_divisor rupees) as margin_for gave them."""
    return _margin_block(_money(units, inst.price_divisor), kind="commodity" if inst.exchange == "MCX" else "equity",
                         symbol=inst.symbol, exchange=inst.exchange,
                         leverage=_money(100 / portfolio.margin_rate(product), 100), tax_type="stt")


def basket_margins_data(rows: list[dict[str, Any]], total_rupees: float) -> dict[str, Any]:
    """``POST /margins/basket`` of the orders' ``rows``: the plain sum (no hedge benefit at the paper
    broker), so ``final`` is ``initial``; the basket's own ``charges`` block, all 0 as every charge."""
    total = _money(total_rupees, 1)
    return {"initial": _margin_block(total), "final": _margin_block(total), "orders": rows, "charges": _charges("")}
