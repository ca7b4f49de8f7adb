"""Shoonya translation, pure: a generic Order + Instrument -> the JSON of ``PlaceOrder`` /
``ModifyOrder`` / ``CancelOrder`` (every value a string, NorenRestApiPy's field names); the request
body ``jData=<json>&jKey=<susertoken>``; an ``OrderBook`` answer -> OrderUpdates (the status
table lives in ``updates.py``).

The body is built as the SDK builds it (``'jData=' + json.dumps(values) + '&jKey=' + token``,
not form-encoded), with the trading symbol URL-encoded inside the JSON as the SDK and the README
ask ("use url encoding to avoid special char error for symbols like M&M"): Noren decodes the
form, so that is the one spelling its parser is known to accept.

A future or option (``NFO:NIFTY:2026-08-18:18550:CE``) goes out under the symbol master's own
trading symbol and exchange (``NIFTY18AUG26C18550`` on NFO, ``SENSEX2591181200CE`` on BFO), never
a formatted one; without the master's row it is refused before anything is sent.
``Product.NORMAL`` is Noren's ``M`` (carry forward).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

from common.brokers import orderbook
from common.brokers.payload import price_text
from common.brokers.shoonya.updates import order_to_update
from common.derivatives import is_derivative_symbol
from common.errors import InvalidOrder
from common.models import Instrument, Order, OrderType, OrderUpdate, Product, Side

__all__ = ["PRICE_TYPE", "PRODUCT", "SIDE", "book_to_updates", "book_values", "cancel_values", "jdata",
           "modify_values", "order_id_of", "order_values", "trading_symbol"]

PRODUCT = {Product.DELIVERY: "C", Product.INTRADAY: "I", Product.NORMAL: "M"}
SIDE = {Side.BUY: "B", Side.SELL: "S"}
PRICE_TYPE = {OrderType.MARKET: "MKT", OrderType.LIMIT: "LMT", OrderType.SL: "SL-LMT", OrderType.SL_M: "SL-MKT"}
ORDER_SOURCE = "API"
# The fields ModifyOrder sends after the order id (trgprc only with a trigger price).
_MODIFY_FIELDS = ("exch", "tsym", "qty", "prctyp", "prc", "ret", "trgprc")


def jdata(values: dict[str, Any], key: str | None = None) -> str:
    """The request body: ``jData=<json>`` and, after login, ``&jKey=<susertoken>``."""
    body = "jData=" + json.dumps(values)
    return body if key is None else f"{body}&jKey={key}"


def trading_symbol(order: Order, instrument: Instrument | None) -> str:
    """Shoonya's own symbol ("SBIN-EQ", "NIFTY18AUG26C18550"), which its symbol master stores as
    broker_symbol; NSE equities without a master entry get the series suffix, other equities are
    sent as named. A future or option is only ever named by its own row in the master."""
    if is_derivative_symbol(order.symbol):
        if (instrument is None or instrument.kind not in ("future", "option") or not instrument.broker_symbol
                or instrument.key != order.instrument_key):
            raise InvalidOrder("symbol", f"{order.instrument_key}: no such contract in the account's Shoonya "
                                         "symbol master (expired, or NFO/BFO not in extra.symbol_exchanges)")
        return instrument.broker_symbol
    if instrument is not None and instrument.broker_symbol:
        return instrument.broker_symbol
    if order.exchange == "NSE" and (instrument is None or instrument.instrument_type == "EQ"):
        return f"{order.symbol}-EQ"
    return order.symbol


def order_values(order: Order, instrument: Instrument | None, user_id: str) -> dict[str, str]:
    """``PlaceOrder``'s JSON; the client_order_id travels as ``remarks``."""
    values = {
        "ordersource": ORDER_SOURCE,
        "uid": user_id,
        "actid": user_id,
        "trantype": SIDE[order.side],
        "prd": PRODUCT[order.product],
        "exch": order.exchange,
        "tsym": quote_plus(trading_symbol(order, instrument)),
        "qty": str(order.quantity),
        "dscqty": "0",
        "prctyp": PRICE_TYPE[order.order_type],
        "prc": price_text(order.price),
        "ret": order.validity.value,
        "remarks": order.client_order_id,
        "amo": "NO",
    }
    if order.trigger_price is not None:
        values["trgprc"] = price_text(order.trigger_price)
    return values


def modify_values(order: Order, broker_order_id: str, instrument: Instrument | None, user_id: str) -> dict[str, str]:
    """``ModifyOrder`` for the order as it should now be (``qty`` is the whole order's quantity):
    ``PlaceOrder``'s own translation of the fields a modification sends."""
    placed = order_values(order, instrument, user_id)
    values = {"ordersource": ORDER_SOURCE, "uid": user_id, "actid": user_id, "norenordno": broker_order_id}
    return values | {k: placed[k] for k in _MODIFY_FIELDS if k in placed}


def cancel_values(broker_order_id: str, user_id: str) -> dict[str, str]:
    return {"ordersource": ORDER_SOURCE, "uid": user_id, "norenordno": broker_order_id}


def book_values(user_id: str) -> dict[str, str]:
    return {"ordersource": ORDER_SOURCE, "uid": user_id}


def order_id_of(body: dict[str, Any]) -> str:
    """``norenordno`` of a placement, ``result`` of a modification or cancellation ('' if missing)."""
    return str(body.get("norenordno") or body.get("result") or "")


def book_to_updates(account: str, rows: Any) -> list[OrderUpdate]:
    """``OrderBook`` rows -> OrderUpdates, as :func:`common.brokers.orderbook.book_to_updates`
    reads every book (a tagged row of unknown status is an UNKNOWN update; the tag is ``remarks``)."""
    return orderbook.book_to_updates(account, rows, "reconcile", to_update=order_to_update,
                                     tag_of=lambda row: str(row.get("remarks") or ""), order_id_key="norenordno")  # fmt: skip
