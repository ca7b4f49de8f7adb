"""The official SmartWebSocketV2 and a plain client against /smart-stream and /smart-order-update."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from SmartApi.smartWebSocketV2 import SmartWebSocketV2

from paper.angel import encode
from tests.paper_ws.helpers import (
    Session,
    WSBroker,
    assert_dropped_without_close_frame,
    assert_silent,
    wait_closed_by_server,
    wait_for,
)

SBIN, INFY, RELIANCE = "3045", "1594", "2885"
NSE_CM = 1


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # The SDK writes logs/<date>/app.log under the working directory.
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def expected_packet(mode: int, v: dict[str, Any]) -> dict[str, Any]:
    """What SmartWebSocketV2 should parse from the integers the server says it sent."""
    out: dict[str, Any] = {
        "subscription_mode": mode,
        "sequence_number": v["sequence"],
        "exchange_timestamp": v["exchange_timestamp_ms"],
        "last_traded_price": v["last_price"],
    }
    if mode >= encode.ANGEL_MODE_QUOTE:
        out.update(
            last_traded_quantity=v["last_quantity"], average_traded_price=v["average_price"],
            volume_trade_for_the_day=v["volume"], total_buy_quantity=float(v["buy_quantity"]),
            total_sell_quantity=float(v["sell_quantity"]), open_price_of_the_day=v["open"],
            high_price_of_the_day=v["high"], low_price_of_the_day=v["low"], closed_price=v["close"],
        )
    if mode == encode.ANGEL_MODE_SNAP_QUOTE:
        out.update(
            last_traded_timestamp=v["last_trade_time"] * 1000, open_interest=v["oi"],
            open_interest_change_percentage=0, upper_circuit_limit=v["upper_circuit"],
            lower_circuit_limit=v["lower_circuit"], **{"52_week_high_price": v["week52_high"],
                                                       "52_week_low_price": v["week52_low"]},
        )
        out["best_5_buy_data"] = [
            {"flag": 1, "quantity": d["quantity"], "price": d["price"], "no of orders": d["orders"]}
            for d in v["depth"]["buy"]
        ]
        out["best_5_sell_data"] = [
            {"flag": 0, "quantity": d["quantity"], "price": d["price"], "no of orders": d["orders"]}
            for d in v["depth"]["sell"]
        ]
    return out


class StreamProbe:
    """SmartWebSocketV2 on a thread, recording parsed packets."""

    def __init__(self, s: Session, subscriptions: dict[int, list[str]]) -> None:
        self.sws = SmartWebSocketV2(s.jwt_token, s.api_key, s.user_id, s.feed_token, max_retry_attempt=0)
        self.lock = threading.Lock()
        self.data: list[dict[str, Any]] = []
        self.opened = threading.Event()

        def on_open(wsapp: Any) -> None:
            for mode, tokens in subscriptions.items():
                self.sws.subscribe("corr01", mode, [{"exchangeType": NSE_CM, "tokens": tokens}])
            self.opened.set()

        def on_data(wsapp: Any, data: dict[str, Any]) -> None:
            with self.lock:
                self.data.append(data)

        self.sws.on_open = on_open
        self.sws.on_data = on_data
        self.sws.on_error = lambda *a: None
        self.sws.on_close = lambda *a: None
        self.thread = threading.Thread(target=self.sws.connect, daemon=True)

    def latest(self, token: str, mode: int) -> dict[str, Any] | None:
        with self.lock:
            for d in reversed(self.data):
                if d["token"] == token and d["subscription_mode"] == mode:
                    return d
        return None


def test_smartwebsocketv2_receives_ltp_quote_snapquote_equal_to_what_was_sent(
    broker: WSBroker, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a logged-in Angel user and the official client subscribed in three modes
    s = broker.angel_user()
    monkeypatch.setattr(SmartWebSocketV2, "ROOT_URI", f"{broker.ws_url}/smart-stream")
    modes = {encode.ANGEL_MODE_LTP: [SBIN], encode.ANGEL_MODE_QUOTE: [INFY], encode.ANGEL_MODE_SNAP_QUOTE: [RELIANCE]}
    probe = StreamProbe(s, modes)
    probe.thread.start()
    try:
        # When packets flow, then the clock is paused and stepped exactly once
        wait_for(lambda: all(probe.latest(t, m) for m, ts in modes.items() for t in ts), 5, "packets in every mode")
        broker.ticks(paused=True)
        step = broker.ticks(steps=1)["step"]
        # Then what the client parsed last equals what the server says it sent last
        for mode, (token,) in modes.items():
            # The socket encodes the step just after it is computed: wait for it to have done so.
            (sent,) = wait_for(lambda token=token: [x for x in broker.last_sent("angel", f"{NSE_CM}:{token}") if x["step"] == step],
                               5, "the step to be sent")
            assert sent["mode"] == mode and sent["token"] == token and sent["exchange_type"] == NSE_CM
            want = expected_packet(mode, sent["values"])

            def matches(token: str = token, mode: int = mode, want: dict[str, Any] = want) -> bool:
                got = probe.latest(token, mode)
                return got is not None and {k: got.get(k) for k in want} == want

            wait_for(matches, 5, f"token {token} mode {mode} to match {want}")
        logged = [e for e in broker.requests() if e["path"] == "/smart-stream" and e["user_id"] == s.user_id]
        assert [e["status"] for e in logged] == [101]
    finally:
        probe.sws.close_connection()
        broker.ticks(paused=False)


def connect_stream(broker: WSBroker, s: Session, bearer: bool = True) -> websocket.WebSocket:
    return websocket.create_connection(
        f"{broker.ws_url}/smart-stream",
        header={
            "Authorization": ("Bearer " if bearer else "") + s.jwt_token,
            "x-api-key": s.api_key,
            "x-client-code": s.user_id,
            "x-feed-token": s.feed_token,
        },
        timeout=5,
    )


def subscribe(ws: websocket.WebSocket, mode: int, tokens: list[str], action: int = 1) -> None:
    ws.send(json.dumps({"correlationID": "abc123", "action": action,
                        "params": {"mode": mode, "tokenList": [{"exchangeType": NSE_CM, "tokens": tokens}]}}))


def test_handshake_auth_ping_and_403(broker: WSBroker) -> None:
    s = broker.angel_user()
    # The JWT is accepted with and without "Bearer "; text ping gets pong
    for bearer in (True, False):
        ws = connect_stream(broker, s, bearer)
        try:
            ws.send("ping")
            assert ws.recv() == "pong"
        finally:
            ws.close()
    # A wrong feed token is refused with 403
    bad = Session("angel", s.user_id, s.api_key, jwt_token=s.jwt_token, feed_token="nope")
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        connect_stream(broker, bad)
    assert err.value.status_code == 403
    # Expired tokens: the open socket closes and the old JWT gets 403
    ws = connect_stream(broker, s)
    try:
        broker.fault("expire_tokens", "angel", s.user_id)
        wait_closed_by_server(ws)
    finally:
        ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        connect_stream(broker, s)
    assert err.value.status_code == 403
    statuses = [e["status"] for e in broker.requests() if e["path"] == "/smart-stream"]
    assert statuses == [101, 101, 403, 101, 403]


def test_drop_stall_malformed(broker: WSBroker) -> None:
    s = broker.angel_user()
    # drop_socket: the connection ends without a close frame
    ws = connect_stream(broker, s)
    try:
        subscribe(ws, encode.ANGEL_MODE_LTP, [SBIN])
        assert len(ws.recv()) == encode.ANGEL_LTP_LEN
        broker.fault("drop_socket", "angel", s.user_id)
        assert_dropped_without_close_frame(ws)
    finally:
        ws.close()
    # stall_socket: nothing for the duration, same connection, then packets again
    ws = connect_stream(broker, s)
    try:
        subscribe(ws, encode.ANGEL_MODE_QUOTE, [SBIN])
        assert len(ws.recv()) == encode.ANGEL_QUOTE_LEN
        broker.fault("stall_socket", "angel", s.user_id, duration_s=1.0)
        assert_silent(ws, 0.6)
        assert len(ws.recv()) == encode.ANGEL_QUOTE_LEN
        # malformed_frame: a packet whose mode byte disagrees with its length
        broker.fault("malformed_frame", "angel", s.user_id)
        for _ in range(200):
            packet = ws.recv()
            if packet[0] == encode.ANGEL_MODE_SNAP_QUOTE and len(packet) != encode.ANGEL_SNAP_QUOTE_LEN:
                break
        else:
            raise AssertionError("no malformed packet within 200 packets")
        assert len(ws.recv()) == encode.ANGEL_QUOTE_LEN
    finally:
        ws.close()


def test_order_update_socket(broker: WSBroker) -> None:
    # Given an order-update socket: the AB00 greeting, ping/pong
    s = broker.angel_user()
    ws = websocket.create_connection(
        f"{broker.ws_url}/smart-order-update", header={"Authorization": f"Bearer {s.jwt_token}"}, timeout=5
    )
    try:
        hello = json.loads(ws.recv())
        assert hello["order-status"] == "AB00" and hello["user-id"] == s.user_id
        assert hello["status-code"] == "200" and hello["orderData"]["orderid"] == ""
        ws.send("ping")
        assert ws.recv() == "pong"
        # When an order is placed through the REST API
        r = requests.post(
            f"{broker.http_url}/rest/secure/angelbroking/order/v1/placeOrder",
            json={"variety": "NORMAL", "tradingsymbol": "SBIN-EQ", "symboltoken": SBIN, "transactiontype": "BUY",
                  "exchange": "NSE", "ordertype": "LIMIT", "producttype": "DELIVERY", "duration": "DAY",
                  "price": "1.00", "quantity": "1", "ordertag": "wsorder1"},
            headers={"Authorization": f"Bearer {s.jwt_token}", "X-PrivateKey": s.api_key,
                     "Content-Type": "application/json", "Accept": "application/json",
                     "X-UserType": "USER", "X-SourceID": "WEB"},
            timeout=5,
        )
        r.raise_for_status()
        order_id = r.json()["data"]["orderid"]
        # Then its event arrives with Angel's status code and order body
        msg = json.loads(ws.recv())
        assert msg["user-id"] == s.user_id
        assert msg["order-status"] in {"AB01", "AB05", "AB03"}
        assert msg["orderData"]["orderid"] == order_id and msg["orderData"]["ordertag"] == "wsorder1"
    finally:
        ws.close()
    # An unknown JWT is refused
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        websocket.create_connection(
            f"{broker.ws_url}/smart-order-update", header={"Authorization": "Bearer nope"}, timeout=5
        )
    assert err.value.status_code == 403


def _angel_place(broker: WSBroker, s: Session, tag: str) -> str:
    """A resting LIMIT order (price far below the market) through REST; its order id."""
    r = requests.post(
        f"{broker.http_url}/rest/secure/angelbroking/order/v1/placeOrder",
        json={"variety": "NORMAL", "tradingsymbol": "SBIN-EQ", "symboltoken": SBIN, "transactiontype": "BUY",
              "exchange": "NSE", "ordertype": "LIMIT", "producttype": "DELIVERY", "duration": "DAY",
              "price": "1.00", "quantity": "1", "ordertag": tag},
        headers={"Authorization": f"Bearer {s.jwt_token}", "X-PrivateKey": s.api_key,
                 "Content-Type": "application/json", "Accept": "application/json",
                 "X-UserType": "USER", "X-SourceID": "WEB"},
        timeout=5,
    )
    r.raise_for_status()
    return str(r.json()["data"]["orderid"])


def _updates_until(ws: Any, tag: str) -> list[tuple[str, str]]:
    """(ordertag, order-status) of each update received, up to and including the first of ``tag``."""
    got: list[tuple[str, str]] = []
    while not got or got[-1][0] != tag:
        msg = json.loads(ws.recv())
        got.append((msg["orderData"]["ordertag"], msg["order-status"]))
    return got


def test_order_updates_duplicated_and_reordered(broker: WSBroker) -> None:
    """The pushed-update faults: duplicate_update sends the next update twice; reorder_updates
    holds the next one back until the one after it has gone (the other brokers' sockets push
    through the same paper.sockets.SessionBound.push_update)."""
    s = broker.angel_user()
    ws = websocket.create_connection(
        f"{broker.ws_url}/smart-order-update", header={"Authorization": f"Bearer {s.jwt_token}"}, timeout=5
    )
    try:
        assert json.loads(ws.recv())["order-status"] == "AB00"
        broker.fault("duplicate_update", "angel", s.user_id, count=1)
        _angel_place(broker, s, "dup1")
        _angel_place(broker, s, "mark1")  # a later order's update ends the read
        seen = _updates_until(ws, "mark1")
        dup = [u for u in seen if u[0] == "dup1"]
        assert len(dup) >= 2 and dup[0] == dup[1], seen
        broker.fault("reorder_updates", "angel", s.user_id, count=1)
        _angel_place(broker, s, "late1")
        _angel_place(broker, s, "mark2")
        seen = _updates_until(ws, "late1")
        assert seen[0][0] == "mark2", seen  # the held update of late1 came after mark2's
        r = requests.post(f"{broker.http_url}/_paper/faults", json={"kind": "meteor_update", "broker": "angel"},
                          timeout=5)
        assert r.status_code == 400
    finally:
        ws.close()
