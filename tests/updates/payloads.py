"""Broker payloads for the tests: a signed Kite postback (from the golden fixture) and Angel
order-update socket messages (the shape Angel's forum shows a client logging)."""

from __future__ import annotations

import json
from typing import Any

from common.brokers.kite.updates import postback_checksum
from tests.paths import KITE_FIXTURES
from tests.updates.conftest import KITE_SECRET

FIXTURE = KITE_FIXTURES / "postback.json"


def postback(
    tag: str,
    status: str = "COMPLETE",
    order_id: str = "220303000308932",
    secret: str = KITE_SECRET,
    **over: Any,
) -> dict[str, Any]:
    body = json.loads(FIXTURE.read_text())
    body.update(tag=tag, status=status, order_id=order_id, **over)
    body["checksum"] = postback_checksum(body["order_id"], body["order_timestamp"], secret)
    return body


def order_data(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "variety": "NORMAL", "ordertype": "LIMIT", "ordertag": "", "producttype": "DELIVERY",
        "price": 266.94, "triggerprice": 0.0, "quantity": "1", "disclosedquantity": "0",
        "duration": "DAY", "squareoff": 0.0, "stoploss": 0.0, "trailingstoploss": 0.0,
        "tradingsymbol": "NIFTYBEES-EQ", "transactiontype": "BUY", "exchange": "NSE",
        "symboltoken": "10576", "instrumenttype": "", "strikeprice": -1.0, "optiontype": "",
        "expirydate": "", "lotsize": "1", "cancelsize": "0", "averageprice": 265.62,
        "filledshares": "1", "unfilledshares": "0", "orderid": "241226000790638", "text": "",
        "status": "complete", "orderstatus": "complete", "updatetime": "26-Dec-2024 14:07:19",
        "exchtime": "26-Dec-2024 14:07:19", "exchorderupdatetime": "26-Dec-2024 14:07:19",
        "fillid": "", "filltime": "", "parentorderid": "",
    }  # fmt: skip
    d.update(over)
    return d


def angel_message(code: str, **over: Any) -> dict[str, Any]:
    return {
        "user-id": "A496209",
        "status-code": "200",
        "order-status": code,
        "error-message": "",
        "orderData": order_data(**over),
    }
