"""The official KiteTicker against the paper broker's /kite-ticker."""

from __future__ import annotations

import struct
from typing import Any

import pytest
import websocket

from paper.kite import encode
from tests.paper_ws.helpers import (
    WSBroker,
    assert_dropped_without_close_frame,
    assert_silent,
    wait_closed_by_server,
    wait_for,
)
from tests.paper_ws.kite_client import TickerProbe

INFY, SBIN, RELIANCE, NIFTY = 408065, 779521, 738561, 256265


def expected_tick(mode: str, token: int, v: dict[str, Any]) -> dict[str, Any]:
    """What KiteTicker should parse from the integers the server says it sent."""
    div = encode.kite_price_divisor(token)
    out: dict[str, Any] = {"instrument_token": token, "mode": mode, "last_price": v["last_price"] / div}
    if mode == "ltp":
        return out
    out["ohlc"] = {k: v[k] / div for k in ("open", "high", "low", "close")}
    if token & 0xFF == encode.KITE_INDEX_SEGMENT:
        if mode == "full":
            out["exchange_timestamp"] = v["exchange_timestamp"]
        return out
    out.update(
        last_traded_quantity=v["last_quantity"], average_traded_price=v["average_price"] / div,
        volume_traded=v["volume"], total_buy_quantity=v["buy_quantity"],
        total_sell_quantity=v["sell_quantity"],
    )
    if mode == "full":
        out.update(oi=v["oi"], exchange_timestamp=v["exchange_timestamp"], last_trade_time=v["last_trade_time"])
        out["depth"] = {
            side: [{"quantity": d["quantity"], "price": d["price"] / div, "orders": d["orders"]} for d in v["depth"][side]]
            for side in ("buy", "sell")
        }
    return out


def parsed_view(tick: dict[str, Any], like: dict[str, Any]) -> dict[str, Any]:
    """The client's tick cut to the expected keys, datetimes as epoch seconds."""
    view = {k: tick.get(k) for k in like}
    for k in ("exchange_timestamp", "last_trade_time"):
        if k in view and view[k] is not None:
            view[k] = int(view[k].timestamp())
    return view


def test_kite_ticker_receives_ltp_quote_full_equal_to_what_was_sent(broker: WSBroker) -> None:
    # Given a logged-in Kite user and the official KiteTicker subscribed in three modes
    user = broker.kite_user()
    modes = {INFY: "full", SBIN: "ltp", RELIANCE: "quote", NIFTY: "full"}

    def subscribe(kt: Any) -> None:
        kt.subscribe(list(modes))
        for token, mode in modes.items():
            if mode != "quote":
                kt.set_mode(mode, [token])

    probe = TickerProbe(user.api_key, user.access_token or "", f"{broker.ws_url}/kite-ticker", subscribe).start()
    try:
        # When ticks flow, then the clock is paused and stepped exactly once
        wait_for(lambda: all((t := probe.latest(k)) and t["mode"] == m for k, m in modes.items()),
                 5, "ticks in every mode")
        broker.ticks(paused=True)
        step = broker.ticks(steps=1)["step"]
        # Then what the client parsed last equals what the server says it sent last
        for token, mode in modes.items():
            # The socket encodes the step just after it is computed: wait for it to have done so.
            (sent,) = wait_for(lambda token=token: [x for x in broker.last_sent("kite", token) if x["step"] == step],
                               5, "the step to be sent")
            assert sent["mode"] == mode and sent["user_id"] == user.user_id
            want = expected_tick(mode, token, sent["values"])

            def matches(token: int = token, want: dict[str, Any] = want) -> bool:
                tick = probe.latest(token)
                return tick is not None and parsed_view(tick, want) == want

            wait_for(matches, 5, f"token {token} to match {want}")
        assert probe.latest(NIFTY)["tradable"] is False  # type: ignore[index]
        # And the handshake is in the request log
        logged = [e for e in broker.requests() if e["path"] == "/kite-ticker" and e["user_id"] == user.user_id]
        assert [e["status"] for e in logged] == [101] and logged[0]["endpoint_class"] == "ws"
    finally:
        probe.stop()
        broker.ticks(paused=False)


def test_invalid_token_is_refused_with_403(broker: WSBroker) -> None:
    user = broker.kite_user()
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        websocket.create_connection(f"{broker.ws_url}/kite-ticker?api_key={user.api_key}&access_token=wrong", timeout=5)
    assert err.value.status_code == 403
    assert any(e["status"] == 403 and e["path"] == "/kite-ticker" for e in broker.requests())


def test_expired_token_closes_socket_and_reconnect_gets_403(broker: WSBroker) -> None:
    # Given a connected ticker
    user = broker.kite_user()
    url = f"{broker.ws_url}/kite-ticker?api_key={user.api_key}&access_token={user.access_token}"
    ws = websocket.create_connection(url, timeout=5)
    try:
        ws.send('{"a":"subscribe","v":[408065]}')
        assert len(ws.recv()) > 0  # frames (or a heartbeat) are flowing
        # When the user's tokens expire
        broker.fault("expire_tokens", "kite", user.user_id)
        # Then the socket is closed by the server
        wait_closed_by_server(ws)
    finally:
        ws.close()
    # And a new handshake with the old token is refused with 403
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        websocket.create_connection(url, timeout=5)
    assert err.value.status_code == 403


def raw_socket(broker: WSBroker, tokens: list[int], mode: str = "quote") -> tuple[websocket.WebSocket, Any]:
    user = broker.kite_user()
    ws = websocket.create_connection(
        f"{broker.ws_url}/kite-ticker?api_key={user.api_key}&access_token={user.access_token}", timeout=5
    )
    ws.send(f'{{"a":"subscribe","v":{tokens}}}')
    if mode != "quote":
        ws.send(f'{{"a":"mode","v":["{mode}",{tokens}]}}')
    return ws, user


def test_drop_socket_closes_without_close_frame(broker: WSBroker) -> None:
    ws, user = raw_socket(broker, [INFY])
    try:
        assert len(ws.recv()) > 0  # flowing
        broker.fault("drop_socket", "kite", user.user_id)
        assert_dropped_without_close_frame(ws)
    finally:
        ws.close()


def test_stall_socket_sends_nothing_then_resumes(broker: WSBroker) -> None:
    ws, user = raw_socket(broker, [INFY])
    try:
        ws.recv()
        broker.fault("stall_socket", "kite", user.user_id, duration_s=1.0)
        # Drain what was in flight, then nothing (not even a heartbeat) for most of the stall.
        assert_silent(ws, 0.6)
        assert len(ws.recv()) > 1  # ticks again after the stall, same TCP connection
        assert ws.connected
    finally:
        ws.close()


def test_malformed_frame_is_inconsistent_and_stream_continues(broker: WSBroker) -> None:
    ws, user = raw_socket(broker, [INFY, SBIN])
    try:
        ws.recv()
        broker.fault("malformed_frame", "kite", user.user_id)

        def consistent(frame: bytes) -> bool:
            if len(frame) < 2:
                return True
            n, pos = struct.unpack(">H", frame[:2])[0], 2
            for _ in range(n):
                if pos + 2 > len(frame):
                    return False
                (length,) = struct.unpack(">H", frame[pos:pos + 2])
                pos += 2 + length
            return pos == len(frame)

        for _ in range(200):
            frame = ws.recv()
            if not consistent(frame):
                break
        else:
            raise AssertionError("no malformed frame within 200 frames")
        assert consistent(ws.recv())  # the next frame is well formed again
    finally:
        ws.close()


def test_heartbeat_when_idle_and_limits(broker: WSBroker) -> None:
    # Given a socket with no subscriptions: a 1-byte heartbeat arrives about every second
    user = broker.kite_user()
    url = f"{broker.ws_url}/kite-ticker?api_key={user.api_key}&access_token={user.access_token}"
    socks = [websocket.create_connection(url, timeout=5) for _ in range(3)]
    try:
        assert socks[0].recv() == encode.KITE_HEARTBEAT
        # A fourth socket on the same api_key is refused
        with pytest.raises(websocket.WebSocketBadStatusException) as err:
            websocket.create_connection(url, timeout=5)
        assert err.value.status_code == 429
        # More than 3,000 instruments on one socket: an error text message
        tokens = broker.kite_tokens(3001)
        socks[1].send(f'{{"a":"subscribe","v":{tokens}}}')
        while True:
            msg = socks[1].recv()
            if isinstance(msg, str):
                break
        assert '"type": "error"' in msg and "3000" in msg
    finally:
        for s in socks:
            s.close()
