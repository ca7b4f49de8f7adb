"""Fyers order updates, pure: order-socket messages (raw names) and order-book rows (the names the
SDK maps them to) give the same OrderUpdate; the socket's header and subscription."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from common.brokers.fyers import updates
from common.models import OrderState

RAW = {"client_id": "XA12345", "id": "25120200007", "id_exchange": "1100000007", "qty": 10, "qty_remaining": 4,
       "qty_filled": 6, "price_limit": 801.35, "price_stop": 0, "price_traded": 801.3, "ord_type": 1,
       "fy_token": "10100000003045", "exchange": 10, "segment": 10, "symbol": "NSE:SBIN-EQ", "instrument": 0,
       "oms_msg": "", "offline_flag": False, "time_oms": "02-Dec-2026 09:15:02", "validity": "DAY",
       "product_type": "CNC", "tran_side": 1, "org_ord_status": 6, "ord_source": "API",
       "symbol_exch": "SBIN", "symbol_desc": "STATE BANK OF INDIA", "ordertag": "1:abc123XYZ"}  # fmt: skip


@pytest.mark.parametrize(("code", "state"), [
    (1, OrderState.CANCELLED), (2, OrderState.COMPLETE), (4, OrderState.OPEN), (5, OrderState.REJECTED),
    (6, OrderState.OPEN), (7, OrderState.CANCELLED), ("2", OrderState.COMPLETE), (3, None), (0, None), ("x", None),
])  # fmt: skip
def test_status_codes(code: Any, state: OrderState | None) -> None:
    assert updates.status_to_state(code) == state


def test_socket_message_with_raw_names() -> None:
    u = updates.parse_message("fy1", {"s": "ok", "orders": RAW}, "socket")
    assert u is not None
    assert (u.client_order_id, u.broker_order_id, u.state) == ("abc123XYZ", "25120200007", OrderState.OPEN)
    assert (u.filled_quantity, u.pending_quantity, u.average_price) == (6, 4, Decimal("801.3"))
    assert u.exchange_ts == "02-Dec-2026 09:15:02" and u.source == "socket" and u.broker_status == "pending"


def test_the_sdk_mapping_of_the_same_message_parses_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fyers_apiv3.FyersWebsocket import order_ws

    monkeypatch.chdir(tmp_path)
    got: list[dict[str, Any]] = []
    sock = order_ws.FyersOrderSocket(access_token="a:b", log_path=str(tmp_path), on_orders=got.append)
    sock._FyersOrderSocket__on_message(json.dumps({"s": "ok", "orders": RAW}))
    (mapped,) = got
    assert mapped["orders"]["status"] == 6 and mapped["orders"]["orderTag"] == "1:abc123XYZ"
    # the SDK's renamed dict is an order-book row: it parses to the same update
    assert updates.parse_message("fy1", mapped["orders"], "socket") == updates.parse_message(
        "fy1", {"s": "ok", "orders": RAW}, "socket"
    )


def test_messages_that_are_not_order_updates() -> None:
    assert updates.parse_message("a", {"s": "ok", "code": 1605, "message": "Successfully subscribed"}, "socket") is None
    assert updates.parse_message("a", {"s": "ok", "trades": {"id": "1"}}, "socket") is None
    assert updates.parse_message("a", {"s": "ok", "positions": {}}, "socket") is None
    assert updates.parse_message("a", {"s": "error", "code": -15, "message": "bad token"}, "socket") is None
    assert updates.socket_error({"s": "error", "code": -15, "message": "bad token"}) == "bad token"
    assert updates.socket_error({"s": "ok"}) is None
    assert updates.parse_message("a", {"s": "ok", "orders": {**RAW, "org_ord_status": 3}}, "socket") is None


def test_tags() -> None:
    assert updates.order_tag("1:abc") == "abc"
    assert updates.order_tag("2:Untagged") == ""
    assert updates.order_tag("abc") == "abc"
    assert updates.order_tag(None) == ""


def test_order_socket_header_and_subscription() -> None:
    assert updates.order_socket_headers("eyJ.a.b", api_key="APP-100") == ["authorization: APP-100:eyJ.a.b"]
    assert updates.order_socket_headers("APP-100:eyJ.a.b", api_key="APP-100") == ["authorization: APP-100:eyJ.a.b"]
    (sub,) = updates.order_socket_messages()
    assert json.loads(sub) == {"T": "SUB_ORD", "SLIST": ["orders"], "SUB_T": 1}
    assert updates.ORDER_SOCKET is True and updates.HAS_POSTBACK is False


def test_paper_socket_message_is_the_raw_shape() -> None:
    # The paper broker's order socket inverts the SDK's map.json exactly.
    import importlib.resources

    from paper.fyers.payloads import RAW_ORDER_FIELDS

    mapper = json.loads((importlib.resources.files("fyers_apiv3.FyersWebsocket") / "map.json").read_text())
    inverted = {v: k for k, v in mapper["order_mapper"].items()}
    assert all(inverted[k] == v for k, v in RAW_ORDER_FIELDS.items())
