"""The REST adapter: :class:`common.brokers.base.BrokerAdapter` over the broker's order API.

:class:`RestAdapterBase` gives the account, the keep-alive session (``self._http``), the base URL
(``self._base``), the token (``self._access_token()``) and ``order_by_tag``. Each call goes
through :func:`common.brokers.base.send` (transport failures mapped there) and maps every answer
that is not a success with this broker's :func:`.errors.map_error`; nothing retries here. A place
answer's order id goes through :func:`common.brokers.base.placed` (a success without one is Ambiguous).
The order calls (place, modify, cancel) send on ``self._session(order=True)``, every other call on
``self._session()``: the account's order egress (the 2026 static-IP rule) applies to them alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.brokers.base import RestAdapterBase
from common.models import Instrument, Order, OrderUpdate
from common.portfolio import Funds, Holding, Margin, Position, Trade

__all__ = ["Adapter"]


class Adapter(RestAdapterBase):
    """:class:`common.brokers.base.BrokerAdapter` for the new broker."""

    def place(self, order: Order, instrument: Instrument | None) -> str:
        """Send a new order tagged with ``order.client_order_id``; the broker's order id."""
        raise NotImplementedError

    def modify(self, order: Order, broker_order_id: str, changes: dict[str, Any],
               instrument: Instrument | None) -> str:
        raise NotImplementedError

    def cancel(self, order: Order, broker_order_id: str) -> str:
        raise NotImplementedError

    def orders(self) -> list[OrderUpdate]:
        """The day's order book through ``updates``' row parser (unknown statuses skipped)."""
        raise NotImplementedError

    # Account state: fetch with self._call-like helpers, translate with pure functions in a
    # portfolio.py of this package (rows in, generic models out), as the registered brokers do.
    def positions(self) -> list[Position]:
        raise NotImplementedError

    def holdings(self) -> list[Holding]:
        raise NotImplementedError

    def funds(self) -> Funds:
        raise NotImplementedError

    def trades(self) -> list[Trade]:
        raise NotImplementedError

    def margin_required(self, orders: Sequence[tuple[Order, Instrument | None]]) -> Margin:
        raise NotImplementedError
