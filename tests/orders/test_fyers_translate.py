"""Fyers, pure parts: Order -> the v3 order JSON, answers -> error types, order-book rows ->
OrderUpdate, the login's hashes, the symbol master."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from common.brokers.fyers import errors, instruments, login, translate
from common.errors import (
    Ambiguous,
    BrokerError,
    BrokerUnavailable,
    InvalidOrder,
    LoginFailed,
    OrderRejected,
    RateLimited,
    TokenExpired,
)
from common.models import Instrument, Order, OrderState
from tests.paths import BROKERS_MD

SBIN = Instrument("NSE", "SBIN", "10100000003045", broker_symbol="NSE:SBIN-EQ")


def _order(**kw: Any) -> Order:
    base: dict[str, Any] = dict(account="a", exchange="NSE", symbol="SBIN", side="BUY", quantity=5,
                                client_order_id="abc123XYZ")
    base.update(kw)
    return Order(**base)


@pytest.mark.parametrize(("order_type", "code", "price", "trigger"), [
    ("LIMIT", 1, "801.35", None), ("MARKET", 2, None, None), ("SL-M", 3, None, "799.95"), ("SL", 4, "801.05", "800.5"),
])  # fmt: skip
def test_order_types_and_exact_prices(order_type: str, code: int, price: str | None, trigger: str | None) -> None:
    body = translate.order_body(_order(order_type=order_type, price=price, trigger_price=trigger), SBIN)
    assert body["type"] == code
    # the JSON number on the wire is the decimal we were given, digit for digit
    wire = json.loads(json.dumps(body), parse_float=Decimal)
    assert wire["limitPrice"] == (Decimal(price) if price else 0)
    assert wire["stopPrice"] == (Decimal(trigger) if trigger else 0)


def test_place_body() -> None:
    body = translate.order_body(_order(side="SELL", product="DELIVERY", validity="IOC"), SBIN)
    assert body == {
        "symbol": "NSE:SBIN-EQ", "qty": 5, "type": 2, "side": -1, "productType": "CNC", "limitPrice": 0,
        "stopPrice": 0, "validity": "IOC", "disclosedQty": 0, "offlineOrder": False, "stopLoss": 0,
        "takeProfit": 0, "orderTag": "abc123XYZ",
    }  # fmt: skip
    assert translate.order_body(_order(product="INTRADAY"), SBIN)["productType"] == "INTRADAY"
    assert translate.order_body(_order(product="NORMAL"), SBIN)["productType"] == "MARGIN"
    # without the master's ticker, an equity's is derived; a derivative's cannot be
    assert translate.order_body(_order(), None)["symbol"] == "NSE:SBIN-EQ"
    fut = Instrument("NFO", "NIFTYFUT", "101124120335001", instrument_type="FUT")
    with pytest.raises(InvalidOrder):
        translate.order_body(_order(exchange="NFO", symbol="NIFTYFUT"), fut)


def test_modify_and_cancel_bodies() -> None:
    o = _order(order_type="LIMIT", price="10.5")
    assert translate.modify_body(o, "2512020001") == {"id": "2512020001", "type": 1, "qty": 5, "limitPrice": 10.5,
                                                      "stopPrice": 0}  # fmt: skip
    assert translate.cancel_body("2512020001") == {"id": "2512020001"}
    assert translate.order_id_of({"s": "ok", "id": "2512020001"}) == "2512020001"


def _row(**kw: Any) -> dict[str, Any]:
    row = {"id": "25120200001", "status": 6, "filledQty": 0, "remainingQuantity": 5, "qty": 5, "tradedPrice": 0,
           "orderTag": "1:abc123XYZ", "message": "", "orderDateTime": "02-Dec-2026 09:15:00"}  # fmt: skip
    row.update(kw)
    return row


def test_order_book_rows() -> None:
    body = {"s": "ok", "orderBook": [
        _row(), _row(id="2", status=2, filledQty=5, remainingQuantity=0, tradedPrice=801.35),
        _row(id="3", status=5, message="RED:Margin Shortfall", orderTag="1:r"),
        _row(id="4", status=1, orderTag="2:Untagged"), _row(id="5", status=7, orderTag="1:x"),
        _row(id="6", status=99, orderTag="1:weird"), _row(id="7", status=99, orderTag="2:Untagged"),
    ]}  # fmt: skip
    ups = {u.broker_order_id: u for u in translate.book_to_updates("a", body)}
    assert ups["25120200001"].state == OrderState.OPEN and ups["25120200001"].client_order_id == "abc123XYZ"
    assert ups["25120200001"].average_price is None and ups["25120200001"].pending_quantity == 5
    assert ups["2"].state == OrderState.COMPLETE and ups["2"].average_price == Decimal("801.35")
    assert ups["3"].state == OrderState.REJECTED and ups["3"].message == "RED:Margin Shortfall"
    assert ups["4"].state == OrderState.CANCELLED and ups["4"].client_order_id == ""
    assert ups["5"].state == OrderState.CANCELLED and ups["5"].broker_status == "expired"
    # an unknown status with our tag is UNKNOWN (it is at the broker); without a tag it is skipped
    assert ups["6"].state == OrderState.UNKNOWN and ups["6"].client_order_id == "weird"
    assert "7" not in ups
    assert translate.book_to_updates("a", {"s": "ok", "orderBook": []}) == []


# ----- errors -------------------------------------------------------------------------------------
def _err(status: int, code: int, message: str = "m") -> BrokerError:
    return errors.map_error(status, {"s": "error", "code": code, "message": message})


def test_every_code_maps_to_one_type() -> None:
    for code, kind in errors.ERROR_CODES.items():
        status = 429 if kind is RateLimited else 401 if kind is TokenExpired else 400
        assert type(_err(status, code)) is kind, code


@pytest.mark.parametrize(("status", "code", "message", "kind"), [
    (429, -429, "request limit reached", RateLimited),
    (200, -353, "API Limit exceeded", RateLimited),
    (400, -1, "Request Limit Reached", RateLimited),
    (401, -8, "token expired", TokenExpired),
    (401, -15, "Could not authenticate the user", TokenExpired),
    (401, -999, "new auth code", TokenExpired),
    (400, -300, "Please provide a valid symbol", OrderRejected),
    (400, -99, "RMS rejected", OrderRejected),
    (400, -12345, "never seen", OrderRejected),
    (500, -12345, "never seen", Ambiguous),
    (500, -205, "Connection error", Ambiguous),
    (503, -205, "Connection error", BrokerUnavailable),
    (503, -12345, "gateway", BrokerUnavailable),
    (502, -12345, "gateway", Ambiguous),  # a proxy may answer 502 after forwarding
    (400, -371, "appIdHash", LoginFailed),
])  # fmt: skip
def test_error_kinds(status: int, code: int, message: str, kind: type) -> None:
    e = _err(status, code, message)
    assert type(e) is kind and e.code == str(code) and e.http_status == status


def test_answers_that_are_not_fyers_json() -> None:
    assert type(errors.map_error(503, None, "<html>")) is BrokerUnavailable
    assert type(errors.map_error(502, None, "<html>")) is Ambiguous
    assert type(errors.map_error(429, None, "")) is RateLimited
    assert type(errors.map_error(200, None, "")) is Ambiguous
    assert type(errors.map_error(504, {"detail": "x"}, "")) is Ambiguous


def test_rate_limit_facts_match_brokers_md() -> None:
    text = BROKERS_MD.read_text()
    assert "-429" in text and errors.RATE_LIMIT_TEXT in text


# ----- login and instruments ------------------------------------------------------------------------
def test_login_helpers() -> None:
    import hashlib

    assert login.app_id_hash("ABCD1234-100", "s3") == hashlib.sha256(b"ABCD1234-100:s3").hexdigest()
    assert login.split_app_id("ABCD1234-100") == ("ABCD1234", "100")
    assert login.split_app_id("ABCD1234") == ("ABCD1234", "100")
    assert login.auth_code_from("https://x/cb?s=ok&code=200&auth_code=eyJ.a.b&state=None") == "eyJ.a.b"
    assert login.auth_code_from("https://x/cb?s=ok") is None
    issued = int(datetime(2026, 12, 2, 3, 0, tzinfo=UTC).timestamp() * 1000)
    assert login.token_expiry_ms(issued) == int(datetime(2026, 12, 3, tzinfo=UTC).timestamp() * 1000)


def test_symbol_master_rows() -> None:
    csv_text = (
        "10100000003045,STATE BANK OF INDIA,0,1,0.05,INE062A01020,0915-1530|1815-1915:,1764547200,,NSE:SBIN-EQ,"
        "10,10,3045,SBIN,3045,-1.0,XX,10100000003045,None,0,0.0\n"
        "101000000026000,Nifty 50,10,1,0.05,,0915-1530|1815-1915:,1764547200,,NSE:NIFTY50-INDEX,10,10,26000,"
        "NIFTY50,26000,-1.0,XX,101000000026000,None,0,0.0\n"
        "10100000000212,ASHOKA BUILDCON,0,1,0.01,,,,,NSE:ASHOKA-BE,10,10,212,ASHOKA,212,-1.0,XX,x,None,0,0.0\n"
        "short,row\n"
    )
    got = {i.symbol: i for i in instruments.parse_csv(csv_text)}
    assert got["SBIN"] == Instrument("NSE", "SBIN", "10100000003045", 1, Decimal("0.05"), "STATE BANK OF INDIA",
                                     "EQ", "NSE:SBIN-EQ")  # fmt: skip
    assert got["NIFTY 50"].instrument_type == "INDEX" and got["NIFTY 50"].token == "101000000026000"
    assert got["ASHOKA-BE"].tick_size == Decimal("0.01") and len(got) == 3
