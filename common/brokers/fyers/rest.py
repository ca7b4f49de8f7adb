"""Fyers API v3 REST adapter (docs/brokers.md § Fyers): orders, the order book, the account
state (positions, holdings, funds, trade book) and the margin calculator on a keep-alive
session, JSON bodies, ``Authorization: <app_id>:<access_token>`` and ``version: 3``.
``portfolio.py`` builds the calculator's request and reads the account-state and margin
answers; Fyers counts them in the app's one budget like every call (spec.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.brokers.base import RestAdapterBase, json_or_none, placed, send
from common.brokers.fyers import portfolio, translate
from common.brokers.fyers.errors import map_error
from common.models import Instrument, Order, OrderUpdate
from common.portfolio import Funds, Holding, Margin, Position, Trade

__all__ = ["BOOK_PATH", "FUNDS_PATH", "HOLDINGS_PATH", "MARGIN_PATH", "ORDERS_PATH", "POSITIONS_PATH",
           "TRADEBOOK_PATH", "Adapter"]

ORDERS_PATH = "/api/v3/orders/sync"  # POST place, PATCH modify, DELETE cancel
BOOK_PATH = "/api/v3/orders"
# fyers_apiv3 fyersModel.Config: API + "/positions", "/holdings", "/funds", "/tradebook" (GET)
POSITIONS_PATH = "/api/v3/positions"
HOLDINGS_PATH = "/api/v3/holdings"
FUNDS_PATH = "/api/v3/funds"
TRADEBOOK_PATH = "/api/v3/tradebook"
# Not in fyers_apiv3's Config; the docs' "Multiorder Margin" (fyers-go-sdk: OrderCheckMarginURL)
MARGIN_PATH = "/api/v3/multiorder/margin"


class Adapter(RestAdapterBase):
    """:class:`common.brokers.base.BrokerAdapter` for Fyers."""

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"{self.account.api_key}:{self._access_token()}",
            "Content-Type": "application/json",
            "version": "3",
        }

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, *,
              order: bool = False) -> dict[str, Any]:
        resp = send(self._session(order), method, f"{self._base}{path}", json=body, headers=self._headers(),
                    read_timeout_s=self._read_timeout_s)
        parsed = json_or_none(resp)
        if resp.status_code == 200 and isinstance(parsed, dict) and str(parsed.get("s")).lower() == "ok":
            return parsed
        raise map_error(resp.status_code, parsed, resp.text)

    def place(self, order: Order, instrument: Instrument | None) -> str:
        body = self._call("POST", ORDERS_PATH, translate.order_body(order, instrument), order=True)
        return placed(translate.order_id_of(body), "Fyers")

    def modify(self, order: Order, broker_order_id: str, changes: dict[str, Any],
               instrument: Instrument | None) -> str:
        body = self._call("PATCH", ORDERS_PATH, translate.modify_body(order.with_(**changes), broker_order_id),
                          order=True)
        return translate.order_id_of(body) or broker_order_id

    def cancel(self, order: Order, broker_order_id: str) -> str:
        body = self._call("DELETE", ORDERS_PATH, translate.cancel_body(broker_order_id), order=True)
        return translate.order_id_of(body) or broker_order_id

    def orders(self) -> list[OrderUpdate]:
        return translate.book_to_updates(self.account.name, self._call("GET", BOOK_PATH))

    def positions(self) -> list[Position]:
        return portfolio.positions(self._call("GET", POSITIONS_PATH))

    def holdings(self) -> list[Holding]:
        return portfolio.holdings(self._call("GET", HOLDINGS_PATH))

    def funds(self) -> Funds:
        return portfolio.funds(self._call("GET", FUNDS_PATH))

    def trades(self) -> list[Trade]:
        return portfolio.trades(self._call("GET", TRADEBOOK_PATH))

    def margin_required(self, orders: Sequence[tuple[Order, Instrument | None]]) -> Margin:
        return portfolio.margin(self._call("POST", MARGIN_PATH, portfolio.margin_request(orders)), len(orders))
