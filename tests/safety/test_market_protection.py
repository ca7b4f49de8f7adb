"""MARKET and SL-M orders under the 2026 retail-algo rules (issue #18; docs/brokers.md § "The 2026
retail-algo rules, as the brokers enforce them"). Each broker's policy is ``BrokerSpec.market_orders``:
Kite takes them only with ``market_protection`` (brokergate always sends it), Fyers protects them
itself (sent as they are), Angel and Shoonya refuse them from API clients (brokergate refuses them
at the client, naming ``order_type``). The paper broker enforces the same rules, in each broker's own
answer, and counts every refusal: brokergate's orders must trip none."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from kiteconnect import exceptions as kex

from common import keys, orderstore
from common.brokers import BrokerSpec, market_orders, spec_for
from common.brokers.angel import errors as angel_errors
from common.brokers.kite import translate as kite_translate
from common.brokers.shoonya import errors as shoonya_errors
from common.client import modify_order, place_order
from common.errors import ConfigError, InvalidOrder, OrderRejected
from common.models import Order
from common.redis import get_redis
from devtools.paperbroker import PaperBroker
from tests.brokers import ready
from tests.fixtures.accounts import account_toml, paper_user_of
from tests.fixtures.paper import angel_session, fresh_totp, kite_session
from tests.orders.helpers import order_requests

ROOMY = {"orders": ["1000/s"], "orderbook": ["1000/s"], "other": ["1000/s"], "login": ["1000/s"]}
KITE_REFUSAL = ("Market orders without market protection are not allowed via API. "
                "Please set market protection or use a Limit order.")
NOREN_REFUSAL = "Rejected : ALGO_CHK: MKT Order type not allowed for API order"
INFY = {"exchange": "NSE", "symbol": "INFY", "quantity": 1}
SL_M_BUY = {"order_type": "SL-M", "trigger_price": "5000.00"}  # far above INFY's ~1570: it rests


@pytest.fixture
def _sdk_logs_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # SmartConnect() writes ./logs/<date>/app.log
    yield


# --- through brokergate: every broker -------------------------------------------------------------
@pytest.mark.slow
def test_market_and_sl_m_orders_reach_the_broker_protected_or_are_refused_at_the_client(
        make_account: Any, celery_workers: Any, paper: PaperBroker) -> None:  # fmt: skip
    """Given an account of each broker, When a strategy places a MARKET and an SL-M order and
    modifies a resting LIMIT order into a MARKET one, Then where the broker takes them they reach
    it (with the protection it asks for) and fill or rest there; where it refuses them the client
    refuses them first, naming order_type, and nothing is stored or sent; the paper broker refused
    nothing under a rule."""
    acct = ready(make_account(caps={"orders": ["10/s"]}))
    user = paper_user_of(acct).user_id
    celery_workers.start([keys.urgent_queue(acct.name), keys.orders_queue(acct.name)])
    policy = market_orders(spec_for(acct.broker), acct.extra)
    if policy == "refused":
        for extra in ({}, SL_M_BUY):
            with pytest.raises(InvalidOrder) as e:
                place_order(account=acct.name, side="BUY", **INFY, **extra)
            assert e.value.field == "order_type" and "LIMIT" in e.value.reason
        resting = place_order(account=acct.name, side="BUY", order_type="LIMIT", price="10.00", **INFY)
        assert resting.wait(15)["state"] == "OPEN"
        with pytest.raises(InvalidOrder) as e:
            modify_order(resting.id, order_type="MARKET", price=None)
        assert e.value.field == "order_type"
        assert [x["tag"] for x in order_requests(paper.requests(), user)] == [resting.id]
        assert orderstore.account_order_ids(get_redis(), acct.name, None) == [resting.id]  # refused: never stored
    else:
        market = place_order(account=acct.name, side="BUY", **INFY)
        stop = place_order(account=acct.name, side="BUY", **INFY, **SL_M_BUY)
        resting = place_order(account=acct.name, side="BUY", order_type="LIMIT", price="10.00", **INFY)
        assert market.wait(15)["state"] in ("OPEN", "COMPLETE") and stop.wait(15)["state"] == "OPEN"
        assert resting.wait(15)["state"] == "OPEN"
        modify_order(resting.id, order_type="MARKET", price=None)

        def at_broker() -> dict[str, tuple[str, str]]:
            return {o["tag"]: (o["order_type"], o["status"]) for o in paper.orders() if o["user_id"] == user}

        # The modify made it a MARKET order at the broker, which filled it (no update socket here).
        paper.wait_for(lambda: at_broker()[resting.id] == ("MARKET", "COMPLETE"), timeout_s=15)
        assert at_broker()[market.id] == ("MARKET", "COMPLETE")
        assert at_broker()[stop.id] == ("SL-M", "TRIGGER PENDING")
    assert paper.rule_rejections() == {}


@pytest.mark.trips_rules
@pytest.mark.slow
def test_an_account_may_send_them_plain_and_the_brokers_refusal_is_a_rejection(
        make_accounts: Any, celery_workers: Any, paper: PaperBroker) -> None:  # fmt: skip
    """Given an Angel account whose operator says its Angel takes market orders
    (``extra.market_orders = "plain"``), When its broker refuses one after all, Then the order ends
    REJECTED with Angel's own message (an OrderRejected: never retried), and the paper broker
    counted the one rule refusal."""
    acct = ready(make_accounts(kite=0, angel=1, extra={"market_orders": "plain"})["angel1"])
    celery_workers.start([keys.urgent_queue(acct.name), keys.orders_queue(acct.name)])
    got = place_order(account=acct.name, side="BUY", **INFY).wait(15)
    assert got["state"] == "REJECTED" and "prohibited for algorithmic trading" in got["error"], got
    assert paper.rule_rejections() == {"market_protection": 1}


# --- straight to the paper broker: each broker's own refusal --------------------------------------
@pytest.mark.trips_rules
def test_kite_refuses_market_and_sl_m_without_market_protection(paper: PaperBroker) -> None:
    """The official kiteconnect client, at the paper broker: a MARKET or SL-M order without
    market_protection (or with 0) is Kite's InputException; with -1 or a percentage it is taken, and
    a modify into MARKET needs it too."""
    kite = kite_session(paper, paper.add_user(broker="kite", caps=ROOMY))
    base = {"variety": "regular", "exchange": "NSE", "tradingsymbol": "INFY", "transaction_type": "BUY",
            "quantity": 1, "product": "CNC"}
    for kw in ({"order_type": "MARKET"}, {"order_type": "MARKET", "market_protection": 0},
               {"order_type": "SL-M", "trigger_price": 5000}, {"order_type": "MARKET", "market_protection": 101}):
        with pytest.raises(kex.InputException, match="without market protection"):
            kite.place_order(**base, **kw)
    assert kite.place_order(**base, order_type="MARKET", market_protection=-1)
    assert kite.place_order(**base, order_type="SL-M", trigger_price=5000, market_protection=2.5)
    resting = kite.place_order(**base, order_type="LIMIT", price=10)
    with pytest.raises(kex.InputException) as e:
        kite.modify_order("regular", resting, order_type="MARKET")
    assert str(e.value) == KITE_REFUSAL
    assert kite.modify_order("regular", resting, order_type="MARKET", market_protection=-1) == resting
    assert paper.rule_rejections() == {"market_protection": 5}


def test_kite_translation_sends_market_protection_on_place_and_modify() -> None:
    market = Order(account="k", side="BUY", **INFY)
    stop = Order(account="k", side="BUY", **INFY, **SL_M_BUY)
    limit = Order(account="k", side="BUY", order_type="LIMIT", price="10", **INFY)
    for o in (market, stop):
        assert kite_translate.order_form(o)["market_protection"] == "-1"
        assert kite_translate.modify_form(o)["market_protection"] == "-1"
    assert "market_protection" not in kite_translate.order_form(limit)
    assert "market_protection" not in kite_translate.modify_form(limit)


@pytest.mark.trips_rules
@pytest.mark.usefixtures("_sdk_logs_in_tmp")
def test_angel_refuses_market_and_stoploss_market_orders(paper: PaperBroker) -> None:
    """The official SmartConnect client, at the paper broker: MARKET and STOPLOSS_MARKET are refused
    in Angel's business-error shape, on place and on modify; brokergate reads that answer as an
    OrderRejected carrying Angel's message."""
    client = angel_session(paper, paper.add_user(broker="angel", caps=ROOMY))
    base = {"variety": "NORMAL", "tradingsymbol": "INFY-EQ", "symboltoken": "1594", "transactiontype": "BUY",
            "exchange": "NSE", "producttype": "DELIVERY", "duration": "DAY", "quantity": "1"}
    market = client.placeOrderFullResponse({**base, "ordertype": "MARKET", "price": "0"})
    stop = client.placeOrderFullResponse({**base, "variety": "STOPLOSS", "ordertype": "STOPLOSS_MARKET",
                                          "price": "0", "triggerprice": "5000"})
    for answer in (market, stop):
        assert answer["status"] is False and answer["errorcode"] == "AB4008" and answer["data"] is None
    error = angel_errors.map_error(200, market)
    assert isinstance(error, OrderRejected) and "prohibited for algorithmic trading" in str(error)
    resting = client.placeOrder({**base, "ordertype": "LIMIT", "price": "10"})
    modified = client.modifyOrder({**base, "orderid": resting, "ordertype": "MARKET", "price": "0"})
    assert modified["status"] is False and modified["errorcode"] == "AB4008"
    assert paper.rule_rejections() == {"market_protection": 3}


@pytest.mark.trips_rules
def test_shoonya_refuses_mkt_and_sl_mkt_price_types(paper: PaperBroker) -> None:
    """NorenApi at the paper broker: MKT and SL-MKT are refused with Noren's ALGO_CHK answer (the
    SDK returns None for it), on place and on modify; brokergate reads it as an OrderRejected."""
    from NorenRestApiPy.NorenApi import NorenApi

    user = paper.add_user(broker="shoonya", user_id="FA54321", api_key="FA54321_U", caps=ROOMY)
    api = NorenApi(host=f"{paper.url}/NorenWClientTP/", websocket="ws://unused/")
    assert api.login(userid=user.user_id, password=user.password, twoFA=fresh_totp(user.totp_secret),
                     vendor_code=user.api_key, api_secret=user.api_secret, imei="abc1234")  # fmt: skip
    base = {"buy_or_sell": "B", "product_type": "C", "exchange": "NSE", "tradingsymbol": "INFY-EQ", "quantity": 1,
            "discloseqty": 0}
    assert api.place_order(**base, price_type="MKT") is None
    assert api.place_order(**base, price_type="SL-MKT", trigger_price=5000) is None
    key = api._NorenApi__susertoken
    raw = "jData=" + json.dumps({"uid": user.user_id, "actid": user.user_id, "trantype": "B", "prd": "C",
                                 "exch": "NSE", "tsym": "INFY-EQ", "qty": "1", "prctyp": "MKT", "prc": "0",
                                 "ret": "DAY"}) + f"&jKey={key}"
    answer = requests.post(f"{paper.url}/NorenWClientTP/PlaceOrder", data=raw, timeout=5)
    assert answer.status_code == 200 and answer.json()["stat"] == "Not_Ok" and answer.json()["emsg"] == NOREN_REFUSAL
    error = shoonya_errors.map_error(200, answer.json())
    assert isinstance(error, OrderRejected) and "ALGO_CHK" in str(error)
    resting = api.place_order(**base, price_type="LMT", price=10)
    assert api.modify_order(orderno=resting["norenordno"], exchange="NSE", tradingsymbol="INFY-EQ", newquantity=1,
                            newprice_type="MKT") is None  # fmt: skip
    assert paper.rule_rejections() == {"market_protection": 4}


# --- the policy and its per-account override -----------------------------------------------------
@pytest.mark.parametrize(("broker", "expected"), [("kite", "protected"), ("fyers", "plain"), ("angel", "refused"),
                                                  ("shoonya", "refused")])
def test_each_brokers_policy_is_in_its_spec(broker: str, expected: str) -> None:
    assert spec_for(broker).market_orders == expected


def test_an_account_can_refuse_them_or_send_them_plain_where_its_broker_refuses_them() -> None:
    refusing, protecting = BrokerSpec("x", "", "", ""), BrokerSpec("y", "", "", "", market_orders="protected")
    assert market_orders(refusing, {}) == "refused" and market_orders(refusing, {"market_orders": "plain"}) == "plain"
    assert market_orders(protecting, {"market_orders": "refused"}) == "refused"
    for spec, value in ((protecting, "plain"), (refusing, "protected"), (refusing, "yes")):
        with pytest.raises(ValueError, match="market_orders"):
            market_orders(spec, {"market_orders": value})


def test_a_market_orders_setting_the_broker_cannot_honour_is_a_startup_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from common import settings as bg_settings

    path = tmp_path / "accounts.toml"
    path.write_text(account_toml("kite1", extra={"market_orders": "plain"}))
    monkeypatch.setenv("BROKERGATE_ACCOUNTS", str(path))
    bg_settings.settings.cache_clear()
    bg_settings.accounts.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"kite1\.extra\.market_orders"):
            bg_settings.accounts()
    finally:
        bg_settings.settings.cache_clear()
        bg_settings.accounts.cache_clear()
