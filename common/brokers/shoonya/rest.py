"""Shoonya (Noren) REST adapter (docs/brokers.md § Finvasia Shoonya): orders, the order book and the
account state (PositionBook, Holdings, Limits, TradeBook) and the margin calculators
(GetOrderMargin, GetBasketMargin), translated by ``portfolio.py``, on a keep-alive session. Every call is a POST of ``jData=<json>&jKey=<susertoken>`` to
``/NorenWClientTP/<Name>``; answers are ``{"stat": "Ok", ...}``, a JSON list (the books), or
``{"stat": "Not_Ok", "emsg"}``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.brokers.base import RestAdapterBase, json_or_none, placed, send
from common.brokers.shoonya import portfolio, translate
from common.brokers.shoonya.errors import NO_DATA, emsg_kind, map_error
from common.models import Instrument, Order, OrderUpdate
from common.portfolio import ZERO, Funds, Holding, Margin, Position, Trade

__all__ = ["PREFIX", "Adapter"]

PREFIX = "/NorenWClientTP"


class Adapter(RestAdapterBase):
    """:class:`common.brokers.base.BrokerAdapter` for Shoonya."""

    def _call(self, name: str, values: dict[str, Any], *, empty_ok: bool = False, order: bool = False) -> Any:
        resp = send(self._session(order), "POST", f"{self._base}{PREFIX}/{name}",
                    data=translate.jdata(values, self._access_token()), read_timeout_s=self._read_timeout_s)  # fmt: skip
        parsed = json_or_none(resp)
        if resp.status_code == 200:
            if isinstance(parsed, list) or (isinstance(parsed, dict) and parsed.get("stat") == "Ok"):
                return parsed
            # An empty book is a refusal with "no data" at Noren: for a book it means empty.
            if empty_ok and isinstance(parsed, dict) and emsg_kind(str(parsed.get("emsg") or "")) == NO_DATA:
                return []
        raise map_error(resp.status_code, parsed, resp.text)

    def place(self, order: Order, instrument: Instrument | None) -> str:
        body = self._call("PlaceOrder", translate.order_values(order, instrument, self.account.user_id), order=True)
        return placed(translate.order_id_of(body) if isinstance(body, dict) else "", "Shoonya")

    def modify(self, order: Order, broker_order_id: str, changes: dict[str, Any],
               instrument: Instrument | None) -> str:
        new = order.with_(**changes)
        body = self._call("ModifyOrder", translate.modify_values(new, broker_order_id, instrument,
                                                                 self.account.user_id), order=True)  # fmt: skip
        return (translate.order_id_of(body) if isinstance(body, dict) else "") or broker_order_id

    def cancel(self, order: Order, broker_order_id: str) -> str:
        body = self._call("CancelOrder", translate.cancel_values(broker_order_id, self.account.user_id), order=True)
        return (translate.order_id_of(body) if isinstance(body, dict) else "") or broker_order_id

    def orders(self) -> list[OrderUpdate]:
        rows = self._call("OrderBook", translate.book_values(self.account.user_id), empty_ok=True)
        return translate.book_to_updates(self.account.name, rows)

    def positions(self) -> list[Position]:
        rows = self._call("PositionBook", portfolio.account_values(self.account.user_id), empty_ok=True)
        return portfolio.positions_from_rows(rows)

    def holdings(self) -> list[Holding]:
        values = portfolio.account_values(self.account.user_id, portfolio.HOLDINGS_PRODUCT)
        return portfolio.holdings_from_rows(self._call("Holdings", values, empty_ok=True))

    def funds(self) -> Funds:
        return portfolio.funds_from_limits(self._call("Limits", portfolio.account_values(self.account.user_id)))

    def trades(self) -> list[Trade]:
        rows = self._call("TradeBook", portfolio.account_values(self.account.user_id), empty_ok=True)
        return portfolio.trades_from_rows(rows)

    def margin_required(self, orders: Sequence[tuple[Order, Instrument | None]]) -> Margin:
        """One order: ``GetOrderMargin``. Several: ``GetBasketMargin`` (Noren's margin for them
        together), less the margin used without them: the answer's ``marginusedprev`` where it
        carries one, else Limits' ``marginused`` as Shoonya documents it (a second request)."""
        if not orders:
            return Margin(total=ZERO)
        uid = self.account.user_id
        if len(orders) == 1:
            order, instrument = orders[0]
            return portfolio.order_margin(self._call("GetOrderMargin",
                                                     portfolio.order_margin_values(order, instrument, uid)))  # fmt: skip
        body = self._call("GetBasketMargin", portfolio.basket_margin_values(orders, uid))
        before = portfolio.used_before_basket(body)
        if before is None:
            before = self.funds().used_margin
        return portfolio.basket_margin(body, before)
