"""The official NorenRestApiPy client (NorenApi) works against the paper broker by changing only its
host and WebSocket URL (both are constructor arguments: no monkeypatching needed)."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from common.brokers.shoonya import codec
from common.brokers.shoonya import feed as dialect
from devtools.waiting import wait_for
from tests.fixtures.paper import PaperBroker, PaperUser, fresh_totp

ROOMY = {"orders": ["1000/s"], "orderbook": ["1000/s"], "other": ["1000/s"], "login": ["1000/s"]}


def shoonya_user(paper: PaperBroker, **kw: Any) -> PaperUser:
    kw.setdefault("caps", ROOMY)
    return paper.add_user(broker="shoonya", user_id="FA12345", api_key="FA12345_U", **kw)


def noren(paper: PaperBroker, user: PaperUser) -> Any:
    """A NorenApi logged in as ``user``; the host with a trailing slash, as Finvasia's examples."""
    from NorenRestApiPy.NorenApi import NorenApi

    api = NorenApi(host=f"{paper.url}/NorenWClientTP/", websocket=paper.url.replace("http", "ws", 1) + "/NorenWSTP/")
    res = api.login(userid=user.user_id, password=user.password, twoFA=fresh_totp(user.totp_secret),
                    vendor_code=user.api_key, api_secret=user.api_secret, imei="abc1234")  # fmt: skip
    assert res is not None and res["stat"] == "Ok"
    return api


def post(paper: PaperBroker, name: str, values: dict[str, Any], key: str | None = None) -> Any:
    body = "jData=" + json.dumps(values) + (f"&jKey={key}" if key is not None else "")
    return requests.post(f"{paper.url}/NorenWClientTP/{name}", data=body, timeout=5).json()


def test_login_place_modify_cancel_and_books(paper: PaperBroker) -> None:
    # Given a Shoonya user, When the SDK logs in with password, TOTP, vendor code and API key
    user = shoonya_user(paper)
    api = noren(paper, user)
    # Then an empty book is Noren's "no data" refusal (the SDK returns None)
    assert api.get_order_book() is None
    # And orders are placed, modified and cancelled
    resting = api.place_order(buy_or_sell="B", product_type="C", exchange="NSE", tradingsymbol="SBIN-EQ",
                              quantity=1, discloseqty=0, price_type="LMT", price=10.05, trigger_price=None,
                              retention="DAY", remarks="shoonya1")  # fmt: skip
    # Shoonya refuses MKT orders from the API (2026 rules): a marketable LMT fills at once.
    filled = api.place_order(buy_or_sell="B", product_type="I", exchange="NSE", tradingsymbol="SBIN-EQ",
                             quantity=3, discloseqty=0, price_type="LMT", price=900, retention="DAY")  # fmt: skip
    assert resting["stat"] == "Ok" and filled["stat"] == "Ok"
    modified = api.modify_order(orderno=resting["norenordno"], exchange="NSE", tradingsymbol="SBIN-EQ",
                                newquantity=2, newprice_type="LMT", newprice=11.00)  # fmt: skip
    assert modified == {**modified, "stat": "Ok", "result": resting["norenordno"]}
    book = {row["norenordno"]: row for row in api.get_order_book()}
    row = book[resting["norenordno"]]
    assert (row["status"], row["qty"], row["prc"], row["remarks"], row["tsym"], row["token"]) == (
        "OPEN", "2", "11.00", "shoonya1", "SBIN-EQ", "3045")
    assert book[filled["norenordno"]]["status"] == "COMPLETE" and book[filled["norenordno"]]["fillshares"] == "3"
    assert book[filled["norenordno"]]["prd"] == "I" and book[filled["norenordno"]]["prctyp"] == "LMT"
    cancelled = api.cancel_order(orderno=resting["norenordno"])
    assert cancelled["stat"] == "Ok" and cancelled["result"] == resting["norenordno"]
    assert {r["norenordno"]: r["status"] for r in api.get_order_book()}[resting["norenordno"]] == "CANCELED"
    trades = api.get_trade_book()
    assert [t["norenordno"] for t in trades] == [filled["norenordno"]] and trades[0]["flqty"] == "3"
    assert [h["status"] for h in api.single_order_history(filled["norenordno"])] == ["COMPLETE"]
    # The paper broker logged every call under the user, with its tag
    log = [e for e in paper.requests() if e["broker"] == "shoonya"]
    assert [e["endpoint_class"] for e in log][:2] == ["login", "orderbook"]
    assert any(e["tag"] == "shoonya1" and e["path"].endswith("PlaceOrder") for e in log)


def test_refusals_are_not_ok_with_noren_messages(paper: PaperBroker) -> None:
    from NorenRestApiPy.NorenApi import NorenApi

    user = shoonya_user(paper)
    bad = NorenApi(host=f"{paper.url}/NorenWClientTP", websocket="ws://unused/")
    assert bad.login(userid=user.user_id, password="wrong", twoFA=fresh_totp(user.totp_secret),
                     vendor_code=user.api_key, api_secret=user.api_secret, imei="x") is None  # fmt: skip
    login = {"uid": user.user_id, "pwd": hashlib.sha256(b"wrong").hexdigest(), "factor2": "000000", "vc": user.api_key,
             "appkey": "x", "imei": "x", "apkversion": "1.0.0", "source": "API"}  # fmt: skip
    assert post(paper, "QuickAuth", login)["emsg"] == "Invalid Input : Wrong Password"
    api = noren(paper, user)
    # an unknown symbol, a missing order, a stale session key
    assert api.place_order(buy_or_sell="B", product_type="C", exchange="NSE", tradingsymbol="NOPE-EQ", quantity=1,
                           discloseqty=0, price_type="LMT", price=10) is None  # fmt: skip
    answer = post(paper, "OrderBook", {"uid": user.user_id}, "nonsense")
    assert (answer["stat"], answer["emsg"]) == ("Not_Ok", "Session Expired : Invalid Session Key")
    assert api.cancel_order(orderno="123") is None
    missing = post(paper, "CancelOrder", {"uid": user.user_id, "norenordno": "123"}, api._NorenApi__susertoken)
    assert missing["emsg"] == "Rejected : ORA:Order not found to Cancel"
    # The rate-limit answer: HTTP 429 with a Not_Ok body; a 5xx fault is a 503 with one
    for kind, status in (("rate_limit", 429), ("error_5xx", 503)):
        paper.fault(kind=kind, broker="shoonya", user_id=user.user_id)
        r = requests.post(f"{paper.url}/NorenWClientTP/OrderBook",
                          data=f'jData={{"uid": "{user.user_id}"}}&jKey={api._NorenApi__susertoken}', timeout=5)
        assert r.status_code == status and r.json()["stat"] == "Not_Ok"


def test_symbol_master_has_real_tokens(paper: PaperBroker) -> None:
    from common.brokers.shoonya.instruments import parse_zip

    data = requests.get(f"{paper.url}/NSE_symbols.txt.zip", timeout=10).content
    text = zipfile.ZipFile(io.BytesIO(data)).read("NSE_symbols.txt").decode()
    assert text.splitlines()[0] == "Exchange,Token,LotSize,Symbol,TradingSymbol,Instrument,TickSize,"
    by_symbol = {i.symbol: i for i in parse_zip(data)}
    assert by_symbol["SBIN"].token == "3045" and by_symbol["SBIN"].broker_symbol == "SBIN-EQ"
    assert by_symbol["INFY"].token == "1594" and by_symbol["RELIANCE"].token == "2885"
    assert by_symbol["NIFTY 50"].token == "26000" and by_symbol["NIFTY 50"].instrument_type == "INDEX"
    assert str(by_symbol["INFY"].tick_size) == "0.05"


class Received:
    """What the SDK's callbacks got."""

    def __init__(self) -> None:
        self.ticks: list[dict[str, Any]] = []
        self.orders: list[dict[str, Any]] = []
        self.errors: list[Any] = []
        self.opened = threading.Event()


@pytest.fixture
def ticks_paused(paper: PaperBroker) -> Iterator[None]:
    paper.http.post(f"{paper.url}/_paper/ticks", json={"paused": True}, timeout=5).raise_for_status()
    yield
    paper.http.post(f"{paper.url}/_paper/ticks", json={"paused": False}, timeout=5).raise_for_status()


def stop_socket(api: Any) -> None:
    """close_websocket() returns early once the socket is down, leaving the SDK's reconnect loop
    running: stop the loop itself."""
    stop = getattr(api, "_NorenApi__stop_event", None)
    if stop is not None:
        stop.set()
    ws = getattr(api, "_NorenApi__websocket", None)
    if ws is not None:
        ws.close()
    thread = getattr(api, "_NorenApi__ws_thread", None)
    if thread is not None:
        thread.join(5)


def start(api: Any) -> Received:
    got = Received()
    api.start_websocket(subscribe_callback=got.ticks.append, order_update_callback=got.orders.append,
                        socket_open_callback=got.opened.set, socket_error_callback=got.errors.append)  # fmt: skip
    assert got.opened.wait(5), got.errors
    return got


def test_sdk_socket_gets_touchline_depth_and_order_updates(paper: PaperBroker, ticks_paused: None) -> None:
    # Given the SDK's socket, connected with its session key
    user = shoonya_user(paper)
    api = noren(paper, user)
    got = start(api)
    try:
        # When it subscribes touchline of SBIN and depth of INFY, and the clock steps
        api.subscribe("NSE|3045")
        api.subscribe(["NSE|1594"], feed_type=2)

        def step_until(pred: Any) -> None:
            def stepped() -> bool:
                paper.http.post(f"{paper.url}/_paper/ticks", json={"steps": 1}, timeout=5)
                return pred()

            wait_for(stepped, 10, 0.05)

        step_until(lambda: {m["t"] for m in got.ticks} >= {"tk", "dk", "tf", "df"})
        # Then the SDK got a snapshot first and deltas after, for each stream
        sbin = [m for m in got.ticks if m["tk"] == "3045"]
        infy = [m for m in got.ticks if m["tk"] == "1594"]
        assert sbin[0]["t"] == "tk" and {m["t"] for m in sbin[1:]} <= {"tf"}
        assert infy[0]["t"] == "dk" and "bp5" in infy[0] and "sp5" in infy[0]
        assert sbin[0]["ts"] == "SBIN-EQ" and sbin[0]["e"] == "NSE"
        # And our decoder, fed what the SDK received, ends at exactly what the paper broker sent
        def decoded() -> dict[str, Any]:
            table = dialect.symbol_table({"NSE|3045": ("NSE", "SBIN"), "NSE|1594": ("NSE", "INFY")},
                                         {"NSE|3045": "quote", "NSE|1594": "full"})  # fmt: skip
            last: dict[str, Any] = {}
            for m in list(got.ticks):
                ticks, bad = codec.decode_message(m, table, 1)
                assert bad == 0
                last.update((t.token, t) for t in ticks)
            return last

        def mismatches() -> list[str]:
            last = decoded()
            out = []
            for token, mode in (("3045", "quote"), ("1594", "full")):
                sent = _last(paper, user, token)
                t = last.get(token)
                if sent is None or t is None or mode not in sent["by_mode"]:
                    out.append(f"{token}: nothing yet")
                    continue
                v = sent["by_mode"][mode]["values"]
                want: dict[str, Any] = {
                    "mode": mode, "price_divisor": 100, "last_price": v["last_price"], "open": v["open"],
                    "high": v["high"], "low": v["low"], "close": v["close"], "volume": v["volume"],
                    "average_price": v["average_price"], "last_quantity": v["last_quantity"],
                    "exchange_ts_ms": v["exchange_timestamp"] * 1000,
                    "bid_price": v["depth"]["buy"][0]["price"], "ask_price": v["depth"]["sell"][0]["price"],
                }  # fmt: skip
                if mode == "full":
                    want["bids"] = tuple(x for d in v["depth"]["buy"] for x in (d["price"], d["quantity"], d["orders"]))
                    want["asks"] = tuple(x for d in v["depth"]["sell"] for x in (d["price"], d["quantity"], d["orders"]))
                have = {k: getattr(t, k) for k in want}
                if have != want:
                    out.append(f"{token}: {have} != {want}")
            return out

        # The clock is paused: once the last message of each stream has arrived, they agree.
        wait_for(lambda: not mismatches(), 5, 0.05)

        # When an order is placed and cancelled
        placed = api.place_order(buy_or_sell="S", product_type="C", exchange="NSE", tradingsymbol="SBIN-EQ",
                                 quantity=1, discloseqty=0, price_type="LMT", price=100000, retention="DAY",
                                 remarks="sockettag")  # fmt: skip
        api.cancel_order(orderno=placed["norenordno"])
        # Then the SDK's order callback gets om messages that our parser reads
        from common.brokers.shoonya.updates import parse_message

        wait_for(lambda: len(got.orders) >= 2, 5)
        updates = [parse_message("acct", m, "socket") for m in got.orders]
        assert [(u.client_order_id, u.state.value) for u in updates if u] == [("sockettag", "OPEN"),
                                                                               ("sockettag", "CANCELLED")]
        assert [m["reporttype"] for m in got.orders] == ["New", "Canceled"]
    finally:
        stop_socket(api)


def _last(paper: PaperBroker, user: PaperUser, token: str) -> dict[str, Any] | None:
    rows = paper.http.get(f"{paper.url}/_paper/ticks/last",
                          params={"broker": "shoonya", "token": token, "user_id": user.user_id}, timeout=5).json()  # fmt: skip
    return rows[0] if rows else None


def test_sdk_socket_with_a_stale_key_is_refused(paper: PaperBroker) -> None:
    user = shoonya_user(paper)
    api = noren(paper, user)
    paper.fault(kind="expire_tokens", broker="shoonya", user_id=user.user_id)
    got = Received()
    api.start_websocket(subscribe_callback=got.ticks.append, socket_open_callback=got.opened.set,
                        socket_error_callback=got.errors.append)  # fmt: skip
    try:
        wait_for(lambda: any(isinstance(e, dict) and e.get("t") == "ck" for e in got.errors), 5)
        assert not got.opened.is_set()
        refused = [e for e in paper.requests() if e["broker"] == "shoonya" and e["endpoint_class"] == "ws"]
        assert refused and refused[0]["status"] == 403
    finally:
        stop_socket(api)
