"""Shared in-memory state of the paper broker: users and sessions, the instrument universe,
the price simulator, orders, the request log and the fault switches.

Contract for the WebSocket side (`paper/ws_kite.py`, `paper/ws_angel.py`); kept stable:

- `PaperState.users: dict[tuple[str, str], User]` keyed by `(broker, user_id)`, broker "kite"|"angel".
- `PaperState.universe: list[PaperInstrument]`, with lookups
  `by_kite_token(int)`, `by_angel_token(exchange_type: int, token: str)`, `by_symbol(exchange, symbol)`
  (dicts `universe_by_kite_token`, `universe_by_angel_token`, `universe_by_symbol` hold the same).
- `PaperState.prices: PriceSimulator`; `prices.quote(inst, advance=True) -> dict` with integer prices in
  1/`inst.price_divisor` rupees (paise for NSE): `instrument_token, last_price, last_quantity,
  average_price, volume, buy_quantity, sell_quantity, open, high, low, close, change_paise, oi,
  oi_day_high, oi_day_low, last_trade_time (epoch s), exchange_timestamp (epoch s),
  exchange_timestamp_ms, sequence, upper_circuit, lower_circuit, week52_high, week52_low,
  depth {"buy": [{"price", "quantity", "orders"}] * 5, "sell": [...] * 5}`.
  Each call with advance=True moves the price one random-walk step on the tick grid; the sequence of
  prices for an instrument is a pure function of (seed, instrument, step number).
  `prices.last_price(inst)` reads without moving.
- `PaperState.log: RequestLog`; `log.record(broker, user_id, endpoint_class, method, path, status,
  tag=None, arrival_ns=None)`; record WebSocket handshakes with status 101 (accepted) or 403.
  `arrival_ns` defaults to `time.monotonic_ns()` now; pass the value taken at arrival if known.
- `PaperState.faults: Faults`; `faults.take(kind, broker, user_id) -> bool` consumes one use of a
  matching fault (count) or is true while its duration lasts. WS kinds: drop_socket, stall_socket,
  malformed_frame; pushed order updates: duplicate_update (the next update is sent twice),
  reorder_updates (the next update is held back and sent right after the one that follows it, or
  after `REORDER_HOLD_S` when none follows: late, never lost). `faults.peek(kind, broker, user_id)
  -> bool` checks without consuming.
- Sessions: `user_for_kite_token(api_key, access_token)`, `user_for_angel_jwt(jwt)` ("Bearer " prefix
  optional), `user_for_angel_feed(client_code, feed_token)`; each returns None when invalid/expired.
  Fyers: `user_for_fyers_token(access_token, app_id=None)`, `user_for_fyers_hsm(hsm_key)` (the data
  socket's key, kept in `User.feed_token`); instruments `by_fyers_symbol(ticker)`, `by_fyers_topic(token)`.
- Order events: `add_order_listener(broker, user_id, callback)` / `remove_order_listener(...)`;
  `callback(order: PaperOrder)` runs synchronously in the event loop on every status change.
  Build message bodies with `kite_order_payload(order)` (postback / Kite WS `{"type": "order"}` data)
  and `angel_order_payload(order)` (Angel order-book row), both defined in this module.
- Session events: `add_session_listener(callback)`; `callback(user)` runs when a user's tokens are
  invalidated (logout, expire_tokens fault, reset), so sockets can be closed.
- `reset()` clears orders, sessions (session listeners are told), log, faults and the price walk;
  users from the config stay, users added over HTTP go. Order listeners stay registered.
- Other modules of the HTTP side: `paper.matching` (fills), `paper.postbacks` (Kite postback body:
  `postback_body(order, api_secret)`), `paper.gateway` (request pipeline), `paper.app.create_app(state)`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import random
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from paper.universe import PaperInstrument, build_universe

__all__ = [
    "BROKERS",
    "FAULT_KINDS",
    "Fault",
    "Faults",
    "PaperInstrument",
    "PaperOrder",
    "PaperState",
    "PaperTrade",
    "PriceSimulator",
    "RequestLog",
    "User",
    "angel_order_payload",
    "kite_order_payload",
]

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))

# The eight kinds of docs/architecture.md, plus two postback extras (Kite postbacks) and their twins for the
# order updates pushed on sockets (every broker's order-update socket, Kite's and Shoonya's ticker).
FAULT_KINDS = frozenset(
    {
        "accept_then_drop",
        "delay",
        "error_5xx",
        "rate_limit",
        "expire_tokens",
        "drop_socket",
        "stall_socket",
        "malformed_frame",
        "duplicate_postback",
        "reorder_postbacks",
        "duplicate_update",
        "reorder_updates",
    }
)

DEFAULT_CAPS: dict[str, dict[str, list[str]]] = {
    "kite": {
        "orders": ["10/s", "400/min", "5000/day"],
        "quote": ["1/s"],
        "orderbook": ["10/s"],
        "login": ["10/s"],
        "other": ["10/s"],
    },
    "angel": {
        "orders": ["20/s", "500/min", "1000/hour"],
        "quote": ["10/s", "500/min", "5000/hour"],
        "orderbook": ["1/s"],
        "login": ["1/s", "1000/hour"],
        "other": ["3/s"],
    },
    # Finvasia documents no caps: the conservative defaults of common/brokers/shoonya/spec.py.
    "shoonya": {
        "orders": ["10/s", "400/min"],
        "quote": ["5/s"],
        "orderbook": ["5/s"],
        "login": ["1/s"],
        "other": ["5/s"],
    },
    # Fyers counts every call of an app against one set of limits (common/brokers/fyers/spec.py).
    "fyers": {
        "orders": ["10/s", "200/min", "100000/day"],
        "quote": ["10/s", "200/min", "100000/day"],
        "orderbook": ["10/s", "200/min", "100000/day"],
        "login": ["1/s"],
        "other": ["10/s", "200/min", "100000/day"],
    },
}

# The dialects the paper broker speaks: one DEFAULT_CAPS entry each.
BROKERS: tuple[str, ...] = tuple(DEFAULT_CAPS)

def now_ist() -> dt.datetime:
    return dt.datetime.now(IST)


def fmt_ts(moment: dt.datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else None


@dataclass
class User:
    """A broker login. `caps` overrides DEFAULT_CAPS per endpoint class."""

    broker: str
    user_id: str
    # Secrets and tokens stay out of repr, so they never reach a log line.
    password: str = field(repr=False)
    totp_secret: str = field(repr=False)
    api_key: str = ""
    api_secret: str = field(default="", repr=False)
    caps: dict[str, list[str]] = field(default_factory=dict)
    postback_url: str | None = None
    # Kite session
    access_token: str | None = field(default=None, repr=False)
    public_token: str | None = field(default=None, repr=False)
    enctoken: str | None = field(default=None, repr=False)
    request_tokens: dict[str, float] = field(default_factory=dict, repr=False)  # request_token -> issued epoch s
    login_time: dt.datetime | None = None
    # Angel session
    jwt_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    feed_token: str | None = field(default=None, repr=False)
    token_expires_at: float = 0.0  # epoch seconds
    # Tokens invalidated by logout/expiry, so Angel can answer AG8002 (expired) not AG8001.
    expired_tokens: set[str] = field(default_factory=set, repr=False)

    def effective_caps(self) -> dict[str, list[str]]:
        merged = dict(DEFAULT_CAPS.get(self.broker, {}))
        merged.update(self.caps or {})
        return merged

    def clear_session(self) -> None:
        self.expired_tokens.update(t for t in (self.access_token, self.jwt_token) if t)
        self.access_token = self.public_token = self.enctoken = None
        self.jwt_token = self.refresh_token = self.feed_token = None
        self.request_tokens.clear()
        self.token_expires_at = 0.0

    def public_dict(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "user_id": self.user_id,
            "api_key": self.api_key,
            "caps": self.effective_caps(),
            "postback_url": self.postback_url,
            "logged_in": self.token_expires_at > time.time(),
        }


@dataclass
class PaperTrade:
    trade_id: str
    order_id: str
    quantity: int
    price: int  # 1/price_divisor rupees
    fill_time: dt.datetime


@dataclass
class PaperOrder:
    """One order, stored in the dialect of the broker it was placed with (`broker`).

    Kite names are used for the generic fields (order_type MARKET/LIMIT/SL/SL-M, status OPEN/...);
    the Angel originals are kept in `angel` so its order book echoes what was sent.
    """

    order_id: str
    broker: str
    user_id: str
    variety: str
    instrument: PaperInstrument
    transaction_type: str
    order_type: str
    product: str
    quantity: int
    price: int  # 1/price_divisor rupees; 0 for market
    trigger_price: int
    validity: str = "DAY"
    disclosed_quantity: int = 0
    tag: str | None = None
    status: str = "OPEN"
    status_message: str | None = None
    filled_quantity: int = 0
    filled_value: int = 0  # sum of qty * price, for average_price
    cancelled_quantity: int = 0
    exchange_order_id: str | None = None
    order_timestamp: dt.datetime = field(default_factory=now_ist)
    exchange_timestamp: dt.datetime | None = None
    exchange_update_timestamp: dt.datetime | None = None
    modified: bool = False
    modify_count: int = 0
    unique_order_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    angel: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    trades: list[PaperTrade] = field(default_factory=list)
    created_ns: int = field(default_factory=time.monotonic_ns)

    @property
    def pending_quantity(self) -> int:
        # As in the golden orders.json: a CANCELLED order keeps its unfilled quantity as pending.
        if self.status in ("COMPLETE", "REJECTED"):
            return 0
        return self.quantity - self.filled_quantity

    @property
    def is_open(self) -> bool:
        return self.status in ("OPEN", "TRIGGER PENDING")

    def average_price(self) -> float:
        if not self.filled_quantity:
            return 0
        return round(self.filled_value / self.filled_quantity / self.instrument.price_divisor, 4)


def _rupees(value: int, divisor: int) -> float | int:
    """Integer units to a JSON number; whole rupees print as ints, like the fixtures."""
    rupees = value / divisor
    return int(rupees) if rupees == int(rupees) else round(rupees, 6)


def kite_order_payload(order: PaperOrder) -> dict[str, Any]:
    """The Kite order body: one item of GET /orders, a postback body (without checksum/app_id)."""
    div = order.instrument.price_divisor
    return {
        "account_id": order.user_id,
        "placed_by": order.user_id,
        "order_id": order.order_id,
        "exchange_order_id": order.exchange_order_id,
        "parent_order_id": None,
        "status": order.status,
        "status_message": order.status_message,
        "status_message_raw": order.status_message,
        "order_timestamp": fmt_ts(order.order_timestamp),
        "exchange_update_timestamp": fmt_ts(order.exchange_update_timestamp),
        "exchange_timestamp": fmt_ts(order.exchange_timestamp),
        "variety": order.variety,
        "modified": order.modified,
        "exchange": order.instrument.exchange,
        "tradingsymbol": order.instrument.symbol,
        "instrument_token": order.instrument.kite_token,
        "order_type": order.order_type,
        "transaction_type": order.transaction_type,
        "validity": order.validity,
        "validity_ttl": 0,
        "product": order.product,
        "quantity": order.quantity,
        "disclosed_quantity": order.disclosed_quantity,
        "price": _rupees(order.price, div),
        "trigger_price": _rupees(order.trigger_price, div),
        "average_price": order.average_price(),
        "filled_quantity": order.filled_quantity,
        "pending_quantity": order.pending_quantity,
        "cancelled_quantity": order.cancelled_quantity,
        "market_protection": 0,
        "meta": {},
        "tag": order.tag,
        "tags": [order.tag] if order.tag else [],
        "guid": order.unique_order_id,
    }


_ANGEL_STATUS = {
    "OPEN": "open",
    "TRIGGER PENDING": "trigger pending",
    "COMPLETE": "complete",
    "CANCELLED": "cancelled",
    "REJECTED": "rejected",
}
ANGEL_ORDERTYPE = {"MARKET": "MARKET", "LIMIT": "LIMIT", "SL": "STOPLOSS_LIMIT", "SL-M": "STOPLOSS_MARKET"}


def _angel_time(moment: dt.datetime | None) -> str:
    return moment.strftime("%d-%b-%Y %H:%M:%S") if moment else ""


def angel_order_payload(order: PaperOrder) -> dict[str, Any]:
    """One row of Angel's getOrderBook / details/{uniqueorderid}."""
    div = order.instrument.price_divisor
    status = _ANGEL_STATUS.get(order.status, order.status.lower())
    a = order.angel
    last_fill = order.trades[-1] if order.trades else None
    return {
        "variety": a.get("variety", "NORMAL"),
        "ordertype": a.get("ordertype", ANGEL_ORDERTYPE.get(order.order_type, order.order_type)),
        "producttype": a.get("producttype", order.product),
        "duration": a.get("duration", order.validity),
        "price": order.price / div,
        "triggerprice": order.trigger_price / div,
        "quantity": str(order.quantity),
        "disclosedquantity": str(order.disclosed_quantity),
        "squareoff": 0.0,
        "stoploss": 0.0,
        "trailingstoploss": 0.0,
        "tradingsymbol": order.instrument.angel_symbol,
        "transactiontype": order.transaction_type,
        "exchange": order.instrument.exchange,
        "symboltoken": order.instrument.angel_token,
        "ordertag": order.tag or "",
        "instrumenttype": "",
        "strikeprice": -1.0,
        "optiontype": "",
        "expirydate": "",
        "lotsize": str(order.instrument.lot_size),
        "cancelsize": str(order.cancelled_quantity),
        "averageprice": order.average_price(),
        "filledshares": str(order.filled_quantity),
        "unfilledshares": str(order.quantity - order.filled_quantity),
        "orderid": order.order_id,
        "text": order.status_message or "",
        "status": status,
        "orderstatus": status,
        "updatetime": _angel_time(order.exchange_update_timestamp or order.order_timestamp),
        "exchtime": _angel_time(order.exchange_timestamp),
        "exchorderupdatetime": _angel_time(order.exchange_update_timestamp),
        "fillid": last_fill.trade_id if last_fill else "",
        "filltime": last_fill.fill_time.strftime("%H:%M:%S") if last_fill else "",
        "parentorderid": "",
        "uniqueorderid": order.unique_order_id,
        "exchangeorderid": order.exchange_order_id or "",
    }


class PriceSimulator:
    """Deterministic random walk per instrument on its tick grid.

    Each instrument has its own RNG seeded from (seed, kite_token), so the price path of one
    instrument does not depend on which others were asked for, nor in what order.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._series: dict[int, _Series] = {}

    def _get(self, inst: PaperInstrument) -> _Series:
        series = self._series.get(inst.kite_token)
        if series is None:
            series = _Series(inst, random.Random(f"{self.seed}:{inst.kite_token}"))
            self._series[inst.kite_token] = series
        return series

    def last_price(self, inst: PaperInstrument) -> int:
        return self._get(inst).last

    def advance(self, inst: PaperInstrument) -> int:
        return self._get(inst).step()

    def quote(self, inst: PaperInstrument, advance: bool = True) -> dict[str, Any]:
        series = self._get(inst)
        if advance:
            series.step()
        return series.snapshot()

    def reset(self) -> None:
        self._series.clear()


class _Series:
    def __init__(self, inst: PaperInstrument, rng: random.Random) -> None:
        self.inst = inst
        self.rng = rng
        tick = max(1, inst.tick_size_paise)
        base = inst.base_price_paise or 100_000
        # Yesterday's close within ±2% of the reference price, today's open within ±1% of it.
        self.close = self._on_grid(base * (1 + rng.uniform(-0.02, 0.02)), tick)
        self.open = self._on_grid(self.close * (1 + rng.uniform(-0.01, 0.01)), tick)
        self.last = self.open
        self.high = self.low = self.open
        self.volume = 0 if inst.is_index else rng.randint(1_000, 100_000)
        self.turnover = self.volume * self.open
        self.last_quantity = 0
        self.sequence = 0
        self.last_trade_time = int(time.time())

    @staticmethod
    def _on_grid(value: float, tick: int) -> int:
        units = round(value / tick)
        return max(tick, units * tick)

    def step(self) -> int:
        tick = max(1, self.inst.tick_size_paise)
        move = self.rng.choice((-2, -1, -1, 0, 0, 1, 1, 2)) * tick
        self.last = max(tick, self.last + move)
        self.high = max(self.high, self.last)
        self.low = min(self.low, self.last)
        self.sequence += 1
        if not self.inst.is_index:
            self.last_quantity = self.rng.randint(1, 500)
            self.volume += self.last_quantity
            self.turnover += self.last_quantity * self.last
        self.last_trade_time = int(time.time())
        return self.last

    def snapshot(self) -> dict[str, Any]:
        tick = max(1, self.inst.tick_size_paise)
        rng = random.Random(f"depth:{self.inst.kite_token}:{self.sequence}")
        buy = [
            {"price": max(tick, self.last - (i + 1) * tick), "quantity": rng.randint(1, 1000), "orders": rng.randint(1, 20)}
            for i in range(5)
        ]
        sell = [
            {"price": self.last + (i + 1) * tick, "quantity": rng.randint(1, 1000), "orders": rng.randint(1, 20)}
            for i in range(5)
        ]
        if self.inst.is_index:
            buy = [{"price": 0, "quantity": 0, "orders": 0} for _ in range(5)]
            sell = [{"price": 0, "quantity": 0, "orders": 0} for _ in range(5)]
        now_s = time.time()
        avg = self.turnover // self.volume if self.volume else self.last
        return {
            "instrument_token": self.inst.kite_token,
            "last_price": self.last,
            "last_quantity": self.last_quantity,
            "average_price": int(avg),
            "volume": self.volume,
            "buy_quantity": sum(d["quantity"] for d in buy) * 50,
            "sell_quantity": sum(d["quantity"] for d in sell) * 50,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "change_paise": self.last - self.close,
            "oi": 0,
            "oi_day_high": 0,
            "oi_day_low": 0,
            "last_trade_time": self.last_trade_time,
            "exchange_timestamp": int(now_s),
            "exchange_timestamp_ms": int(now_s * 1000),
            "sequence": self.sequence,
            "upper_circuit": self._on_grid(self.close * 1.2, tick),
            "lower_circuit": self._on_grid(self.close * 0.8, tick),
            "week52_high": self._on_grid(self.close * 1.35, tick),
            "week52_low": self._on_grid(self.close * 0.7, tick),
            "depth": {"buy": buy, "sell": sell},
        }


class RequestLog:
    """Every request the broker saw, in arrival order, stamped by one monotonic clock."""

    def __init__(self) -> None:
        self._entries: list[dict[str, Any]] = []

    def record(
        self,
        broker: str | None,
        user_id: str | None,
        endpoint_class: str,
        method: str,
        path: str,
        status: int,
        tag: str | None = None,
        arrival_ns: int | None = None,
    ) -> dict[str, Any]:
        entry = {
            "arrival_ns": arrival_ns if arrival_ns is not None else time.monotonic_ns(),
            "broker": broker,
            "user_id": user_id,
            "endpoint_class": endpoint_class,
            "method": method,
            "path": path,
            "status": status,
            "tag": tag,
        }
        # Responses finish out of arrival order (a delayed one ends last); keep the list sorted.
        idx = len(self._entries)
        while idx > 0 and self._entries[idx - 1]["arrival_ns"] > entry["arrival_ns"]:
            idx -= 1
        self._entries.insert(idx, entry)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        return list(self._entries)

    def clear(self) -> None:
        self._entries.clear()


@dataclass
class Fault:
    kind: str
    broker: str
    user_id: str | None = None
    count: int | None = None  # uses left; None = unlimited within the duration
    duration_s: float | None = None
    delay_s: float | None = None  # for kind "delay": how long each affected request sleeps
    status: int | None = None  # for kind "error_5xx": the answer's status (see Faults)
    added_at: float = field(default_factory=time.monotonic)

    def active(self, now: float) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        return not (self.duration_s is not None and now > self.added_at + self.duration_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "broker": self.broker,
            "user_id": self.user_id,
            "count": self.count,
            "duration_s": self.duration_s,
            "delay_s": self.delay_s,
            "status": self.status,
        }


class Faults:
    """Fault switches. A fault applies to one broker, and to one user or (user_id None) to all.

    Without count or duration a fault fires once. With `count`, it fires that many times; with
    `duration_s`, every time until the duration has passed (and at most `count` times if both).
    Kind "delay": each affected request sleeps `delay_s`; when only `duration_s` is given it is
    taken as the sleep of one request (so `{"kind": "delay", "duration_s": 5}` delays the next
    request by 5 s), when only `count`, the sleep is 1 s.

    Kind "error_5xx" (`count` N: N failures, then the requests after them succeed):
    - `status` absent or 503: the broker's own "service unavailable" answer in its dialect (503
      with its error body: Kite NetworkException, Angel AB1004, Fyers -96, Shoonya Not_Ok), given
      before the handler runs, so the request was certainly not acted on (nothing placed).
    - any other 5xx `status` (500, 502, 504): a gateway in front of the broker answers it, bare
      (an HTML page, no broker body), after the broker acted on the request: an order POST was
      placed although its client saw a 502. Ambiguous by construction, as a real proxy's 502 is.
    """

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(
        self,
        kind: str,
        broker: str,
        user_id: str | None = None,
        count: int | None = None,
        duration_s: float | None = None,
        delay_s: float | None = None,
        status: int | None = None,
    ) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        if status is not None and (kind != "error_5xx" or not 500 <= status <= 599):
            raise ValueError("status is for kind error_5xx only, and must be 500..599")
        if kind == "delay" and delay_s is None:
            delay_s = duration_s if duration_s is not None else 1.0
            duration_s = None
        if count is None and duration_s is None:
            count = 1
        fault = Fault(kind, broker, user_id, count, duration_s, delay_s, status)
        self._faults.append(fault)
        return fault

    def _find(self, kind: str, broker: str, user_id: str | None) -> Fault | None:
        now = time.monotonic()
        self._faults = [f for f in self._faults if f.active(now)]
        for fault in self._faults:
            if fault.kind == kind and fault.broker == broker and fault.user_id in (None, user_id):
                return fault
        return None

    def take_fault(self, kind: str, broker: str, user_id: str | None) -> Fault | None:
        """Consume one use of a matching fault and return it, or None."""
        fault = self._find(kind, broker, user_id)
        if fault is not None and fault.count is not None:
            fault.count -= 1
        return fault

    def take(self, kind: str, broker: str, user_id: str | None) -> bool:
        return self.take_fault(kind, broker, user_id) is not None

    def peek(self, kind: str, broker: str, user_id: str | None) -> bool:
        return self._find(kind, broker, user_id) is not None

    def active(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [f.to_dict() for f in self._faults if f.active(now)]

    def clear(self) -> None:
        self._faults.clear()


OrderListener = Callable[[PaperOrder], None]
SessionListener = Callable[[User], None]


class PaperState:
    """Everything the paper broker knows; one instance per process, used from the event loop."""

    def __init__(self, seed: int = 0, users: list[User] | None = None) -> None:
        self.seed = seed
        self.users: dict[tuple[str, str], User] = {}
        self._config_users: list[User] = list(users or [])
        self.universe: list[PaperInstrument] = build_universe()
        self.universe_by_kite_token: dict[int, PaperInstrument] = {i.kite_token: i for i in self.universe}
        self.universe_by_angel_token: dict[tuple[int, str], PaperInstrument] = {
            (i.angel_exchange_type, i.angel_token): i for i in self.universe
        }
        self.universe_by_symbol: dict[tuple[str, str], PaperInstrument] = {}
        for inst in self.universe:
            self.universe_by_symbol[(inst.exchange, inst.symbol)] = inst
            self.universe_by_symbol.setdefault((inst.exchange, inst.angel_symbol), inst)
        self.prices = PriceSimulator(seed)
        self.log = RequestLog()
        self.faults = Faults()
        self.orders: dict[str, PaperOrder] = {}
        self._order_seq = itertools.count(1)
        self._trade_seq = itertools.count(1)
        self._order_listeners: dict[tuple[str, str], list[OrderListener]] = {}
        self._session_listeners: list[SessionListener] = []
        # Kite web-login state: request_id -> user, and session cookie -> user.
        self.kite_login_requests: dict[str, User] = {}
        self.kite_web_sessions: dict[str, User] = {}
        for user in self._config_users:
            self.add_user(user)

    # ----- users and sessions -----
    def add_user(self, user: User) -> User:
        existing = self.users.get((user.broker, user.user_id))
        if existing is not None:
            self._notify_session(existing)
        self.users[(user.broker, user.user_id)] = user
        return user

    def find_user(self, broker: str, user_id: str) -> User | None:
        return self.users.get((broker, user_id))

    def _user_with_secret(
        self, broker: str, field: str, secret: str, app_key: str | None = None
    ) -> User | None:
        """The user of ``broker`` whose live session holds ``secret`` in ``field`` (compared in
        constant time) and, when given, whose API key is ``app_key``."""
        if not secret:
            return None
        now = time.time()
        for user in self.users.values():
            held = getattr(user, field)
            if (
                user.broker == broker
                and held
                and secrets.compare_digest(held, secret)
                and (app_key is None or user.api_key == app_key)
                and user.token_expires_at > now
            ):
                return user
        return None

    def user_for_kite_token(self, api_key: str, access_token: str) -> User | None:
        return self._user_with_secret("kite", "access_token", access_token, api_key)

    def user_for_angel_jwt(self, jwt: str) -> User | None:
        token = jwt.strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        if not token:
            return None
        now = time.time()
        for user in self.users.values():
            if user.broker == "angel" and user.jwt_token == token and user.token_expires_at > now:
                return user
        return None

    def user_for_shoonya_token(self, susertoken: str) -> User | None:
        """The Shoonya user whose session key (``jKey``, the socket's ``susertoken``) this is."""
        return self._user_with_secret("shoonya", "access_token", susertoken)

    def user_for_fyers_token(self, access_token: str, app_id: str | None = None) -> User | None:
        """The Fyers user of a live access token (and, when given, of that app id)."""
        return self._user_with_secret("fyers", "access_token", access_token, app_id)

    def user_for_fyers_hsm(self, hsm_key: str) -> User | None:
        """The Fyers user whose data-socket key (the token's ``hsm_key`` claim) this is."""
        return self._user_with_secret("fyers", "feed_token", hsm_key)

    def _universe_by(self, name: str, key: Callable[[PaperInstrument], Any]) -> dict[Any, PaperInstrument]:
        """The universe by ``key``: a table built on first use and kept as ``self.<name>``."""
        table: dict[Any, PaperInstrument] | None = getattr(self, name, None)
        if table is None:
            table = {key(i): i for i in self.universe}
            setattr(self, name, table)
        return table

    def by_fyers_symbol(self, ticker: str) -> PaperInstrument | None:
        return self._universe_by("_by_fyers_symbol", lambda i: i.fyers_symbol).get(ticker)

    def by_fyers_topic(self, segment_token: str) -> PaperInstrument | None:
        """By the exchange token of an HSM topic ("3045"), or an index's name ("Nifty 50")."""
        table = self._universe_by("_by_fyers_topic", lambda i: i.angel_symbol if i.is_index else i.fyers_exchange_token)
        return table.get(segment_token)

    def user_for_angel_feed(self, client_code: str, feed_token: str) -> User | None:
        user = self.users.get(("angel", client_code))
        if user and user.feed_token and user.feed_token == feed_token and user.token_expires_at > time.time():
            return user
        return None

    def expire_tokens(self, broker: str, user_id: str | None = None) -> None:
        for user in self.users.values():
            if user.broker == broker and user_id in (None, user.user_id):
                user.clear_session()
                self._notify_session(user)

    def add_session_listener(self, callback: SessionListener) -> None:
        self._session_listeners.append(callback)

    def remove_session_listener(self, callback: SessionListener) -> None:
        if callback in self._session_listeners:
            self._session_listeners.remove(callback)

    def _notify_session(self, user: User) -> None:
        for callback in list(self._session_listeners):
            with contextlib.suppress(Exception):  # a listener's bug must not break the broker
                callback(user)

    # ----- faults -----
    def add_fault(
        self,
        kind: str,
        broker: str,
        user_id: str | None = None,
        count: int | None = None,
        duration_s: float | None = None,
        delay_s: float | None = None,
        status: int | None = None,
    ) -> Fault:
        """Store a fault; expire_tokens also takes effect at once (the tokens are gone now)."""
        fault = self.faults.add(kind, broker, user_id, count, duration_s, delay_s, status)
        if kind == "expire_tokens":
            self.expire_tokens(broker, user_id)
        return fault

    # ----- instruments -----
    def by_kite_token(self, token: int) -> PaperInstrument | None:
        return self.universe_by_kite_token.get(token)

    def by_angel_token(self, exchange_type: int, token: str) -> PaperInstrument | None:
        return self.universe_by_angel_token.get((exchange_type, str(token)))

    def by_symbol(self, exchange: str, symbol: str) -> PaperInstrument | None:
        return self.universe_by_symbol.get((exchange, symbol))

    def by_shoonya_token(self, exchange: str, token: str) -> PaperInstrument | None:
        return self._universe_by("_by_shoonya_token", lambda i: (i.exchange, i.shoonya_token)).get((exchange, str(token)))

    # ----- orders -----
    def next_order_id(self) -> str:
        """15-digit ids like the brokers' (yymmdd + sequence)."""
        return f"{now_ist():%y%m%d}{next(self._order_seq):09d}"

    def next_trade_id(self) -> str:
        return f"{next(self._trade_seq):08d}"

    def add_order_listener(self, broker: str, user_id: str, callback: OrderListener) -> None:
        self._order_listeners.setdefault((broker, user_id), []).append(callback)

    def remove_order_listener(self, broker: str, user_id: str, callback: OrderListener) -> None:
        listeners = self._order_listeners.get((broker, user_id), [])
        if callback in listeners:
            listeners.remove(callback)

    def notify_order(self, order: PaperOrder) -> None:
        """Record a history snapshot and tell every listener of the order's user."""
        order.history.append(kite_order_payload(order))
        for callback in list(self._order_listeners.get((order.broker, order.user_id), [])):
            with contextlib.suppress(Exception):  # one bad listener must not stop the order flow
                callback(order)

    def notify_order_history_only(self, order: PaperOrder) -> None:
        """A transient status (PUT ORDER REQ RECEIVED, ...): in order history, not pushed."""
        order.history.append(kite_order_payload(order))

    def reset(self) -> None:
        self.orders.clear()
        self.log.clear()
        self.faults.clear()
        self.prices.reset()
        self.kite_login_requests.clear()
        self.kite_web_sessions.clear()
        self._order_seq = itertools.count(1)
        self._trade_seq = itertools.count(1)
        config_keys = {(u.broker, u.user_id) for u in self._config_users}
        for key, user in list(self.users.items()):
            user.clear_session()
            self._notify_session(user)
            if key not in config_keys:
                del self.users[key]


def checksum_hex(*parts: str) -> str:
    """sha256 of the concatenation, hex: Kite's session checksum and postback checksum."""
    return hashlib.sha256("".join(parts).encode()).hexdigest()
