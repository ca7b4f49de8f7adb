"""The official kiteconnect client works against the paper broker by changing only its root."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from tests.fixtures.paper import PaperBroker, fresh_totp, kite_session, kite_web_login
from tests.paths import KITE_FIXTURES

FIXTURES = KITE_FIXTURES
ROOMY = {"orders": ["1000/s"], "orderbook": ["1000/s"], "other": ["1000/s"], "login": ["1000/s"],
         "quote": ["1000/s"]}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def common_keys(items: list[dict[str, Any]]) -> set[str]:
    keys = set(items[0])
    for item in items[1:]:
        keys &= set(item)
    return keys


def place_limit(kite: KiteConnect, price: float, **kw: Any) -> str:
    params: dict[str, Any] = {
        "variety": "regular",
        "exchange": "NSE",
        "tradingsymbol": "INFY",
        "transaction_type": "BUY",
        "quantity": 1,
        "product": "CNC",
        "order_type": "LIMIT",
        "price": price,
    }
    params.update(kw)
    return str(kite.place_order(**params))


def test_generate_session_after_headless_login_matches_fixture(paper: PaperBroker) -> None:
    # Given a Kite user at the paper broker
    user = paper.add_user(broker="kite", caps=ROOMY)
    kite = KiteConnect(api_key=user.api_key, root=paper.url)
    # When the headless web login yields a request_token and the SDK exchanges it
    request_token = kite_web_login(paper.url, user.user_id, user.password, user.totp_secret, user.api_key)
    session = kite.generate_session(request_token, api_secret=user.api_secret)
    # Then the session has the fixture's keys and the token works
    assert set(fixture("generate_session.json")["data"]) <= set(session)
    assert session["user_id"] == user.user_id
    assert set(fixture("profile.json")["data"]) <= set(kite.profile())
    # and a request_token is single-use
    with pytest.raises(kex.TokenException):
        kite.generate_session(request_token, api_secret=user.api_secret)


def test_login_errors_are_kite_errors(paper: PaperBroker) -> None:
    user = paper.add_user(broker="kite", caps=ROOMY)
    r = requests.post(f"{paper.url}/api/login", data={"user_id": user.user_id, "password": "wrong"}, timeout=5)
    assert r.status_code == 400 and r.json()["error_type"] == "InputException"
    r = requests.post(f"{paper.url}/api/login", data={"user_id": user.user_id, "password": user.password}, timeout=5)
    request_id = r.json()["data"]["request_id"]
    assert r.json()["data"]["twofa_type"] == "totp"
    good = fresh_totp(user.totp_secret)
    bad = f"{(int(good) + 1) % 1_000_000:06d}"
    r = requests.post(
        f"{paper.url}/api/twofa",
        data={"user_id": user.user_id, "request_id": request_id, "twofa_value": bad, "twofa_type": "totp"},
        timeout=5,
    )
    assert r.status_code == 400 and r.json()["status"] == "error"
    # A wrong api_secret gives a wrong checksum: TokenException.
    token = kite_web_login(paper.url, user.user_id, user.password, user.totp_secret, user.api_key)
    kite = KiteConnect(api_key=user.api_key, root=paper.url)
    with pytest.raises(kex.TokenException):
        kite.generate_session(token, api_secret="not-the-secret")


def test_place_modify_cancel_and_books_match_fixtures(paper: PaperBroker) -> None:
    user = paper.add_user(broker="kite", caps=ROOMY)
    kite = kite_session(paper, user)
    # A marketable order fills at once; a low limit rests OPEN.
    filled = str(kite.place_order(variety="regular", exchange="NSE", tradingsymbol="SBIN", transaction_type="BUY",
                                  quantity=2, product="CNC", order_type="MARKET", market_protection=-1, tag="mkt1"))
    resting = place_limit(kite, 10, tag="lim1")
    assert kite.modify_order("regular", resting, price=10.5, quantity=3) == resting
    assert kite.cancel_order("regular", resting) == resting

    orders = {o["order_id"]: o for o in kite.orders()}
    assert common_keys(fixture("orders.json")["data"]) <= set(orders[filled])
    assert orders[filled]["status"] == "COMPLETE" and orders[filled]["filled_quantity"] == 2
    assert orders[filled]["average_price"] > 0 and orders[filled]["tag"] == "mkt1"
    assert orders[resting]["status"] == "CANCELLED" and orders[resting]["price"] == 10.5
    assert orders[resting]["quantity"] == 3 and orders[resting]["cancelled_quantity"] == 3

    history = kite.order_history(resting)
    assert common_keys(fixture("order_info.json")["data"]) <= set(history[0])
    statuses = [h["status"] for h in history]
    assert statuses[0] == "PUT ORDER REQ RECEIVED" and "OPEN" in statuses and statuses[-1] == "CANCELLED"

    trades = kite.trades()
    assert [t["order_id"] for t in trades] == [filled]
    assert set(trades[0]) == set(fixture("trades.json")["data"][0])
    assert set(kite.order_trades(filled)[0]) == set(fixture("order_trades.json")["data"][0])
    assert kite.order_trades(resting) == []

    # The log carries the tag of every order request.
    logged = [(e["endpoint_class"], e["method"], e["tag"]) for e in paper.requests() if e["endpoint_class"] == "orders"]
    assert logged == [("orders", "POST", "mkt1"), ("orders", "POST", "lim1"), ("orders", "PUT", "lim1"),
                      ("orders", "DELETE", "lim1")]


def test_order_response_shape_matches_fixture(paper: PaperBroker) -> None:
    user = paper.add_user(broker="kite", caps=ROOMY)
    kite = kite_session(paper, user)
    r = requests.post(
        f"{paper.url}/orders/regular",
        data={"exchange": "NSE", "tradingsymbol": "TCS", "transaction_type": "SELL", "quantity": 1,
              "product": "MIS", "order_type": "LIMIT", "price": 99999},
        headers={"X-Kite-Version": "3", "Authorization": f"token {user.api_key}:{kite.access_token}"},
        timeout=5,
    )
    assert r.status_code == 200
    assert set(r.json()) == set(fixture("order_response.json"))
    assert set(r.json()["data"]) == set(fixture("order_response.json")["data"])


def test_invalid_orders_raise_input_exception_and_count_against_cap(paper: PaperBroker) -> None:
    user = paper.add_user(broker="kite", caps=ROOMY)
    kite = kite_session(paper, user)
    with pytest.raises(kex.InputException):
        kite.place_order(variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="HOLD",
                         quantity=1, product="CNC", order_type="MARKET", market_protection=-1)
    with pytest.raises(kex.InputException):
        place_limit(kite, 10, tradingsymbol="NOSUCHSYMBOL")
    with pytest.raises(kex.InputException):
        place_limit(kite, 10, tag="not-alnum!")
    with pytest.raises(kex.InputException):
        place_limit(kite, 0)  # LIMIT without a price
    # A price off the tick grid is accepted, then REJECTED by the exchange, as at Kite.
    rejected = place_limit(kite, 10.03)
    (order,) = [o for o in kite.orders() if o["order_id"] == rejected]
    assert order["status"] == "REJECTED" and "tick size" in order["status_message"]
    # Modify/cancel of a finished order is an OrderException.
    with pytest.raises(kex.OrderException):
        kite.cancel_order("regular", rejected)
    statuses = [e["status"] for e in paper.requests() if e["endpoint_class"] == "orders"]
    assert statuses == [400, 400, 400, 400, 200, 400]


def test_burst_over_cap_is_429_too_many_requests(paper: PaperBroker) -> None:
    user = paper.add_user(broker="kite", caps={"orders": ["5/s", "400/min"]})
    kite = kite_session(paper, user)
    placed = [place_limit(kite, 10) for _ in range(5)]
    with pytest.raises(kex.NetworkException, match="Too many requests"):
        place_limit(kite, 10)
    assert len(placed) == 5
    statuses = [e["status"] for e in paper.requests() if e["endpoint_class"] == "orders"]
    assert statuses == [200] * 5 + [429]


def test_expired_or_invalidated_token_is_token_exception(paper: PaperBroker) -> None:
    user = paper.add_user(broker="kite", caps=ROOMY)
    kite = kite_session(paper, user)
    kite.orders()
    kite.invalidate_access_token()
    with pytest.raises(kex.TokenException):
        kite.orders()
    r = requests.get(f"{paper.url}/orders", headers={"X-Kite-Version": "3"}, timeout=5)
    assert r.status_code == 403 and r.json()["error_type"] == "TokenException"


def test_instruments_csv_has_exact_columns_and_real_tokens(paper: PaperBroker) -> None:
    user = paper.add_user(broker="kite", caps=ROOMY)
    kite = kite_session(paper, user)
    rows = kite.instruments()
    nse = kite.instruments("NSE")
    assert len(nse) == sum(1 for r in rows if r["exchange"] == "NSE")  # the dump also has BSE, NFO, BFO
    by_symbol = {r["tradingsymbol"]: r for r in rows}
    for symbol, token in [("INFY", 408065), ("SBIN", 779521), ("RELIANCE", 738561), ("TCS", 2953217),
                          ("HDFCBANK", 341249), ("NIFTY 50", 256265)]:
        assert by_symbol[symbol]["instrument_token"] == token
    assert by_symbol["NIFTY 50"]["instrument_token"] & 0xFF == 9
    tradable = [r for r in rows if r["segment"] == "NSE"]
    assert len(tradable) >= 9000
    assert all(r["instrument_token"] & 0xFF == 1 for r in tradable)
    assert len({r["instrument_token"] for r in rows}) == len(rows)
    fixture_rows = list(csv.DictReader(io.StringIO((FIXTURES / "instruments_nse.csv").read_text())))
    assert {r["tradingsymbol"] for r in fixture_rows} <= set(by_symbol)
    raw = requests.get(f"{paper.url}/instruments", timeout=5)
    assert "csv" in raw.headers["content-type"]
    header = raw.text.splitlines()[0]
    assert header == (FIXTURES / "instruments_nse.csv").read_text().splitlines()[0]



def test_quotes_move_on_the_tick_grid(paper: PaperBroker) -> None:
    user = paper.add_user(broker="kite", caps=ROOMY)
    kite = kite_session(paper, user)
    full = kite.quote(["NSE:INFY", "NSE:NIFTY 50"])
    assert full["NSE:INFY"]["instrument_token"] == 408065 and len(full["NSE:INFY"]["depth"]["buy"]) == 5
    prices = [kite.ltp("NSE:INFY")["NSE:INFY"]["last_price"] for _ in range(5)]
    assert all(round(p * 100) % 5 == 0 for p in prices)
    assert set(kite.ohlc("NSE:SBIN")["NSE:SBIN"]["ohlc"]) == {"open", "high", "low", "close"}
    assert {e["endpoint_class"] for e in paper.requests() if e["path"].startswith("/quote")} == {"quote"}
