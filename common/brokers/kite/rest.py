"""Kite Connect REST adapter (docs/brokers.md § Zerodha): orders, the order book and the account state
(positions, holdings, margins, trades; ``portfolio.py`` reads them) and the margin calculator on a
keep-alive session. Form-encoded bodies (the calculator's is JSON), ``X-Kite-Version: 3``,
``Authorization: token api_key:access_token``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests

from common.algorules import algo_id_of
from common.brokers.base import RestAdapterBase, json_or_none, placed, send
from common.brokers.kite import portfolio, translate
from common.brokers.kite.errors import map_error
from common.models import Instrument, Order, OrderUpdate
from common.portfolio import ZERO, Funds, Holding, Margin, Position, Trade

__all__ = ["Adapter"]


class Adapter(RestAdapterBase):
    """:class:`common.brokers.base.BrokerAdapter` for Kite."""

    def _headers(self) -> dict[str, str]:
        return {"X-Kite-Version": "3", "Authorization": f"token {self.account.api_key}:{self._access_token()}"}

    def _call(self, method: str, path: str, data: dict[str, str] | None = None, json: Any = None, *,
              order: bool = False) -> dict[str, Any]:
        resp: requests.Response = send(self._session(order), method, f"{self._base}{path}", data=data, json=json,
                                       headers=self._headers(), read_timeout_s=self._read_timeout_s)
        body = json_or_none(resp)
        if resp.status_code == 200 and isinstance(body, dict) and body.get("status") == "success":
            return body
        raise map_error(resp.status_code, body, resp.text)

    def place(self, order: Order, instrument: Instrument | None) -> str:
        form = translate.order_form(order, instrument, algo_id=algo_id_of(order.strategy))
        body = self._call("POST", f"/orders/{translate.VARIETY}", form, order=True)
        return placed(translate.order_id_of(body), "Kite")

    def modify(self, order: Order, broker_order_id: str, changes: dict[str, Any],
               instrument: Instrument | None) -> str:
        new = order.with_(**changes)
        body = self._call("PUT", f"/orders/{translate.VARIETY}/{broker_order_id}", translate.modify_form(new),
                          order=True)
        return translate.order_id_of(body) or broker_order_id

    def cancel(self, order: Order, broker_order_id: str) -> str:
        body = self._call("DELETE", f"/orders/{translate.VARIETY}/{broker_order_id}", order=True)
        return translate.order_id_of(body) or broker_order_id

    def orders(self) -> list[OrderUpdate]:
        return translate.book_to_updates(self.account.name, self._call("GET", "/orders"))

    def positions(self) -> list[Position]:
        return portfolio.positions_of(self._call("GET", "/portfolio/positions").get("data"))

    def holdings(self) -> list[Holding]:
        return portfolio.holdings_of(self._call("GET", "/portfolio/holdings").get("data"))

    def funds(self) -> Funds:
        return portfolio.funds_of(self._call("GET", "/user/margins").get("data"))

    def trades(self) -> list[Trade]:
        return portfolio.trades_of(self._call("GET", "/trades").get("data"))

    def margin_required(self, orders: Sequence[tuple[Order, Instrument | None]]) -> Margin:
        if not orders:
            return Margin(ZERO)  # nothing to price: no request
        body = self._call("POST", portfolio.MARGIN_PATH, json=portfolio.margin_orders(orders))
        return portfolio.margin_of(body.get("data"))
