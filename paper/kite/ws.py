"""Kite ticker on the paper broker: ``ws://HOST:PORT/kite-ticker?api_key=..&access_token=..``.

Behaves like ``wss://ws.kite.trade`` (docs/brokers.md): JSON text commands ``subscribe``,
``unsubscribe`` and ``mode``; binary frames of many big-endian packets on the tick clock
(:mod:`paper.tickrate`); a 1-byte heartbeat when idle for a second; ``{"type": "order"}``
text messages on order events; ``{"type": "error"}`` text messages for refused commands.
Invalid or expired tokens are refused at the handshake with 403; a fourth socket on one
API key with 429. Faults for broker "kite": drop_socket, stall_socket, malformed_frame,
and expire_tokens (sockets of the user close; their token then gets 403).

``routes(state)`` also returns the tick control routes of :mod:`paper.tickrate`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from paper.kite import encode
from paper.kite.payloads import kite_order_payload
from paper.orders import PaperOrder
from paper.sockets import Handshake, TickingSocket, serve_hooked
from paper.state import PaperState
from paper.tickrate import Batch, control_routes
from paper.universe import PaperInstrument
from paper.users import User

__all__ = ["KITE_TICKER_PATH", "MAX_CONNECTIONS_PER_API_KEY", "MAX_INSTRUMENTS", "KiteSocket", "routes"]

KITE_TICKER_PATH = "/kite-ticker"
MAX_INSTRUMENTS = 3000
MAX_CONNECTIONS_PER_API_KEY = 3
HEARTBEAT_S = 1.0
MODES = ("ltp", "quote", "full")


def _encode_item(inst: PaperInstrument, mode: str, v: dict[str, Any]) -> bytes | None:
    """One length-prefixed packet for ``mode``; None when the values lack what it needs."""
    token = inst.kite_token
    if mode == "ltp":
        return encode.kite_ltp_item(token, v["last_price"])
    if inst.is_index:
        ohlc = (v["last_price"], v["high"], v["low"], v["open"], v["close"], v["change_paise"])
        if mode == "full":
            return encode.kite_item(encode.kite_index_full(token, *ohlc, v["exchange_timestamp"]))
        return encode.kite_item(encode.kite_index_quote(token, *ohlc))
    quote = (
        token, v["last_price"], v["last_quantity"], v["average_price"], v["volume"],
        v["buy_quantity"], v["sell_quantity"], v["open"], v["high"], v["low"], v["close"],
    )
    if mode == "quote":
        return encode.kite_quote_item(*quote)
    depth = v.get("depth")
    if depth is None:
        return None
    levels = [(d["quantity"], d["price"], d["orders"]) for d in depth["buy"][:5] + depth["sell"][:5]]
    return encode.kite_item(
        encode.kite_full(
            *quote, v["last_trade_time"], v["oi"], v["oi_day_high"], v["oi_day_low"],
            v["exchange_timestamp"], levels,
        )
    )


class KiteSocket(TickingSocket):
    """One accepted ticker connection."""

    broker = "kite"

    def __init__(self, state: PaperState, websocket: WebSocket, user: User, access_token: str) -> None:
        super().__init__(state, websocket, user)
        self.api_key = user.api_key
        self.access_token = access_token
        self.modes: dict[int, str] = {}
        self.instruments: dict[int, PaperInstrument] = {}
        # token -> (mode, step, values handed to the encoder)
        self.last_sent: dict[int, tuple[str, int, dict[str, Any]]] = {}

    # ----- what the clock asks -----
    def wanted(self) -> Iterable[tuple[PaperInstrument, bool]]:
        instruments = self.instruments
        for token, mode in self.modes.items():
            inst = instruments[token]
            yield inst, mode == "full" and not inst.is_index

    def last_sent_for(self, token: str) -> dict[str, Any] | None:
        try:
            entry = self.last_sent.get(int(token))
        except ValueError:
            return None
        if entry is None:
            return None
        mode, step, values = entry
        return {"mode": mode, "step": step, "values": values}

    # ----- commands -----
    def handle_text(self, text: str) -> None:
        try:
            msg = json.loads(text)
            action = msg["a"]
            value = msg["v"]
        except (ValueError, KeyError, TypeError):
            return  # Kite ignores what it cannot read
        if action == "subscribe":
            self._subscribe(value, "quote")
        elif action == "unsubscribe":
            for token in self._tokens(value):
                self.modes.pop(token, None)
                self.instruments.pop(token, None)
                self.last_sent.pop(token, None)
        elif action == "mode":
            if not (isinstance(value, list) and len(value) == 2 and value[0] in MODES):
                self.send_error(f"Invalid mode: {value!r}")
                return
            # Only subscribed tokens change mode: a client that forgot to subscribe must see
            # nothing here, as on the real ticker.
            for token in self._tokens(value[1]):
                if token in self.modes:
                    self.modes[token] = value[0]

    @staticmethod
    def _tokens(value: Any) -> list[int]:
        tokens: list[int] = []
        for item in value if isinstance(value, list) else []:
            with contextlib.suppress(TypeError, ValueError):
                tokens.append(int(item))
        return tokens

    def _subscribe(self, value: Any, mode: str) -> None:
        refused = 0
        for token in self._tokens(value):
            inst = self.state.by_kite_token(token)
            if inst is None:
                continue  # unknown tokens are silently ignored, as Kite does
            if token not in self.modes and len(self.modes) >= MAX_INSTRUMENTS:
                refused += 1
                continue
            self.modes[token] = mode
            self.instruments[token] = inst
        if refused:
            self.send_error(
                f"Subscription limit exceeded: at most {MAX_INSTRUMENTS} instruments per connection "
                f"({refused} not subscribed)"
            )

    def send_error(self, message: str) -> None:
        self.out.put_nowait(json.dumps({"type": "error", "data": message}))

    # ----- events from the state -----
    def on_order(self, order: PaperOrder) -> None:
        self.push_update(json.dumps({"type": "order", "data": kite_order_payload(order)}, default=str))

    def session_valid(self) -> bool:
        return self.state.user_for_kite_token(self.api_key, self.access_token) is not None

    # ----- sending -----
    def frame_items(self, batch: Batch) -> list[bytes]:
        """Encoded packets of this socket for ``batch``; remembers what was sent."""
        items: list[bytes] = []
        cache = batch.items
        values = batch.values
        instruments = self.instruments
        for token, mode in self.modes.items():
            v = values.get(token)
            if v is None:
                continue  # subscribed after this step was computed
            key = (token, mode)
            item = cache.get(key)
            if item is None:
                item = _encode_item(instruments[token], mode, v)
                if item is None:
                    continue  # switched to full after the step: depth comes next step
                cache[key] = item
            items.append(item)
            self.last_sent[token] = (mode, batch.step, v)
        return items

    async def send_ticks(self) -> None:
        """The binary side: frames on each clock step, heartbeats when idle, faults."""
        ws = self.websocket
        last_send = time.monotonic()
        async for batch in self.batches():
            items = self.frame_items(batch) if batch is not None else []
            if self.faults.take_malformed():
                frame = encode.kite_malformed_frame([item[2:] for item in items] or [encode.kite_ltp(0, 0)])
            elif items:
                frame = encode.kite_frame_items(items)
            elif time.monotonic() - last_send >= HEARTBEAT_S:
                frame = encode.KITE_HEARTBEAT
            else:
                continue
            await ws.send_bytes(frame)
            last_send = time.monotonic()


def routes(state: PaperState) -> list[BaseRoute]:
    """The ticker route plus the tick control routes (``/_paper/ticks*``)."""

    async def kite_ticker(websocket: WebSocket) -> None:
        handshake = Handshake(state, websocket, "kite", KITE_TICKER_PATH)
        api_key = websocket.query_params.get("api_key", "")
        access_token = websocket.query_params.get("access_token", "")
        user = state.user_for_kite_token(api_key, access_token) if api_key and access_token else None
        if user is None:
            # Attribute the refusal to the api_key's owner when known, so a test (or the lead
            # reading the log) sees whose stale token was refused.
            owner = state.user_where("kite", lambda u: u.api_key == api_key)
            await handshake.deny(owner.user_id if owner else None, 403)
            return
        open_for_key = state.open_sockets("kite_sockets", api_key)
        refusal = "Too many connections for this api_key"
        if not await handshake.admit(user.user_id, open_for_key, MAX_CONNECTIONS_PER_API_KEY, refusal):
            return
        sock = KiteSocket(state, websocket, user, access_token)
        sock.hook_up(open_for_key, orders=True)
        await serve_hooked(sock)

    out: list[BaseRoute] = [WebSocketRoute(KITE_TICKER_PATH, kite_ticker)]
    out.extend(control_routes(state))
    return out

