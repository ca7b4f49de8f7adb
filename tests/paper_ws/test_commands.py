"""Ticker commands, the tick knobs, and Angel's order-status codes."""

from __future__ import annotations

import json
import struct
from types import SimpleNamespace
from typing import Any

import requests
import websocket

from paper.angel import encode as angel_encode
from paper.angel.payloads import order_status_code
from paper.kite import encode as kite_encode
from tests.paper_ws.helpers import WSBroker

INFY, SBIN, NIFTY = 408065, 779521, 256265


def packet_lengths(frame: bytes) -> dict[int, int]:
    """token -> packet length for every packet of a Kite frame."""
    out: dict[int, int] = {}
    if len(frame) < 2:
        return out
    (n,), pos = struct.unpack(">H", frame[:2]), 2
    for _ in range(n):
        (length,) = struct.unpack(">H", frame[pos:pos + 2])
        (token,) = struct.unpack(">I", frame[pos + 2:pos + 6])
        out[token] = length
        pos += 2 + length
    return out


def next_frame(ws: websocket.WebSocket, want: Any) -> dict[int, int]:
    """The first frame whose packet lengths satisfy ``want`` (frames in flight may predate a command)."""
    for _ in range(200):
        msg = ws.recv()
        if isinstance(msg, bytes):
            lengths = packet_lengths(msg)
            if want(lengths):
                return lengths
    raise AssertionError("no matching frame within 200 messages")


def test_kite_subscribe_mode_unsubscribe(broker: WSBroker) -> None:
    s = broker.kite_user()
    ws = websocket.create_connection(
        f"{broker.ws_url}/kite-ticker?api_key={s.api_key}&access_token={s.access_token}", timeout=5
    )
    try:
        # A mode for a token that is not subscribed changes nothing
        ws.send(json.dumps({"a": "mode", "v": ["full", [SBIN]]}))
        # Subscribe defaults to quote: 44-byte packets, 28 for an index
        ws.send(json.dumps({"a": "subscribe", "v": [INFY, NIFTY]}))
        assert next_frame(ws, lambda p: len(p) == 2) == {INFY: kite_encode.KITE_QUOTE_LEN, NIFTY: kite_encode.KITE_INDEX_QUOTE_LEN}
        # Mode switches: ltp 8 bytes, full 184 (32 for an index)
        ws.send(json.dumps({"a": "mode", "v": ["ltp", [INFY]]}))
        ws.send(json.dumps({"a": "mode", "v": ["full", [NIFTY]]}))
        next_frame(ws, lambda p: p == {INFY: kite_encode.KITE_LTP_LEN, NIFTY: kite_encode.KITE_INDEX_FULL_LEN})
        ws.send(json.dumps({"a": "mode", "v": ["full", [INFY]]}))
        next_frame(ws, lambda p: p.get(INFY) == kite_encode.KITE_FULL_LEN)
        # An unknown mode is an error message
        ws.send(json.dumps({"a": "mode", "v": ["depth", [INFY]]}))
        while not isinstance(msg := ws.recv(), str):
            pass
        assert json.loads(msg)["type"] == "error"
        # Unsubscribe: only heartbeats remain
        ws.send(json.dumps({"a": "unsubscribe", "v": [INFY, NIFTY]}))
        for _ in range(200):
            if ws.recv() == kite_encode.KITE_HEARTBEAT:
                break
        else:
            raise AssertionError("no heartbeat after unsubscribing")
    finally:
        ws.close()


def test_angel_unsubscribe_and_errors(broker: WSBroker) -> None:
    s = broker.angel_user()
    ws = websocket.create_connection(
        f"{broker.ws_url}/smart-stream",
        header={"Authorization": s.jwt_token, "x-api-key": s.api_key, "x-client-code": s.user_id,
                "x-feed-token": s.feed_token},
        timeout=5,
    )

    def send(action: int, mode: int, tokens: list[str]) -> None:
        ws.send(json.dumps({"correlationID": "c1", "action": action,
                            "params": {"mode": mode, "tokenList": [{"exchangeType": 1, "tokens": tokens}]}}))

    try:
        send(1, 1, ["3045"])
        send(1, 2, ["3045"])
        seen: set[int] = set()
        while seen != {angel_encode.ANGEL_LTP_LEN, angel_encode.ANGEL_QUOTE_LEN}:
            seen.add(len(ws.recv()))
        # Unsubscribing LTP leaves the Quote stream
        send(0, 1, ["3045"])
        ws.send("ping")
        while ws.recv() != "pong":  # the unsubscribe was read before the ping
            pass
        for _ in range(20):
            assert len(ws.recv()) == angel_encode.ANGEL_QUOTE_LEN
        # Bad payloads and the withdrawn depth-20 mode are error messages
        ws.send("{not json")
        send(1, 4, ["3045"])
        errors = []
        while len(errors) < 2:
            msg = ws.recv()
            if isinstance(msg, str):
                errors.append(json.loads(msg))
        assert [e["errorCode"] for e in errors] == ["E1001", "E1001"]
        assert errors[1]["correlationID"] == "c1"
    finally:
        ws.close()


def test_tick_knobs(broker: WSBroker) -> None:
    r = requests.post(f"{broker.http_url}/_paper/ticks", json={"interval_ms": 0}, timeout=5)
    assert r.status_code == 400
    snap = broker.ticks(interval_ms=40, paused=True)
    assert snap["interval_ms"] == 40 and snap["paused"] is True
    before = snap["step"]
    assert broker.ticks(steps=3)["step"] == before + 3
    got = requests.get(f"{broker.http_url}/_paper/ticks", timeout=5).json()
    assert got["paused"] is True and got["step"] == before + 3


def test_angel_order_status_codes() -> None:
    def order(status: str) -> Any:
        return SimpleNamespace(status=status)

    assert order_status_code(order("OPEN"), was_modified=False) == "AB01"
    assert order_status_code(order("CANCELLED"), was_modified=False) == "AB02"
    assert order_status_code(order("REJECTED"), was_modified=False) == "AB03"
    assert order_status_code(order("OPEN"), was_modified=True) == "AB04"
    assert order_status_code(order("COMPLETE"), was_modified=False) == "AB05"
    assert order_status_code(order("TRIGGER PENDING"), was_modified=False) == "AB10"
