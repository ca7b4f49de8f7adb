"""A broker's order book read as OrderUpdates, the same way for every broker.

A row whose status the broker's ``order_to_update`` does not know is never guessed: it is
skipped, unless it carries a tag, which becomes an UNKNOWN update (the order IS at the broker:
reconciliation must not take it for absent and resend it, or fail it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common.models import OrderState, OrderUpdate

__all__ = ["book_to_updates"]


def book_to_updates(
    account: str,
    rows: Any,
    source: str,
    *,
    to_update: Callable[[str, dict[str, Any], str], OrderUpdate | None],
    tag_of: Callable[[dict[str, Any]], str],
    order_id_key: str,
    status_keys: tuple[str, ...] = ("status",),
) -> list[OrderUpdate]:
    """The order book's rows (anything but a list is an empty book) -> OrderUpdates, in order.

    ``to_update(account, row, source)`` reads a row, or returns None for an unknown status;
    such a row with a tag (``tag_of(row)``) becomes an UNKNOWN update with the row's order id
    (``order_id_key``) and its first non-empty status text (``status_keys``)."""
    out = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        u = to_update(account, row, source)
        if u is not None:
            out.append(u)
            continue
        tag = tag_of(row)
        if tag:
            status = next((row[k] for k in status_keys if row.get(k)), "")
            out.append(OrderUpdate(account=account, client_order_id=tag,
                                   broker_order_id=str(row.get(order_id_key) or ""), state=OrderState.UNKNOWN,
                                   broker_status=str(status), source=source))  # fmt: skip
    return out
