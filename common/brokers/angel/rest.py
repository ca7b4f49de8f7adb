"""Angel SmartAPI REST adapter (docs/brokers.md § Angel One): orders, the order book, the
account state (positions, holdings, RMS limits, trade book) and the margin calculator on a
keep-alive session, JSON bodies, the SmartAPI headers and ``Authorization: Bearer <jwt>``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.brokers.angel import portfolio, translate
from common.brokers.angel.errors import map_error
from common.brokers.angel.login import headers
from common.brokers.base import RestAdapterBase, json_or_none, placed, send
from common.errors import Ambiguous
from common.models import Instrument, Order, OrderUpdate
from common.portfolio import ZERO, Funds, Holding, Margin, Position, Trade

__all__ = ["HOLDING_PATH", "MARGIN_PATH", "ORDER_PATH", "USER_PATH", "Adapter"]

ORDER_PATH = "/rest/secure/angelbroking/order/v1"
HOLDING_PATH = "/rest/secure/angelbroking/portfolio/v1"
USER_PATH = "/rest/secure/angelbroking/user/v1"
MARGIN_PATH = "/rest/secure/angelbroking/margin/v1"


class Adapter(RestAdapterBase):
    """:class:`common.brokers.base.BrokerAdapter` for Angel One."""

    def _headers(self) -> dict[str, str]:
        return headers(self.account, self._access_token().removeprefix("Bearer "))

    def _call(self, method: str, name: str, body: dict[str, Any] | None = None, *,
              under: str = ORDER_PATH, order: bool = False) -> dict[str, Any]:
        resp = send(self._session(order), method, f"{self._base}{under}/{name}", json=body,
                    headers=self._headers(), read_timeout_s=self._read_timeout_s)
        parsed = json_or_none(resp)
        if resp.status_code == 200 and isinstance(parsed, dict) and parsed.get("status") is True:
            return parsed
        raise map_error(resp.status_code, parsed, resp.text)

    def place(self, order: Order, instrument: Instrument | None) -> str:
        body = self._call("POST", "placeOrder", translate.order_body(order, instrument), order=True)
        return placed(translate.order_id_of(body), "Angel")

    def modify(self, order: Order, broker_order_id: str, changes: dict[str, Any],
               instrument: Instrument | None) -> str:
        new = order.with_(**changes)
        body = self._call("POST", "modifyOrder", translate.modify_body(new, broker_order_id, instrument), order=True)
        return translate.order_id_of(body) or broker_order_id

    def cancel(self, order: Order, broker_order_id: str) -> str:
        body = self._call("POST", "cancelOrder", translate.cancel_body(order, broker_order_id), order=True)
        return translate.order_id_of(body) or broker_order_id

    def orders(self) -> list[OrderUpdate]:
        return translate.book_to_updates(self.account.name, self._call("GET", "getOrderBook"))

    # Account state: each read is one request (the caller counts it in the "portfolio" caps).
    def positions(self) -> list[Position]:
        return portfolio.positions(self._call("GET", "getPosition"))

    def holdings(self) -> list[Holding]:
        return portfolio.holdings(self._call("GET", "getHolding", under=HOLDING_PATH))

    def funds(self) -> Funds:
        return portfolio.funds(self._call("GET", "getRMS", under=USER_PATH))

    def trades(self) -> list[Trade]:
        return portfolio.trades(self._call("GET", "getTradeBook"))

    def margin_required(self, orders: Sequence[tuple[Order, Instrument | None]]) -> Margin:
        if not orders:
            return Margin(total=ZERO)
        body = self._call("POST", "batch", portfolio.margin_request(orders), under=MARGIN_PATH)
        found = portfolio.margin(body, len(orders))
        if found is None:
            raise Ambiguous("Angel: margin calculator success without totalMarginRequired")
        return found
