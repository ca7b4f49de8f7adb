"""Angel One sockets on the paper broker.

``ws://HOST:PORT/smart-stream`` behaves like SmartWebSocketV2's server: handshake headers
``Authorization`` (the JWT, with or without "Bearer "), ``x-api-key``, ``x-client-code``,
``x-feed-token`` (or the query parameters ``clientCode``, ``feedToken``, ``apiKey`` that
Angel accepts from browsers); JSON subscribe/unsubscribe by mode (1 LTP, 2 Quote, 3 Snap
Quote) and exchange type; text ``ping`` answered by ``pong``; one little-endian packet per
binary message, for each subscribed (token, mode) on every tick-clock step. Faults for
broker "angel": drop_socket, stall_socket, malformed_frame (a Snap Quote header on an LTP
sized packet), expire_tokens (sockets close; the JWT then gets 403).

``ws://HOST:PORT/smart-order-update`` (``Authorization: Bearer <jwt>``): an AB00 message on
connect, then one JSON message per order event with Angel's ``order-status`` codes; ``ping``
is answered by ``pong``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from paper.angel import encode
from paper.angel.payloads import angel_order_payload, order_status_code
from paper.orders import PaperOrder
from paper.sockets import Handshake, SessionBound, TickingSocket, serve_hooked
from paper.state import PaperState
from paper.tickrate import Batch
from paper.universe import PaperInstrument
from paper.users import User, bearer_token

__all__ = [
    "ANGEL_ORDER_UPDATE_PATH",
    "ANGEL_STREAM_PATH",
    "MAX_CONNECTIONS_PER_CLIENT",
    "MAX_TOKENS",
    "AngelOrderSocket",
    "AngelStreamSocket",
    "routes",
]

ANGEL_STREAM_PATH = "/smart-stream"
ANGEL_ORDER_UPDATE_PATH = "/smart-order-update"
# Angel's documented limits: 1,000 token subscriptions per session, 3 sockets per client code.
MAX_TOKENS = 1000
MAX_CONNECTIONS_PER_CLIENT = 3
MODES = (encode.ANGEL_MODE_LTP, encode.ANGEL_MODE_QUOTE, encode.ANGEL_MODE_SNAP_QUOTE)
_EMPTY_LEVEL = (0, 0, 0)

# Angel's error replies on the stream (correlationID echoes the request's).
E_INVALID_PAYLOAD = ("E1001", "Invalid Request Payload.")
E_LIMIT = ("E1002", "Invalid Request. Subscription Limit Exceeded.")


def _encode_packet(inst: PaperInstrument, mode: int, v: dict[str, Any]) -> bytes | None:
    """One binary message for ``mode``; None when the values lack what it needs (depth)."""
    head = (inst.angel_exchange_type, inst.angel_token, v["sequence"], v["exchange_timestamp_ms"], v["last_price"])
    if mode == encode.ANGEL_MODE_LTP:
        return encode.angel_ltp(*head)
    quote = (
        *head, v["last_quantity"], v["average_price"], v["volume"],
        float(v["buy_quantity"]), float(v["sell_quantity"]), v["open"], v["high"], v["low"], v["close"],
    )
    if mode == encode.ANGEL_MODE_QUOTE:
        return encode.angel_quote(*quote)
    depth = v.get("depth")
    if depth is None or "upper_circuit" not in v:
        return None
    bids = [(d["quantity"], d["price"], d["orders"]) for d in depth["buy"][:5]]
    asks = [(d["quantity"], d["price"], d["orders"]) for d in depth["sell"][:5]]
    bids += [_EMPTY_LEVEL] * (5 - len(bids))
    asks += [_EMPTY_LEVEL] * (5 - len(asks))
    return encode.angel_snap_quote(
        *quote, v["last_trade_time"] * 1000, v["oi"], 0.0, bids, asks,
        v["upper_circuit"], v["lower_circuit"], v["week52_high"], v["week52_low"],
    )


def _malformed_packet(inst: PaperInstrument | None) -> bytes:
    """A packet whose mode byte says Snap Quote (379 bytes) but which is only 51 long."""
    ltp = encode.angel_ltp(
        inst.angel_exchange_type if inst else 1, inst.angel_token if inst else "0", 0, 0, 0
    )
    return bytes([encode.ANGEL_MODE_SNAP_QUOTE]) + ltp[1:]


class AngelStreamSocket(TickingSocket):
    """One accepted SmartWebSocketV2 connection."""

    broker = "angel"

    def __init__(self, state: PaperState, websocket: WebSocket, user: User, jwt: str) -> None:
        super().__init__(state, websocket, user)
        self.jwt = jwt
        # (exchange type, token) -> modes subscribed; Angel streams each mode separately.
        self.subs: dict[tuple[int, str], set[int]] = {}
        self.instruments: dict[tuple[int, str], PaperInstrument] = {}
        # (exchange type, token) -> mode -> (step, values handed to the encoder)
        self.last_sent: dict[tuple[int, str], dict[int, tuple[int, dict[str, Any]]]] = {}

    # ----- what the clock asks -----
    def wanted(self) -> Iterable[tuple[PaperInstrument, bool]]:
        for key, modes in self.subs.items():
            if modes:
                yield self.instruments[key], encode.ANGEL_MODE_SNAP_QUOTE in modes

    def last_sent_for(self, token: str) -> dict[str, Any] | None:
        """Latest packet sent for ``token`` ("3045" or "1:3045"), with every mode's in ``by_mode``."""
        if ":" in token:
            ex, _, tok = token.partition(":")
            keys = [(int(ex), tok)]
        else:
            keys = [k for k in self.last_sent if k[1] == token]
        best: dict[str, Any] | None = None
        for key in keys:
            by_mode = self.last_sent.get(key)
            if not by_mode:
                continue
            mode, (step, values) = max(by_mode.items(), key=lambda kv: (kv[1][0], kv[0]))
            best = {
                "mode": mode,
                "step": step,
                "exchange_type": key[0],
                "token": key[1],
                "values": values,
                "by_mode": {str(m): {"step": s, "values": v} for m, (s, v) in by_mode.items()},
            }
        return best

    # ----- commands -----
    def handle_text(self, text: str) -> None:
        if text == "ping":
            self.out.put_nowait("pong")
            return
        try:
            msg = json.loads(text)
            action = int(msg["action"])
            params = msg["params"]
            mode = int(params["mode"])
            token_list = params["tokenList"]
            correlation_id = str(msg.get("correlationID", ""))
            if action not in (0, 1) or not isinstance(token_list, list):
                raise ValueError("bad action or tokenList")
        except (ValueError, KeyError, TypeError):
            self.send_error("", E_INVALID_PAYLOAD)
            return
        if mode not in MODES:
            # Depth-20 (mode 4) was withdrawn by Angel in 2025; other modes do not exist.
            self.send_error(correlation_id, E_INVALID_PAYLOAD)
        elif not self._apply(action, mode, token_list, correlation_id):
            self.send_error(correlation_id, E_LIMIT)

    def _apply(self, action: int, mode: int, token_list: list[Any], correlation_id: str) -> bool:
        """(Un)subscribe every token group; False when a subscription was refused for the limit."""
        refused = False
        for group in token_list:
            try:
                exchange_type = int(group["exchangeType"])
                tokens = [str(t) for t in group["tokens"]]
            except (KeyError, TypeError, ValueError):
                self.send_error(correlation_id, E_INVALID_PAYLOAD)
                continue
            for token in tokens:
                if action == 0:
                    self._unsubscribe((exchange_type, token), mode)
                elif not self._subscribe((exchange_type, token), mode):
                    refused = True
        return not refused

    def _subscribe(self, key: tuple[int, str], mode: int) -> bool:
        """Stream ``mode`` of ``key``; False when refused for the token limit (unknown tokens
        are ignored, as at Angel)."""
        inst = self.state.by_angel_token(*key)
        if inst is None:
            return True
        if key not in self.subs and len(self.subs) >= MAX_TOKENS:
            return False
        self.subs.setdefault(key, set()).add(mode)
        self.instruments[key] = inst
        return True

    def _unsubscribe(self, key: tuple[int, str], mode: int) -> None:
        modes = self.subs.get(key)
        if modes is None:
            return
        modes.discard(mode)
        self.last_sent.get(key, {}).pop(mode, None)
        if not modes:
            del self.subs[key]
            self.instruments.pop(key, None)
            self.last_sent.pop(key, None)

    def send_error(self, correlation_id: str, error: tuple[str, str]) -> None:
        code, message = error
        self.out.put_nowait(
            json.dumps({"correlationID": correlation_id, "errorCode": code, "errorMessage": message})
        )

    def session_valid(self) -> bool:
        return self.state.user_for_angel_jwt(self.jwt) is not None

    # ----- sending -----
    def packets(self, batch: Batch) -> list[tuple[tuple[int, str], int, bytes]]:
        """((exchange type, token), mode, packet) for every subscription in ``batch``."""
        out: list[tuple[tuple[int, str], int, bytes]] = []
        cache = batch.items
        for key, modes in self.subs.items():
            inst = self.instruments[key]
            v = batch.values.get(inst.kite_token)
            if v is None:
                continue
            sent = self.last_sent.setdefault(key, {})
            for mode in sorted(modes):
                cache_key = (inst.kite_token, f"angel{mode}:{key[0]}")
                packet = cache.get(cache_key)
                if packet is None:
                    packet = _encode_packet(inst, mode, v)
                    if packet is None:
                        continue
                    cache[cache_key] = packet
                out.append((key, mode, packet))
                sent[mode] = (batch.step, v)
        return out

    async def send_ticks(self) -> None:
        ws = self.websocket
        async for batch in self.batches():
            if self.faults.take_malformed():
                first = next(iter(self.instruments.values()), None)
                await ws.send_bytes(_malformed_packet(first))
            if batch is None:
                continue
            # One packet per binary message, as Angel sends them. Each send may yield, so a
            # subscription dropped meanwhile is checked again before its packet goes out.
            for key, mode, packet in self.packets(batch):
                if mode in self.subs.get(key, ()):
                    await ws.send_bytes(packet)


def _blank_order_data() -> dict[str, Any]:
    """The empty ``orderData`` of the AB00 greeting, shaped as Angel's."""
    return {
        "variety": "", "ordertype": "", "ordertag": "", "producttype": "", "price": 0,
        "triggerprice": 0, "quantity": "0", "disclosedquantity": "0", "duration": "",
        "squareoff": 0, "stoploss": 0, "trailingstoploss": 0, "tradingsymbol": "",
        "transactiontype": "", "exchange": "", "symboltoken": "", "instrumenttype": "",
        "strikeprice": 0, "optiontype": "", "expirydate": "", "lotsize": "0", "cancelsize": "0",
        "averageprice": 0, "filledshares": "", "unfilledshares": "", "orderid": "", "text": "",
        "status": "", "orderstatus": "", "updatetime": "", "exchtime": "",
        "exchorderupdatetime": "", "fillid": "", "filltime": "", "parentorderid": "",
    }


class AngelOrderSocket(SessionBound):
    """One accepted smart-order-update connection."""

    broker = "angel"

    def __init__(self, state: PaperState, websocket: WebSocket, user: User, jwt: str) -> None:
        super().__init__(state, websocket, user)
        self.jwt = jwt

    def message(self, code: str, order: PaperOrder | None) -> str:
        error = (order.status_message or "") if order is not None and order.status == "REJECTED" else ""
        return json.dumps(
            {
                "user-id": self.user_id,
                "status-code": "200",
                "order-status": code,
                "error-message": error,
                "orderData": angel_order_payload(order) if order is not None else _blank_order_data(),
            },
            default=str,
        )

    def on_order(self, order: PaperOrder) -> None:
        self.push_update(self.message(order_status_code(order, self.was_modified(order)), order))

    def handle_text(self, text: str) -> None:
        if text == "ping":
            self.out.put_nowait("pong")

    def session_valid(self) -> bool:
        return self.state.user_for_angel_jwt(self.jwt) is not None


def routes(state: PaperState) -> list[BaseRoute]:
    """``/smart-stream`` and ``/smart-order-update``."""

    async def smart_stream(websocket: WebSocket) -> None:
        handshake = Handshake(state, websocket, "angel", ANGEL_STREAM_PATH)
        h = websocket.headers
        q = websocket.query_params
        jwt = bearer_token(h.get("authorization", ""))
        client_code = h.get("x-client-code") or q.get("clientCode", "")
        feed_token = h.get("x-feed-token") or q.get("feedToken", "")
        api_key = h.get("x-api-key") or q.get("apiKey", "")
        user = state.user_for_angel_feed(client_code, feed_token) if client_code and feed_token else None
        # The browser form carries no JWT; with headers the JWT must belong to the same user.
        if user is not None and jwt and state.user_for_angel_jwt(jwt) is not user:
            user = None
        if user is not None and api_key and api_key != user.api_key:
            user = None
        if user is None:
            await handshake.deny(client_code or None, 403)
            return
        open_for_client = state.open_sockets("angel_stream_sockets", user.user_id)
        if not await handshake.admit(user.user_id, open_for_client, MAX_CONNECTIONS_PER_CLIENT):
            return
        sock = AngelStreamSocket(state, websocket, user, jwt or (user.jwt_token or ""))
        sock.hook_up(open_for_client)
        await serve_hooked(sock)

    async def smart_order_update(websocket: WebSocket) -> None:
        handshake = Handshake(state, websocket, "angel", ANGEL_ORDER_UPDATE_PATH)
        jwt = bearer_token(websocket.headers.get("authorization", ""))
        user = state.user_for_angel_jwt(jwt) if jwt else None
        if user is None:
            # Angel: 401 for a missing/invalid token, 403 for an expired one; a forgotten
            # session cannot be told from an invalid one here, so a present token gets 403.
            await handshake.deny(None, 403 if jwt else 401)
            return
        open_for_client = state.open_sockets("angel_order_sockets", user.user_id)
        if not await handshake.admit(user.user_id, open_for_client, MAX_CONNECTIONS_PER_CLIENT):
            return
        sock = AngelOrderSocket(state, websocket, user, jwt)
        sock.out.put_nowait(sock.message("AB00", None))
        sock.hook_up(open_for_client, orders=True)
        await serve_hooked(sock)

    return [
        WebSocketRoute(ANGEL_STREAM_PATH, smart_stream),
        WebSocketRoute(ANGEL_ORDER_UPDATE_PATH, smart_order_update),
    ]
