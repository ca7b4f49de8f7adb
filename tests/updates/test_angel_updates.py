"""Angel order-update socket messages -> OrderUpdate: pure, no I/O.

The message shapes are Angel's (SmartAPI forum, "New Real-Time Order Updates via WebSocket
from tns.angelone.in/smart-order-update"), as a client logged them.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.brokers import broker
from common.brokers.angel import updates as angel
from common.models import OrderState
from tests.updates.payloads import angel_message as message
from tests.updates.payloads import order_data


def test_reached_through_the_broker_registry() -> None:
    assert broker("angel").updates is angel


def test_complete_message_normalizes_exactly() -> None:
    u = angel.parse_message("angel1", message("AB05", ordertag="abc123"), "socket")
    assert u is not None
    assert (u.account, u.client_order_id, u.broker_order_id) == ("angel1", "abc123", "241226000790638")
    assert u.state is OrderState.COMPLETE
    assert (u.filled_quantity, u.pending_quantity) == (1, 0)
    assert u.average_price == Decimal("265.62") and str(u.average_price) == "265.62"
    assert u.exchange_ts == "26-Dec-2024 14:07:19" and u.source == "socket"


def test_connection_greeting_is_not_an_update() -> None:
    greeting = message(
        "AB00", orderid="", orderstatus="", status="", filledshares="", unfilledshares="", averageprice=0.0
    )
    assert angel.parse_message("a", greeting, "socket") is None


def test_open_pending_is_open_with_no_price() -> None:
    u = angel.parse_message(
        "a",
        message(
            "AB09",
            orderstatus="open pending",
            status="open pending",
            filledshares="0",
            unfilledshares="1",
            averageprice=0.0,
            ordertag="t1",
        ),
        "socket",
    )
    assert (
        u is not None and u.state is OrderState.OPEN and u.average_price is None and u.pending_quantity == 1
    )


def test_rejection_carries_its_reason() -> None:
    u = angel.parse_message(
        "a",
        message("AB03", orderstatus="rejected", status="rejected", text="Insufficient funds", ordertag="t"),
        "socket",
    )
    assert u is not None and u.state is OrderState.REJECTED and u.message == "Insufficient funds"


def test_code_is_the_fallback_when_the_text_is_missing() -> None:
    u = angel.parse_message("a", message("AB02", orderstatus="", status="", ordertag="t"), "socket")
    assert u is not None and u.state is OrderState.CANCELLED


def test_error_messages_are_not_updates() -> None:
    err = {
        "user-id": "A1",
        "status-code": "401",
        "order-status": "",
        "error-message": "Invalid token",
        "orderData": {},
    }
    assert angel.socket_error(err) == "Invalid token"
    assert angel.parse_message("a", err, "socket") is None
    assert angel.socket_error(message("AB05")) is None


def test_order_book_row_is_accepted_too() -> None:
    u = angel.parse_message("a", order_data(ordertag="row1"), "reconcile")
    assert u is not None and u.client_order_id == "row1" and u.source == "reconcile"


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("open", OrderState.OPEN), ("trigger pending", OrderState.OPEN), ("modify pending", OrderState.OPEN),
        ("after market order req received", OrderState.OPEN), ("complete", OrderState.COMPLETE),
        ("cancelled", OrderState.CANCELLED), ("rejected", OrderState.REJECTED), ("Complete", OrderState.COMPLETE),
        ("cancelled after market order", OrderState.CANCELLED), ("mystery", None),
    ],
)  # fmt: skip
def test_status_mapping(text: str, state: OrderState | None) -> None:
    assert angel.status_to_state(text) is state


def test_unknown_status_is_ignored() -> None:
    assert angel.parse_message("a", message("AB99", orderstatus="mystery"), "socket") is None


@pytest.mark.parametrize("jwt", ["eyJabc", "Bearer eyJabc"])
def test_socket_headers_bear_the_jwt_once(jwt: str) -> None:
    assert angel.order_socket_headers(jwt) == ["Authorization: Bearer eyJabc"]
