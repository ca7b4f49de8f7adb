"""Shoonya's WebSocket on the paper broker: ``ws://HOST:PORT/NorenWSTP/``.

Behaves like ``wss://api.shoonya.com/NorenWSTP/`` as NorenRestApiPy speaks to it: JSON text both
ways. The handshake needs nothing; the first message must be ``{"t": "c", "uid", "actid",
"susertoken", "source"}``, answered ``{"t": "ck", "s": "OK", "uid"}``, or, for a session key that
is not (or no longer) valid, ``{"t": "ck", "s": "NOT_OK", "emsg"}`` and a close; that refusal is
logged as the handshake's 403 (an accepted connect as its 101), so the request log reads as for
the other brokers. Then:

- ``{"t": "t"|"d", "k": "NSE|3045#..."}`` subscribes touchline or depth: ``tk``/``dk`` with every
  field once, then on each tick-clock step ``tf``/``df`` with the fields that changed (nothing
  when nothing did); ``"u"``/``"ud"`` unsubscribe. Prices are rupee strings with two decimals.
- ``{"t": "o"}`` is acknowledged ``{"t": "ok"}``; order events of the user arrive as ``om``
  messages (the order-book row plus ``reporttype``) from the connect on, subscribed or not.
- WebSocket ping frames (the SDK's heartbeat) are answered by the server library with pongs.

Faults for broker "shoonya": drop_socket (TCP cut, no close frame), stall_socket (nothing sent
and the connection's reading paused, so pings go unanswered, for ``duration_s``),
malformed_frame (one message cut short), expire_tokens (sockets of the user close; their key is
then refused at connect). At most 3 sockets a user (a fourth is refused at connect).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from paper.orders import PaperOrder
from paper.shoonya.master import trading_symbol
from paper.shoonya.payloads import report_type, rupees_text, shoonya_order_payload
from paper.sockets import (
    CLOSE,
    Handshake,
    SocketFaults,
    TickingSocket,
    serve_hooked,
    transport_of,
)
from paper.state import PaperState
from paper.tickrate import Batch
from paper.universe import PaperInstrument

__all__ = ["MAX_CONNECTIONS_PER_USER", "MAX_KEYS", "SHOONYA_WS_PATH", "ShoonyaSocket", "fields_of", "routes"]

SHOONYA_WS_PATH = "/NorenWSTP/"
MAX_KEYS = 1000
MAX_CONNECTIONS_PER_USER = 3
_UNSUBSCRIBE = {"u": "t", "ud": "d"}  # unsubscribe type -> stream (a subscribe type is its stream)


def fields_of(inst: PaperInstrument, v: dict[str, Any], depth: bool) -> dict[str, str]:
    """The market fields of one instrument for a touchline (``depth`` False) or depth message, as
    Noren names them, every value a string (prices in rupees)."""
    div = inst.price_divisor
    close = v["close"]
    f = {
        "lp": rupees_text(v["last_price"], div),
        "pc": f"{(v['last_price'] - close) * 100 / close:.2f}" if close else "0.00",
        "o": rupees_text(v["open"], div),
        "h": rupees_text(v["high"], div),
        "l": rupees_text(v["low"], div),
        "c": rupees_text(close, div),
        "ft": str(v["exchange_timestamp"]),
    }
    if not inst.is_index:
        f.update(ap=rupees_text(v["average_price"], div), v=str(v["volume"]), ltq=str(v["last_quantity"]),
                 oi=str(v["oi"]))  # fmt: skip
    book = v.get("depth")
    if book is not None and not inst.is_index:
        levels = range(1, 6) if depth else range(1, 2)
        for i in levels:
            b, s = book["buy"][i - 1], book["sell"][i - 1]
            f[f"bp{i}"], f[f"bq{i}"] = rupees_text(b["price"], div), str(b["quantity"])
            f[f"sp{i}"], f[f"sq{i}"] = rupees_text(s["price"], div), str(s["quantity"])
            if depth:
                f[f"bo{i}"], f[f"so{i}"] = str(b["orders"]), str(s["orders"])
        if depth:
            f.update(tbq=str(v["buy_quantity"]), tsq=str(v["sell_quantity"]),
                     ltt=time.strftime("%H:%M:%S", time.localtime(v["last_trade_time"])))  # fmt: skip
            if "upper_circuit" in v:
                f.update(uc=rupees_text(v["upper_circuit"], div), lc=rupees_text(v["lower_circuit"], div))
    return f


class ShoonyaSocket(TickingSocket):
    """One accepted connection; a user once its connect message was accepted."""

    broker = "shoonya"

    def __init__(self, handshake: Handshake) -> None:
        super().__init__(handshake.state, handshake.websocket)
        self.handshake = handshake
        self.susertoken = ""
        self.subs: dict[str, set[str]] = {}  # "NSE|3045" -> streams ("t", "d")
        self.instruments: dict[str, PaperInstrument] = {}
        # key -> stream -> fields last sent (what the next delta is computed against)
        self.sent_fields: dict[str, dict[str, dict[str, str]]] = {}
        # key -> stream -> (step, values handed to the encoder)
        self.last_sent: dict[str, dict[str, tuple[int, dict[str, Any]]]] = {}
        self.reading_paused = False

    # ----- what the clock asks -----
    def wanted(self) -> Iterable[tuple[PaperInstrument, bool]]:
        for key, streams in self.subs.items():
            if streams:
                # Touchline carries the best bid and ask too, so every subscription wants the book.
                yield self.instruments[key], True

    def last_sent_for(self, token: str) -> dict[str, Any] | None:
        """Latest message sent for ``token`` ("3045" or "NSE|3045"): ``mode`` is "full" for depth
        and "quote" for touchline, ``by_mode`` has the ltp/quote (touchline) and full (depth)
        values."""
        keys = [token] if "|" in token else [k for k in self.last_sent if k.partition("|")[2] == token]
        best: dict[str, Any] | None = None
        for key in keys:
            streams = self.last_sent.get(key)
            if not streams:
                continue
            stream, (step, values) = max(streams.items(), key=lambda kv: (kv[1][0], kv[0]))
            by_mode: dict[str, Any] = {}
            if "t" in streams:
                by_mode["ltp"] = by_mode["quote"] = {"step": streams["t"][0], "values": streams["t"][1]}
            if "d" in streams:
                by_mode["full"] = {"step": streams["d"][0], "values": streams["d"][1]}
            best = {"mode": "full" if stream == "d" else "quote", "step": step, "key": key, "values": values,
                    "by_mode": by_mode}  # fmt: skip
        return best

    # ----- commands -----
    def handle_text(self, text: str) -> None:
        try:
            msg = json.loads(text)
            kind = str(msg["t"])
        except (ValueError, KeyError, TypeError):
            return  # Noren ignores what it cannot read
        if self.user is None:
            if kind == "c":
                self._connect(msg)
            return
        if kind in ("t", "d"):
            self._subscribe(kind, str(msg.get("k") or ""))
        elif kind in _UNSUBSCRIBE:
            self._unsubscribe(_UNSUBSCRIBE[kind], str(msg.get("k") or ""))
        elif kind == "o":
            self.out.put_nowait(json.dumps({"t": "ok"}))

    def _connect(self, msg: dict[str, Any]) -> None:
        state = self.state
        token = str(msg.get("susertoken") or "")
        uid = str(msg.get("uid") or "")
        user = state.user_for_shoonya_token(token)
        if user is not None and uid and uid != user.user_id:
            user = None
        if user is None:
            self.handshake.log(uid or None, 403)
            self._refuse("Session Expired : Invalid Session Key")
            return
        open_now = state.open_sockets("shoonya_sockets", user.user_id)
        if len(open_now) >= MAX_CONNECTIONS_PER_USER:
            self.handshake.log(user.user_id, 429)
            self._refuse("Connection limit exceeded")
            return
        self.handshake.log(user.user_id, 101)
        self.user, self.user_id, self.susertoken = user, user.user_id, token
        self.faults = SocketFaults(state, "shoonya", user.user_id)
        self.hook_up(open_now, orders=True)
        self.out.put_nowait(json.dumps({"t": "ck", "s": "OK", "uid": user.user_id}))

    def _refuse(self, emsg: str) -> None:
        self.out.put_nowait(json.dumps({"t": "ck", "s": "NOT_OK", "emsg": emsg}))
        self.out.put_nowait(CLOSE)

    def _keys(self, k: str) -> list[str]:
        return [part for part in k.split("#") if "|" in part]

    def _subscribe(self, stream: str, k: str) -> None:
        for key in self._keys(k):
            exchange, _, token = key.partition("|")
            inst = self.state.by_shoonya_token(exchange, token)
            if inst is None:
                continue  # unknown scrips are ignored
            if key not in self.subs and len(self.subs) >= MAX_KEYS:
                continue
            self.subs.setdefault(key, set()).add(stream)
            self.instruments[key] = inst
            # A (re)subscription starts with the full snapshot (tk/dk).
            self.sent_fields.setdefault(key, {}).pop(stream, None)

    def _unsubscribe(self, stream: str, k: str) -> None:
        for key in self._keys(k):
            streams = self.subs.get(key)
            if streams is None:
                continue
            streams.discard(stream)
            self.sent_fields.get(key, {}).pop(stream, None)
            self.last_sent.get(key, {}).pop(stream, None)
            if not streams:
                for table in (self.subs, self.instruments, self.sent_fields, self.last_sent):
                    table.pop(key, None)  # type: ignore[attr-defined]

    # ----- events from the state -----
    def on_order(self, order: PaperOrder) -> None:
        body = {"t": "om", **shoonya_order_payload(order), "reporttype": report_type(order, self.was_modified(order))}
        body.pop("stat", None)
        self.push_update(json.dumps(body))

    def session_valid(self) -> bool:
        return self.state.user_for_shoonya_token(self.susertoken) is not None

    # ----- sending -----
    def messages(self, batch: Batch) -> list[tuple[str, str, dict[str, str]]]:
        """(key, stream, message) for every subscription in ``batch`` that has something to say."""
        out: list[tuple[str, str, dict[str, str]]] = []
        for key, streams in self.subs.items():
            inst = self.instruments[key]
            v = batch.values.get(inst.kite_token)
            if v is None:
                continue
            sent = self.sent_fields.setdefault(key, {})
            recorded = self.last_sent.setdefault(key, {})
            for stream in sorted(streams):
                fields = fields_of(inst, v, stream == "d")
                before = sent.get(stream)
                head = {"t": f"{stream}{'k' if before is None else 'f'}", "e": inst.exchange, "tk": inst.shoonya_token}
                if before is None:
                    head.update(ts=trading_symbol(inst), pp="2", ls=str(inst.lot_size),
                                ti=rupees_text(inst.tick_size_paise, inst.price_divisor))  # fmt: skip
                    changed = fields
                else:
                    changed = {name: value for name, value in fields.items() if before.get(name) != value}
                    if not changed:
                        continue
                sent[stream] = fields
                recorded[stream] = (batch.step, v)
                out.append((key, stream, {**head, **changed}))
        return out

    def _pause_reading(self, paused: bool) -> None:
        """A frozen server reads nothing, so the client's pings go unanswered."""
        transport = transport_of(self.websocket)
        if transport is None:
            return
        if paused:
            transport.pause_reading()  # again each poll: the server library resumes on its own reads
        elif self.reading_paused:
            transport.resume_reading()
        self.reading_paused = paused

    async def send_ticks(self) -> None:
        ws = self.websocket
        async for batch in self.batches(ready=lambda: self.user is not None, on_stall=self._pause_reading):
            if self.faults.take_malformed():
                first = next(iter(self.subs), "NSE|0")
                exchange, _, token = first.partition("|")
                whole = json.dumps({"t": "tf", "e": exchange, "tk": token, "lp": "0.00", "v": "0"})
                await ws.send_text(whole[: len(whole) // 2])  # cut short, as a broken frame
            if batch is None:
                continue
            for key, stream, message in self.messages(batch):
                if stream in self.subs.get(key, ()):  # unsubscribed while an earlier send yielded
                    await ws.send_text(json.dumps(message))


def routes(state: PaperState) -> list[BaseRoute]:
    """``/NorenWSTP/`` (and without the trailing slash)."""

    async def noren_ws(websocket: WebSocket) -> None:
        handshake = Handshake(state, websocket, "shoonya", SHOONYA_WS_PATH)
        await websocket.accept()
        sock = ShoonyaSocket(handshake)
        try:
            # The user comes with the connect message, which hooks the socket up (ShoonyaSocket._connect).
            await serve_hooked(sock)
        finally:
            if sock.reading_paused:
                sock._pause_reading(False)

    return [WebSocketRoute(SHOONYA_WS_PATH, noren_ws), WebSocketRoute(SHOONYA_WS_PATH.rstrip("/"), noren_ws)]
