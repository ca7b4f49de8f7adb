"""Fyers sockets on the paper broker.

``ws://HOST:PORT/hsm/v1-5/prod`` behaves like Fyers' HSM data socket as fyers_apiv3's
``data_ws.py`` speaks to it: no credentials in the handshake; binary requests (1 auth with the
token's ``hsm_key``, 12 lite/full mode per channel, 4 subscribe / 5 unsubscribe topics on a
channel, 7/8 pause/resume channels, 3 acknowledgements, the 3-byte ping 00 01 0b answered in
kind), each answered with its type and a "K" status. On each tick-clock step every subscribed
topic of a running channel gets, in one data frame: a snapshot (83) the first time, then in a
full-mode channel an update (85) naming only the fields that changed (nothing when none did),
in a lite channel the last price (76) when it changed. Depth topics (``dp|...``) go before
symbol topics in a frame. Faults for broker "fyers": drop_socket, stall_socket (responses and
pongs stall too), malformed_frame (a data frame whose update packet is cut short),
expire_tokens (sockets close; the old ``hsm_key`` is then refused in the auth answer).
The auth answer asks for an acknowledgement every ACK_EVERY data frames; a client that falls
MAX_UNACKED frames behind gets no data until it acknowledges (``held`` counts the skipped steps).

``ws://HOST:PORT/trade/v3`` is the order socket (fyers_apiv3's ``order_ws.py``): header ``authorization:
<app_id>:<access_token>``; ``{"T": "SUB_ORD", "SLIST": [...], "SUB_T": 1}`` subscribes, the
text ``ping`` is answered ``pong``; each order event of a subscriber to ``orders`` is pushed as
``{"s": "ok", "orders": {...}}`` with the raw field names the SDK maps through ``map.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from paper.fyers import encode as enc
from paper.fyers.payloads import order_socket_message
from paper.orders import PaperOrder
from paper.sockets import Handshake, SessionBound, SocketFaults, TickingSocket, abort, serve_hooked
from paper.state import PaperState
from paper.tickrate import Batch
from paper.universe import PaperInstrument
from paper.users import User

__all__ = ["DATA_PATH", "MAX_CONNECTIONS_PER_USER", "MAX_TOPICS", "ORDER_PATH", "routes"]

DATA_PATH = "/hsm/v1-5/prod"
ORDER_PATH = "/trade/v3"
MAX_TOPICS = 5000  # fyers_apiv3's per-connection symbol limit
MAX_CONNECTIONS_PER_USER = 3
FULL_MODE, LITE_MODE = 70, 76
AUTH, ACK, SUBSCRIBE, UNSUBSCRIBE, PAUSE, RESUME, PING, MODE = 1, 3, 4, 5, 7, 8, 11, 12
REFUSED_GRACE_S = 10.0
# The auth answer asks for an acknowledgement every ACK_EVERY data frames; a client more than
# MAX_UNACKED frames behind gets no data until it acknowledges (the SDK acknowledges as asked).
ACK_EVERY = 10
MAX_UNACKED = 3 * ACK_EVERY
# The Fytoken's exchange and segment digits -> the HSM topic's segment (fyers_apiv3 map.json
# exch_seg_dict): a topic names an instrument only in its own segment.
HSM_SEGMENTS = {"1010": "nse_cm", "1011": "nse_fo", "1210": "bse_cm", "1211": "bse_fo"}
_PACKETS_PER_FRAME = 1000
def _fields(data: bytes) -> dict[int, bytes]:
    """A request's fields (``B`` id, ``>H`` length, value) after the 4-byte head; the head's
    length is not trusted (the SDK sends 0 or miscounts it in some requests)."""
    out: dict[int, bytes] = {}
    off = 4
    for _ in range(data[3] if len(data) > 3 else 0):
        if off + 3 > len(data):
            break
        fid = data[off]
        (n,) = struct.unpack_from(">H", data, off + 1)
        out[fid] = bytes(data[off + 3 : off + 3 + n])
        off += 3 + n
    return out


def _topics(raw: bytes) -> list[str]:
    if len(raw) < 2:
        return []
    (count,) = struct.unpack_from(">H", raw, 0)
    out, off = [], 2
    for _ in range(count):
        if off >= len(raw):
            break
        n = raw[off]
        out.append(raw[off + 1 : off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    return out


def _channels(raw: bytes) -> list[int]:
    bits = int.from_bytes(raw[:8], "big") if raw else 0
    return [ch for ch in range(1, 64) if bits >> ch & 1]


@dataclass
class _Sub:
    topic: str
    kind: str  # sf, if, dp
    inst: PaperInstrument
    channel: int
    tid: bytes
    last: list[int] | None = None  # the values last sent (what the client holds)
    step: int = 0
    values: dict[str, Any] | None = None  # the tick values handed to the encoder


class FyersDataSocket(TickingSocket):
    """One HSM data-socket connection."""

    broker = "fyers"

    def __init__(self, handshake: Handshake) -> None:
        super().__init__(handshake.state, handshake.websocket)
        self.handshake = handshake
        self.hsm_key = ""
        self.channel_modes: dict[int, int] = {}
        self.paused: set[int] = set()
        self.subs: dict[str, _Sub] = {}
        self._ids = itertools.count(1)
        self._message_no = 0
        self._acked_no = 0
        self.held = 0  # data frames not sent for want of an acknowledgement

    # ----- what the clock asks -----
    def wanted(self) -> Iterable[tuple[PaperInstrument, bool]]:
        for sub in list(self.subs.values()):
            if sub.channel not in self.paused:
                yield sub.inst, sub.kind == "dp"

    def _mode_of(self, sub: _Sub) -> str:
        if self.channel_modes.get(sub.channel, FULL_MODE) == LITE_MODE:
            return "ltp"
        return "full" if ("dp" + sub.topic[2:]) in self.subs else "quote"

    def last_sent_for(self, token: str) -> dict[str, Any] | None:
        """Latest values sent for ``token``: a Fytoken, an exchange token ("3045"), a topic name
        or an index name ("Nifty 50"); symbol and index topics, not depth."""
        best: _Sub | None = None
        for sub in self.subs.values():
            if sub.kind == "dp" or sub.values is None:
                continue
            names = (sub.topic, sub.inst.fyers_token, sub.topic.rsplit("|", 1)[-1], sub.inst.fyers_symbol)
            if token in names and (best is None or sub.step > best.step):
                best = sub
        if best is None:
            return None
        return {"mode": self._mode_of(best), "step": best.step, "topic": best.topic, "values": best.values,
                "held": self.held}

    # ----- requests -----
    def handle_bytes(self, data: bytes) -> None:
        if len(data) < 3:
            return
        req = data[2]
        if req == PING:
            self.out.put_nowait(enc.pong())
            return
        fields = _fields(data)
        if req == AUTH:
            self._auth(fields.get(1, b"").decode("utf-8", "replace"))
            return
        if self.user is None:
            self.out.put_nowait(enc.response(req, ok=False))
        else:
            self._request(req, fields)

    def _request(self, req: int, fields: dict[int, bytes]) -> None:
        """A request of an authenticated client: mode, (un)subscribe, pause/resume, acknowledge."""
        if req == MODE:
            mode = fields.get(2, b"\0")[0]
            for ch in _channels(fields.get(1, b"")):
                self.channel_modes[ch] = mode
            self.out.put_nowait(enc.response(MODE, ok=mode in (FULL_MODE, LITE_MODE)))
        elif req in (SUBSCRIBE, UNSUBSCRIBE):
            channel = fields.get(2, b"\x0b")[0]
            topics = _topics(fields.get(1, b""))
            ok = self._subscribe(topics, channel) if req == SUBSCRIBE else self._unsubscribe(topics)
            self.out.put_nowait(enc.response(req, ok=ok))
        elif req in (PAUSE, RESUME):
            for ch in _channels(fields.get(1, b"")):
                (self.paused.add if req == PAUSE else self.paused.discard)(ch)
            self.out.put_nowait(enc.response(req, ok=True))
        elif req == ACK:
            raw = fields.get(1, b"")
            if len(raw) == 4:
                self._acked_no = max(self._acked_no, min(self._message_no, int.from_bytes(raw, "big")))
        else:
            self.out.put_nowait(enc.response(req, ok=False))

    def _auth(self, hsm_key: str) -> None:
        user = self.state.user_for_fyers_hsm(hsm_key)
        open_now = self.state.open_sockets("fyers_data_sockets", user.user_id if user else "")
        if user is None or (self.user is None and len(open_now) >= MAX_CONNECTIONS_PER_USER):
            self.handshake.log(user.user_id if user else None, 403 if user is None else 429)
            # The refusal leaves the socket open (the client sees it and goes), for a while.
            self.out.put_nowait(enc.auth_response(False))
            if self.user is None:
                asyncio.get_running_loop().call_later(REFUSED_GRACE_S, self._close_if_unauthenticated)
            return
        first = self.user is None
        self.user, self.user_id, self.hsm_key = user, user.user_id, hsm_key
        if first:
            self.handshake.log(user.user_id, 101)
            self.hook_up(open_now)
        self.faults = SocketFaults(self.state, "fyers", user.user_id)
        self.out.put_nowait(enc.auth_response(True, ACK_EVERY))

    def _close_if_unauthenticated(self) -> None:
        if self.user is None:
            self.closing.set()

    def _subscribe(self, topics: list[str], channel: int) -> bool:
        ok = True
        for topic in topics:
            kind, _, rest = topic.partition("|")
            segment, _, token = rest.partition("|")
            inst = self.state.by_fyers_topic(token)
            if inst is not None and HSM_SEGMENTS.get(inst.fyers_token[:4]) != segment:
                inst = None
            # An index has if topics only (no depth), anything else sf and dp.
            if inst is None or kind not in ("sf", "if", "dp") or (kind == "if") != inst.is_index:
                ok = False
                continue
            old = self.subs.get(topic)
            if old is None and len(self.subs) >= MAX_TOPICS:
                ok = False
                continue
            if old is not None and old.channel == channel:
                continue
            tid = next(self._ids).to_bytes(2, "big")
            self.subs[topic] = _Sub(topic, kind, inst, channel, tid)
        return ok

    def _unsubscribe(self, topics: list[str]) -> bool:
        for topic in topics:
            self.subs.pop(topic, None)
        return True

    def session_valid(self) -> bool:
        return self.state.user_for_fyers_hsm(self.hsm_key) is not None

    # ----- sending -----
    def packets(self, batch: Batch) -> list[bytes]:
        depth: list[bytes] = []
        rest: list[bytes] = []
        for sub in list(self.subs.values()):
            if sub.channel in self.paused:
                continue
            v = batch.values.get(sub.inst.kite_token)
            if v is None:
                continue
            inst = sub.inst
            if sub.kind == "sf":
                values: list[int] | None = enc.symbol_values(v, max(1, inst.tick_size_paise))
            elif sub.kind == "if":
                values = enc.index_values(v)
            else:
                values = enc.depth_values(v)
            if values is None:
                continue
            packet = self._packet(sub, values)
            sub.step, sub.values = batch.step, v
            if packet is not None:
                (depth if sub.kind == "dp" else rest).append(packet)
        return depth + rest

    def _packet(self, sub: _Sub, values: list[int]) -> bytes | None:
        last, sub.last = sub.last, values
        if last is None:
            inst = sub.inst
            precision = len(str(inst.price_divisor)) - 1  # 100 -> 2: prices in 1/10**precision rupee
            exchange, _, bare = inst.fyers_symbol.partition(":")
            name = inst.angel_symbol if inst.is_index else bare  # SBIN-EQ, NIFTY26D0823250CE
            return enc.snapshot(sub.tid, sub.topic, values, 1, precision, exchange, inst.fyers_exchange_token, name)
        if self.channel_modes.get(sub.channel, FULL_MODE) == LITE_MODE:
            # The last price alone, when it changed; a depth topic sends nothing in lite mode.
            if sub.kind == "dp" or values[0] == last[0]:
                return None
            return enc.lite(sub.tid, values[0])
        delta = [v if v != old else enc.NO_VALUE for v, old in zip(values, last, strict=True)]
        if all(v == enc.NO_VALUE for v in delta):
            return None
        return enc.update(sub.tid, delta)

    def _frame(self, packets: list[bytes]) -> bytes:
        self._message_no += 1
        return enc.data_frame(self._message_no, packets)

    def _malformed_frame(self) -> bytes:
        """A data frame whose single update packet stops inside its first value."""
        tid = next(iter(self.subs.values())).tid if self.subs else b"\0\1"
        return self._frame([bytes([enc.UPDATE]) + tid + bytes([enc.SYMBOL_FIELDS]) + b"\0\0"])

    async def send_ticks(self) -> None:
        ws = self.websocket
        # Faults are taken once authenticated (the user is known then), as Shoonya's socket does.
        async for batch in self.batches(ready=lambda: self.user is not None):
            if self.faults.take_malformed():
                await ws.send_bytes(self._malformed_frame())
            if batch is None:
                continue
            if self._message_no - self._acked_no >= MAX_UNACKED:
                self.held += 1
                continue
            packets = self.packets(batch)
            for i in range(0, len(packets), _PACKETS_PER_FRAME):
                await ws.send_bytes(self._frame(packets[i : i + _PACKETS_PER_FRAME]))


class FyersOrderSocket(SessionBound):
    """One order-socket connection."""

    broker = "fyers"

    def __init__(self, state: PaperState, websocket: WebSocket, user: User, token: str) -> None:
        super().__init__(state, websocket, user)
        self.token = token
        self.kinds: set[str] = set()

    def on_order(self, order: PaperOrder) -> None:
        if "orders" in self.kinds:
            self.push_update(order_socket_message(order))

    def handle_text(self, text: str) -> None:
        if text == "ping":
            self.out.put_nowait("pong")
            return
        try:
            msg = json.loads(text)
            kinds = {str(k) for k in msg["SLIST"]}
            subscribe = int(msg["SUB_T"]) == 1
            if msg.get("T") != "SUB_ORD":
                raise ValueError("not a subscription")
        except (ValueError, KeyError, TypeError):
            self.out.put_nowait(json.dumps({"s": "error", "code": -50, "message": "Invalid request"}))
            return
        if subscribe:
            self.kinds |= kinds
        else:
            self.kinds -= kinds
        self.out.put_nowait(json.dumps(
            {"s": "ok", "code": 1605 if subscribe else 1606,
             "message": "Successfully subscribed" if subscribe else "Successfully unsubscribed"}
        ))  # fmt: skip

    def session_valid(self) -> bool:
        return self.state.user_for_fyers_token(self.token) is not None


def routes(state: PaperState) -> list[BaseRoute]:
    """``/hsm/v1-5/prod`` and ``/trade/v3``."""

    async def data_socket(websocket: WebSocket) -> None:
        handshake = Handshake(state, websocket, "fyers", DATA_PATH)
        await websocket.accept()
        sock = FyersDataSocket(handshake)
        try:
            # The user comes with the auth request, which hooks the socket up (FyersDataSocket._auth).
            await serve_hooked(sock)
        finally:
            if sock.user is None and not sock.dropped:
                with contextlib.suppress(Exception):
                    await abort(websocket)

    async def order_socket(websocket: WebSocket) -> None:
        handshake = Handshake(state, websocket, "fyers", ORDER_PATH)
        header = websocket.headers.get("authorization", "").strip()
        app_id, _, token = header.rpartition(":")
        user = state.user_for_fyers_token(token, app_id or None) if token else None
        if user is None:
            await handshake.deny(None, 403 if token else 401)
            return
        open_now = state.open_sockets("fyers_order_sockets", user.user_id)
        if not await handshake.admit(user.user_id, open_now, MAX_CONNECTIONS_PER_USER):
            return
        sock = FyersOrderSocket(state, websocket, user, token)
        sock.hook_up(open_now, orders=True)
        await serve_hooked(sock)

    return [WebSocketRoute(DATA_PATH, data_socket), WebSocketRoute(ORDER_PATH, order_socket)]
