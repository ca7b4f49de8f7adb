"""The official smartapi-python client works against the paper broker by changing only its root."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.paper import PaperBroker, PaperUser, angel_session

# The SDK sets deprecated TLS options at construction; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:ssl.OP_NO:DeprecationWarning")

ROOMY = {"orders": ["1000/s"], "orderbook": ["1000/s"], "other": ["1000/s"], "login": ["1000/s"]}


@pytest.fixture(autouse=True)
def _sdk_logs_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # SmartConnect() creates ./logs/<date>/app.log in the working directory.
    monkeypatch.chdir(tmp_path)
    yield


def smart(paper: PaperBroker, user: PaperUser) -> Any:
    return angel_session(paper, user)


def order_params(**kw: Any) -> dict[str, Any]:
    params = {
        "variety": "NORMAL",
        "tradingsymbol": "SBIN-EQ",
        "symboltoken": "3045",
        "transactiontype": "BUY",
        "exchange": "NSE",
        "ordertype": "LIMIT",
        "producttype": "DELIVERY",
        "duration": "DAY",
        "price": "10",
        "quantity": "1",
    }
    params.update(kw)
    return params


def test_login_place_cancel_and_order_book(paper: PaperBroker) -> None:
    # Given an Angel user
    user = paper.add_user(broker="angel", caps=ROOMY)
    # When the SDK logs in with client code, MPIN and TOTP
    client = smart(paper, user)
    assert client.userId == user.user_id and client.getfeedToken()
    # Then it can place (resting and filled), cancel, and read the books
    resting = client.placeOrder(order_params(ordertag="angel1"))
    # Angel refuses MARKET orders from the API (2026 rules): a marketable LIMIT fills at once.
    filled = client.placeOrder(order_params(price="900", quantity="3"))
    assert resting and filled
    cancelled = client.cancelOrder(resting, "NORMAL")
    assert cancelled["status"] is True and cancelled["data"]["orderid"] == resting

    book = {row["orderid"]: row for row in client.orderBook()["data"]}
    assert book[resting]["orderstatus"] == "cancelled" and book[resting]["ordertag"] == "angel1"
    assert book[filled]["orderstatus"] == "complete" and book[filled]["filledshares"] == "3"
    assert book[filled]["tradingsymbol"] == "SBIN-EQ" and book[filled]["symboltoken"] == "3045"
    trades = client.tradeBook()["data"]
    assert [t["orderid"] for t in trades] == [filled] and trades[0]["fillsize"] == "3"

    # details/{uniqueorderid}
    r = requests.get(
        f"{paper.url}/rest/secure/angelbroking/order/v1/details/{book[resting]['uniqueorderid']}",
        headers={"Authorization": f"Bearer {client.access_token}", "X-PrivateKey": user.api_key},
        timeout=5,
    )
    assert r.json()["data"]["orderid"] == resting

    # modify a fresh resting order
    again = client.placeOrder(order_params())
    modified = client.modifyOrder(order_params(orderid=again, price="11", quantity="2"))
    assert modified["status"] is True
    row = next(r for r in client.orderBook()["data"] if r["orderid"] == again)
    assert row["price"] == 11.0 and row["quantity"] == "2" and row["orderstatus"] == "open"


def test_errors_use_ab_and_ag_codes(paper: PaperBroker) -> None:
    from SmartApi import SmartConnect

    user = paper.add_user(broker="angel", caps=ROOMY)
    bad_login = SmartConnect(api_key=user.api_key, root=paper.url).generateSession(user.user_id, "0000", "123456")
    assert bad_login["status"] is False and bad_login["errorcode"].startswith("AB")
    client = smart(paper, user)
    bad = client.placeOrderFullResponse(order_params(variety="WEIRD"))
    assert bad == {"status": False, "message": "Invalid Order Variety", "errorcode": "AB1008", "data": None}
    unknown = client.placeOrderFullResponse(order_params(symboltoken="999999999", tradingsymbol="NOPE-EQ"))
    assert unknown["errorcode"] == "AB1009"
    missing = client.cancelOrder("123", "NORMAL")
    assert missing["errorcode"] == "AB1013"

    headers = {"X-PrivateKey": user.api_key, "Content-Type": "application/json"}
    url = f"{paper.url}/rest/secure/angelbroking/order/v1/getOrderBook"
    r = requests.get(url, headers=headers, timeout=5)
    assert r.status_code == 401 and r.json()["errorCode"] == "AG8003" and r.json()["success"] is False
    r = requests.get(url, headers={**headers, "Authorization": "Bearer nonsense"}, timeout=5)
    assert r.json()["errorCode"] == "AG8001"
    # After logout the old token is reported as expired.
    token = client.access_token
    assert client.terminateSession(user.user_id)["status"] is True
    r = requests.get(url, headers={**headers, "Authorization": f"Bearer {token}"}, timeout=5)
    assert r.json()["errorCode"] == "AG8002"


def test_jwt_accepted_with_and_without_bearer_prefix_and_refresh(paper: PaperBroker) -> None:
    user = paper.add_user(broker="angel", caps=ROOMY)
    client = smart(paper, user)
    url = f"{paper.url}/rest/secure/angelbroking/user/v1/getProfile"
    for auth in (client.access_token, f"Bearer {client.access_token}"):
        r = requests.get(url, headers={"Authorization": auth, "X-PrivateKey": user.api_key}, timeout=5)
        assert r.json()["data"]["clientcode"] == user.user_id
    old = client.access_token
    renewed = client.generateToken(client.refresh_token)
    assert renewed["status"] is True and client.access_token != old
    assert client.getProfile(client.refresh_token)["status"] is True


def test_order_book_cap_is_403_plain_text(paper: PaperBroker) -> None:
    from SmartApi import smartExceptions

    user = paper.add_user(broker="angel", caps={"orderbook": ["1/s"]})
    client = smart(paper, user)
    assert client.orderBook()["data"] is None  # an empty book is null, as at Angel
    with pytest.raises(smartExceptions.DataException):
        client.orderBook()  # 403 text/plain: the SDK cannot parse it
    r = requests.get(
        f"{paper.url}/rest/secure/angelbroking/order/v1/getOrderBook",
        headers={"Authorization": f"Bearer {client.access_token}", "X-PrivateKey": user.api_key},
        timeout=5,
    )
    assert r.status_code == 403 and r.text == "Access denied because of exceeding access rate"


def test_scrip_master_has_real_tokens_and_paise_tick_size(paper: PaperBroker) -> None:
    rows = requests.get(f"{paper.url}/OpenAPI_File/files/OpenAPIScripMaster.json", timeout=10).json()
    by_symbol = {r["symbol"]: r for r in rows}
    assert by_symbol["INFY-EQ"]["token"] == "1594" and by_symbol["SBIN-EQ"]["token"] == "3045"
    assert by_symbol["RELIANCE-EQ"]["token"] == "2885" and by_symbol["TCS-EQ"]["token"] == "11536"
    assert by_symbol["HDFCBANK-EQ"]["token"] == "1333" and by_symbol["Nifty 50"]["token"] == "99926000"
    assert by_symbol["INFY-EQ"]["tick_size"] == "5.000000" and by_symbol["INFY-EQ"]["exch_seg"] == "NSE"
    assert set(rows[0]) == {"token", "symbol", "name", "expiry", "strike", "lotsize", "instrumenttype",
                            "exch_seg", "tick_size"}
