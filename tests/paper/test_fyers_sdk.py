"""The official fyers-apiv3 SDK against the paper broker: login, orders, order book, the data
socket's own parser and the order socket.

The SDK hard-codes its hosts, so each test points it at the paper broker by monkeypatching:
``fyersModel.Config.API`` / ``Config.DATA_API`` (REST), the data socket's name-mangled
``FyersDataSocket._FyersDataSocket__url`` and order socket's ``_FyersOrderSocket__url`` (set on
the instance: the constructor assigns them), ``SymbolConversion.symbols_token_api`` (assigned in
its constructor, so the constructor is wrapped) and ``defines.INDEX_HSM_MAPPING_API``. The SDK's
sockets sleep for fixed times (2 s after connecting, 0.5 s a subscription, 10 s between pings);
their modules' ``time`` is replaced by one whose sleeps last at most 50 ms, and the tests wait for
events instead.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from common.brokers.fyers import login as fyers_login
from devtools.waiting import wait_for
from paper.fyers.encode import NO_VALUE, index_values, symbol_values
from tests.fixtures.paper import PaperBroker, PaperUser, fresh_totp

ROOMY = {"orders": ["1000/s"], "orderbook": ["1000/s"], "other": ["1000/s"], "login": ["1000/s"],
         "quote": ["1000/s"]}  # fmt: skip
APP_ID = "ABCD1234-100"
SBIN = "NSE:SBIN-EQ"
NIFTY = "NSE:NIFTY50-INDEX"


class _QuickTime:
    """The SDK modules' ``time``, with sleeps cut to at most 50 ms."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, 0.05))


@pytest.fixture
def sdk(paper: PaperBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from fyers_apiv3 import fyersModel
    from fyers_apiv3.FyersWebsocket import data_ws, defines, order_ws

    monkeypatch.chdir(tmp_path)  # the SDK writes its log files into the working directory
    monkeypatch.setattr(fyersModel.Config, "API", f"{paper.url}/api/v3")
    monkeypatch.setattr(fyersModel.Config, "DATA_API", f"{paper.url}/data")
    monkeypatch.setattr(defines, "INDEX_HSM_MAPPING_API", f"{paper.url}/sym_details/index_hsm_mapping.json")
    monkeypatch.setattr(data_ws.SymbolConversion, "_index_hsm_mapping_cache", None)
    original = data_ws.SymbolConversion.__init__

    def init(self: Any, *a: Any, **kw: Any) -> None:
        original(self, *a, **kw)
        self.symbols_token_api = f"{paper.url}/data/symbol-token"

    monkeypatch.setattr(data_ws.SymbolConversion, "__init__", init)
    monkeypatch.setattr(data_ws, "time", _QuickTime())
    monkeypatch.setattr(order_ws, "time", _QuickTime())
    yield


def stop_app(app: Any) -> None:
    """End a WebSocketApp's run_forever promptly: closing its socket from another thread can
    leave that thread blocked in select; a shutdown wakes it with an end of stream."""
    if app is None:
        return
    app.keep_running = False
    conn = getattr(app, "sock", None)
    if conn is not None and conn.sock is not None:
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_RDWR)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def auth_code(paper: PaperBroker, user: PaperUser) -> str:
    """The vagator steps and /api/v3/token, as the Fyers docs' headless-login sample does them."""
    http = requests.Session()
    r = http.post(f"{paper.url}/vagator/v2/send_login_otp_v2", json={"fy_id": _b64(user.user_id), "app_id": "2"})
    key = r.json()["request_key"]
    r = http.post(f"{paper.url}/vagator/v2/verify_otp", json={"request_key": key, "otp": fresh_totp(user.totp_secret)})
    key = r.json()["request_key"]
    r = http.post(f"{paper.url}/vagator/v2/verify_pin_v2",
                  json={"request_key": key, "identity_type": "pin", "identifier": _b64(user.password)})
    session = r.json()["data"]["access_token"]
    app_id, app_type = user.api_key.split("-")
    r = http.post(f"{paper.url}/api/v3/token", headers={"Authorization": f"Bearer {session}"}, json={
        "fyers_id": user.user_id, "app_id": app_id, "redirect_uri": "https://example.com/cb", "appType": app_type,
        "code_challenge": "", "state": "None", "scope": "", "nonce": "", "response_type": "code",
        "create_cookie": True,
    }, allow_redirects=False)  # fmt: skip
    assert r.status_code == 308
    return parse_qs(urlparse(r.json()["Url"]).query)["auth_code"][0]


def sdk_login(paper: PaperBroker, user: PaperUser) -> str:
    """The SDK's own token exchange (SessionModel.generate_token, appIdHash and all)."""
    from fyers_apiv3 import fyersModel

    session = fyersModel.SessionModel(client_id=user.api_key, secret_key=user.api_secret,
                                      redirect_uri="https://example.com/cb", response_type="code",
                                      grant_type="authorization_code")  # fmt: skip
    session.set_token(auth_code(paper, user))
    answer = session.generate_token()
    assert answer["s"] == "ok", answer
    return str(answer["access_token"])


@pytest.fixture
def user(paper: PaperBroker) -> PaperUser:
    return paper.add_user(broker="fyers", user_id="XA12345", password="1234", api_key=APP_ID, caps=ROOMY)


def model(user: PaperUser, token: str) -> Any:
    from fyers_apiv3 import fyersModel

    return fyersModel.FyersModel(client_id=user.api_key, token=token, log_path=str(Path.cwd()))


def order(**kw: Any) -> dict[str, Any]:
    body = {"symbol": SBIN, "qty": 1, "type": 1, "side": 1, "productType": "CNC", "limitPrice": 10,
            "stopPrice": 0, "validity": "DAY", "disclosedQty": 0, "offlineOrder": False, "stopLoss": 0,
            "takeProfit": 0, "orderTag": "tag1"}  # fmt: skip
    body.update(kw)
    return body


def test_login_place_modify_cancel_and_order_book(paper: PaperBroker, user: PaperUser, sdk: None) -> None:
    # Given a Fyers user logged in through the vagator steps and the SDK's token exchange
    fyers = model(user, sdk_login(paper, user))
    assert fyers.get_profile()["data"]["fy_id"] == user.user_id
    # When the SDK places a resting and a filled order, modifies and cancels the resting one
    resting = fyers.place_order(order())
    filled = fyers.place_order(order(type=2, limitPrice=0, qty=3, side=-1, orderTag="tag2"))
    assert resting["s"] == "ok" and resting["code"] == 1101 and filled["s"] == "ok"
    modified = fyers.modify_order({"id": resting["id"], "type": 1, "limitPrice": 11, "qty": 2})
    assert modified == {"s": "ok", "code": 1102, "message": "Successfully modified order", "id": resting["id"]}
    cancelled = fyers.cancel_order({"id": resting["id"]})
    assert cancelled["s"] == "ok" and cancelled["id"] == resting["id"]
    # Then the order book has both, with Fyers' status codes and echoed tags
    book = {row["id"]: row for row in fyers.orderbook()["orderBook"]}
    assert book[resting["id"]]["status"] == 1 and book[resting["id"]]["limitPrice"] == 11
    assert book[resting["id"]]["qty"] == 2 and book[resting["id"]]["orderTag"] == "1:tag1"
    assert book[filled["id"]]["status"] == 2 and book[filled["id"]]["filledQty"] == 3
    assert book[filled["id"]]["side"] == -1 and book[filled["id"]]["fyToken"] == "10100000003045"
    assert book[filled["id"]]["symbol"] == SBIN and book[filled["id"]]["tradedPrice"] > 0
    only = fyers.get_orders({"id": filled["id"]})["orderBook"]
    assert [row["id"] for row in only] == [filled["id"]]


def test_errors_and_rate_limit_in_fyers_shapes(paper: PaperBroker, sdk: None) -> None:
    user = paper.add_user(broker="fyers", user_id="XB54321", password="4321", api_key=APP_ID,
                          caps={**ROOMY, "orderbook": ["1/s"]})  # fmt: skip
    token = sdk_login(paper, user)
    fyers = model(user, token)
    assert fyers.place_order(order(symbol="NSE:NOPE-EQ"))["code"] == -300
    assert fyers.place_order(order(side=2))["code"] == -313
    assert fyers.place_order(order(productType="WEIRD"))["code"] == -314
    assert fyers.place_order(order(orderTag="not_alnum!"))["code"] == -50
    assert fyers.place_order(order(limitPrice=10.03))["code"] == -392
    assert fyers.cancel_order({"id": "123"})["code"] == -51
    assert fyers.orderbook()["s"] == "ok"
    assert fyers.orderbook() == {"s": "error", "code": -429, "message": "request limit reached"}
    assert model(user, "nonsense").get_profile()["code"] == -15
    # An expired session is told apart from a wrong token.
    paper.fault(kind="expire_tokens", broker="fyers", user_id=user.user_id)
    assert fyers.get_profile()["code"] == -8
    # A wrong app secret fails the SDK's token exchange with Fyers' appIdHash error.
    from fyers_apiv3 import fyersModel

    session = fyersModel.SessionModel(client_id=user.api_key, secret_key="wrong", grant_type="authorization_code")
    session.set_token(auth_code(paper, user))
    assert session.generate_token()["code"] == -371


def test_our_login_and_the_sdk_share_the_session(paper: PaperBroker, user: PaperUser, sdk: None,
                                                 make_accounts: Any) -> None:  # fmt: skip
    # Our headless login produces a token the SDK accepts as its own.
    from tests.fixtures.accounts import paper_user_of

    account = make_accounts(kite=0, angel=0, fyers=1)["fyers1"]
    fields = fyers_login.login(account)
    assert fields["user_id"] == account.user_id and fields["access_token"].count(".") == 2
    assert model(paper_user_of(account), fields["access_token"]).get_profile()["data"]["fy_id"] == account.user_id


def test_symbol_master_and_symbol_token(paper: PaperBroker, user: PaperUser, sdk: None) -> None:
    text = requests.get(f"{paper.url}/sym_details/NSE_CM.csv", timeout=10).text
    rows = {line.split(",")[9]: line.split(",") for line in text.splitlines()}
    assert rows[SBIN][0] == "10100000003045" and rows["NSE:INFY-EQ"][0] == "10100000001594"
    assert rows["NSE:TCS-EQ"][0] == "101000000011536" and rows[NIFTY][0] == "101000000026000"
    token = sdk_login(paper, user)
    r = requests.post(f"{paper.url}/data/symbol-token", json={"symbols": [SBIN, NIFTY, "NSE:NOPE-EQ"]},
                      headers={"Authorization": token}, timeout=5)  # fmt: skip
    assert r.json() == {"s": "ok", "code": 200, "message": "", "validSymbol": {SBIN: "10100000003045",
                        NIFTY: "101000000026000"}, "invalidSymbol": ["NSE:NOPE-EQ"]}  # fmt: skip


# ----- the data socket ------------------------------------------------------------------------
class Ticks:
    """The paper broker's tick clock, paused, stepped by hand."""

    def __init__(self, paper: PaperBroker) -> None:
        self.paper = paper

    def set(self, **body: Any) -> None:
        self.paper.http.post(f"{self.paper.url}/_paper/ticks", json=body, timeout=10).raise_for_status()

    def last(self, token: str) -> dict[str, Any]:
        r = self.paper.http.get(f"{self.paper.url}/_paper/ticks/last",
                                params={"broker": "fyers", "token": token}, timeout=5)  # fmt: skip
        rows = r.json()
        assert len(rows) == 1, rows
        return dict(rows[0])


@pytest.fixture
def ticks(paper: PaperBroker) -> Iterator[Ticks]:
    t = Ticks(paper)
    t.set(paused=True)
    yield t
    t.set(paused=False)


def _divided(values: list[int], price_fields: set[int], names: list[str], precision: int = 2) -> dict[str, Any]:
    return {names[i]: v / 10**precision if i in price_fields else v for i, v in enumerate(values) if v != NO_VALUE}


SYMBOL_NAMES = ["ltp", "vol_traded_today", "last_traded_time", "exch_feed_time", "bid_size", "ask_size", "bid_price",
                "ask_price", "last_traded_qty", "tot_buy_qty", "tot_sell_qty", "avg_trade_price", "OI", "low_price",
                "high_price", "Yhigh", "Ylow", "lower_ckt", "upper_ckt", "open_price", "prev_close_price"]  # fmt: skip
SYMBOL_PRICES = {0, 6, 7, 11, 13, 14, 19, 20}
INDEX_NAMES = ["ltp", "prev_close_price", "exch_feed_time", "high_price", "low_price", "open_price"]


def expected_symbol(values: dict[str, Any]) -> dict[str, Any]:
    """What the SDK must report for the values the paper broker encoded (its own renaming)."""
    out = _divided(symbol_values(values, 5), SYMBOL_PRICES, SYMBOL_NAMES)
    for gone in ("OI", "Yhigh", "Ylow"):
        out.pop(gone, None)
    out.update(lower_ckt=0, upper_ckt=0, symbol=SBIN, type="sf")
    return out


def expected_index(values: dict[str, Any]) -> dict[str, Any]:
    return {**_divided(index_values(values), {0, 1, 3, 4, 5}, INDEX_NAMES), "symbol": NIFTY, "type": "if"}


class DataSocket:
    """The SDK's FyersDataSocket on the paper broker, its messages collected."""

    def __init__(self, paper: PaperBroker, user: PaperUser, token: str, lite: bool) -> None:
        from fyers_apiv3.FyersWebsocket import data_ws

        self.messages: list[dict[str, Any]] = []
        self.errors: list[Any] = []
        self.lock = threading.Lock()
        self.sock = data_ws.FyersDataSocket(
            access_token=f"{user.api_key}:{token}", litemode=lite, reconnect=False, log_path=str(Path.cwd()),
            on_message=self._on_message, on_error=self.errors.append,
        )  # fmt: skip
        self.sock._FyersDataSocket__url = paper.url.replace("http://", "ws://") + "/hsm/v1-5/prod"

    def _on_message(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.messages.append(dict(message))

    def ticks(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if m.get("type") == kind and "ltp" in m]

    def connect(self, symbols: list[str]) -> None:
        self.sock.connect()
        wait_for(lambda: self.sock.is_connected() and any(m.get("type") == "cn" for m in self.messages), 5)
        self.sock.subscribe(symbols=symbols, data_type="SymbolUpdate")

    def close(self) -> None:
        sock = self.sock
        sock.restart_flag = False
        ws = sock._FyersDataSocket__ws_object
        stop_app(ws)
        sock._FyersDataSocket__ws_object = None
        if sock.message_thread_stop_event is not None:
            sock.message_thread_stop_event.set()
            with sock.message_lock:
                sock.message_condition.notify_all()
        for t in (sock.ws_thread, sock.message_thread, sock.ping_thread):
            if t is not None:
                t.join(5)


@pytest.fixture
def data_socket(paper: PaperBroker, user: PaperUser, sdk: None) -> Iterator[Any]:
    made: list[DataSocket] = []

    def make(lite: bool) -> DataSocket:
        ds = DataSocket(paper, user, sdk_login(paper, user), lite)
        made.append(ds)
        return ds

    yield make
    for ds in made:
        ds.close()


def _subscribed(paper: PaperBroker) -> bool:
    r = paper.http.get(f"{paper.url}/_paper/ticks", timeout=5).json()
    return any(s["broker"] == "fyers" for s in r["sockets"])


def test_data_socket_full_mode_parser_sees_exactly_what_was_sent(
    paper: PaperBroker, ticks: Ticks, data_socket: Any
) -> None:
    # Given the SDK's data socket in full mode, subscribed to a stock and an index
    ds = data_socket(lite=False)
    ds.connect([SBIN, NIFTY])
    assert any(m.get("type") == "ful" for m in ds.messages)
    wait_for(lambda: any(m.get("type") == "sub" for m in ds.messages), 5)
    # When the paper broker's clock steps (a snapshot, then updates with only the changed fields)
    for step in range(1, 6):
        ticks.set(steps=1)
        wait_for(lambda n=step: len(ds.ticks("sf")) >= n and len(ds.ticks("if")) >= 1, 5)
        # Then the SDK's parser reports exactly the values the paper broker encoded
        # (ch and chp are the SDK's own arithmetic on ltp and the previous close)
        got = {k: v for k, v in ds.ticks("sf")[-1].items() if k not in ("ch", "chp")}
        assert got == expected_symbol(ticks.last("3045")["values"])
        index = {k: v for k, v in ds.ticks("if")[-1].items() if k not in ("ch", "chp")}
        assert index == expected_index(ticks.last("Nifty 50")["values"])
    assert len(ds.ticks("sf")) == 5  # one message a step: each update changed something
    assert not ds.errors


def test_data_socket_depth_updates(paper: PaperBroker, ticks: Ticks, data_socket: Any) -> None:
    # Given the SDK's data socket subscribed to SBIN's five-level depth (and its symbol updates)
    ds = data_socket(lite=False)
    ds.connect([SBIN])
    ds.sock.subscribe(symbols=[SBIN], data_type="DepthUpdate")
    wait_for(lambda: sum(m.get("type") == "sub" for m in ds.messages) >= 2, 5)
    for step in range(1, 4):
        ticks.set(steps=1)
        wait_for(lambda n=step: len([m for m in ds.messages if m.get("type") == "dp"]) >= n, 5)
        last = ticks.last("3045")
        assert last["mode"] == "full"
        depth = last["values"]["depth"]
        got = [m for m in ds.messages if m.get("type") == "dp"][-1]
        # Then the SDK reports the depth the paper broker sent, level by level
        for i in range(5):
            buy, sell = depth["buy"][i], depth["sell"][i]
            assert got[f"bid_price{i + 1}"] == buy["price"] / 100 and got[f"ask_price{i + 1}"] == sell["price"] / 100
            assert got[f"bid_size{i + 1}"] == buy["quantity"] and got[f"ask_order{i + 1}"] == sell["orders"]
        assert got["symbol"] == SBIN
    assert not ds.errors


def test_data_socket_lite_mode_reports_last_prices(paper: PaperBroker, ticks: Ticks, data_socket: Any) -> None:
    ds = data_socket(lite=True)
    ds.connect([SBIN])
    wait_for(lambda: any(m.get("type") == "sub" for m in ds.messages), 5)
    seen: list[float] = []
    for _ in range(8):
        ticks.set(steps=1)
        last = ticks.last("3045")
        ltp = last["values"]["last_price"] / 100
        assert last["mode"] == "ltp"
        # the price walk may stay put: then the paper broker sends nothing, and the SDK reports nothing
        if not seen or seen[-1] != ltp:
            seen.append(ltp)
            wait_for(lambda: len(ds.ticks("sf")) == len(seen), 5)
        got = ds.ticks("sf")
        assert [m["ltp"] for m in got] == seen
        assert set(got[-1]) == {"ltp", "symbol", "type"} and got[-1]["symbol"] == SBIN
    assert not ds.errors


def test_data_socket_refuses_a_wrong_hsm_key_and_answers_pings(paper: PaperBroker, user: PaperUser) -> None:
    import websocket

    from common.brokers.fyers import feed

    ws = websocket.create_connection(paper.url.replace("http://", "ws://") + "/hsm/v1-5/prod", timeout=5)
    try:
        ws.send(feed.PING_MESSAGE, websocket.ABNF.OPCODE_BINARY)
        assert ws.recv() == bytes([0, 1, 11])
        ws.send(feed.auth_message("a.b.c"), websocket.ABNF.OPCODE_BINARY)
        refusal = ws.recv()
        assert feed.binary_refusal(refusal) == "authentication failed"
    finally:
        ws.close()


def test_a_data_socket_takes_no_socket_fault_before_it_authenticates(paper: PaperBroker, user: PaperUser,
                                                                   sdk: None) -> None:  # fmt: skip
    """Given a data socket open but not authenticated (the SDK's, between connect and auth), When a
    drop_socket fault for every Fyers user is set, Then that socket does not use it up: it is
    dropped once it has authenticated, and the fault is taken under its user."""
    import websocket

    from common.brokers.fyers import feed
    from paper.sockets import POLL_S

    token = sdk_login(paper, user)
    ws = websocket.create_connection(paper.url.replace("http://", "ws://") + "/hsm/v1-5/prod", timeout=5)
    try:
        paper.fault(kind="drop_socket", broker="fyers", count=1)
        time.sleep(3 * POLL_S)  # three wake-ups of the socket's sender loop (a fault is taken on one)
        for m in feed.login_messages(user.api_key, user.user_id, token, token):
            ws.send(m, websocket.ABNF.OPCODE_BINARY)
        assert feed.binary_refusal(ws.recv()) is None  # authenticated
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while True:
                ws.recv()
        assert paper.faults() == []  # used up
    finally:
        ws.close()


def test_data_socket_holds_data_until_acknowledged(paper: PaperBroker, user: PaperUser, ticks: Ticks,
                                                  sdk: None) -> None:  # fmt: skip
    import websocket

    from common.brokers.fyers import codec, feed
    from paper.fyers import ws as ws_fyers

    # Given a raw client that authenticates and subscribes but never acknowledges
    token = sdk_login(paper, user)
    ws = websocket.create_connection(paper.url.replace("http://", "ws://") + "/hsm/v1-5/prod", timeout=5)
    try:
        tab = feed.update_table(None, {("sf|nse_cm|3045", "10100000003045"): ("NSE", "SBIN")}, {})
        for m in feed.login_messages(user.api_key, user.user_id, token, token):
            ws.send(m, websocket.ABNF.OPCODE_BINARY)
        ws.send(feed.subscribe_messages({"quote": [("sf|nse_cm|3045", "10100000003045")]})[0],
                websocket.ABNF.OPCODE_BINARY)  # fmt: skip
        acks: list[bytes] = []
        numbers: list[int] = []
        answer = b""
        while answer[2:3] != bytes([feed.SUBSCRIBE]):  # stepping before the subscription is in sends nothing
            answer = ws.recv()
            acks.extend(feed.reply_to(answer, tab))  # (the auth answer sets the acknowledgement interval)

        def next_data_frame() -> bytes:
            while True:  # (pings are not sent: nothing else comes)
                frame = ws.recv()
                acks.extend(feed.reply_to(frame, tab))
                if frame[2] == codec.DATA_FEED:
                    return bytes(frame)

        # When the paper broker has sent MAX_UNACKED data frames
        for _ in range(ws_fyers.MAX_UNACKED):
            ticks.set(steps=1)
            numbers.append(struct.unpack_from(">I", next_data_frame(), 3)[0])
        assert numbers == list(range(1, ws_fyers.MAX_UNACKED + 1)) and len(acks) == 3
        # Then the next step is held back, until the client acknowledges
        ticks.set(steps=1)
        wait_for(lambda: ticks.last("3045")["held"] >= 1, 5)
        ws.send(acks[-1], websocket.ABNF.OPCODE_BINARY)
        # The step is asked over HTTP, the acknowledgement went over the socket: the socket's pong
        # (answered in order) shows the acknowledgement was taken before the step is asked.
        ws.send(feed.PING_MESSAGE, websocket.ABNF.OPCODE_BINARY)
        while ws.recv()[:3] != feed.PING_MESSAGE:
            pass
        ticks.set(steps=1)
        assert struct.unpack_from(">I", next_data_frame(), 3)[0] == ws_fyers.MAX_UNACKED + 1
    finally:
        ws.close()


# ----- the order socket -----------------------------------------------------------------------
def test_order_socket_pushes_order_events(paper: PaperBroker, user: PaperUser, sdk: None) -> None:
    from fyers_apiv3.FyersWebsocket import order_ws

    token = sdk_login(paper, user)
    orders: list[dict[str, Any]] = []
    general: list[Any] = []
    sock = order_ws.FyersOrderSocket(access_token=f"{user.api_key}:{token}", reconnect=False,
                                     log_path=str(Path.cwd()), on_orders=orders.append,
                                     on_general=general.append, on_close=lambda _m: None)  # fmt: skip
    sock._FyersOrderSocket__url = paper.url.replace("http://", "ws://") + "/trade/v3"
    try:
        sock.connect()
        wait_for(sock.is_connected, 5)
        sock.subscribe(data_type="OnOrders")
        wait_for(lambda: general, 5)
        assert general[0]["s"] == "ok"
        placed = model(user, token).place_order(order(type=2, limitPrice=0, orderTag="pushme"))
        # The SDK maps the raw names itself: what arrives is what an order-book row has.
        done = wait_for(lambda: [o for o in orders if o["orders"].get("status") == 2], 5)
        row = done[0]["orders"]
        assert row["id"] == placed["id"] and row["orderTag"] == "1:pushme" and row["filledQty"] == 1
        assert row["symbol"] == SBIN and row["side"] == 1
        assert [o["orders"]["status"] for o in orders] == [6, 2]
    finally:
        sock.restart_flag = False
        stop_app(sock._FyersOrderSocket__ws_object)
        sock._FyersOrderSocket__ws_object = None
        for t in (getattr(sock, "t", None), sock.ping_thread):
            if t is not None:
                t.join(5)


def test_order_socket_refuses_a_bad_token(paper: PaperBroker, user: PaperUser) -> None:
    import websocket

    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(paper.url.replace("http://", "ws://") + "/trade/v3",
                                    header=[f"authorization: {APP_ID}:nonsense"], timeout=5)  # fmt: skip
