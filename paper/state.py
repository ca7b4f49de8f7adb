"""What the paper broker knows, in one object per process used from the event loop: the users
and their sessions, the instrument universe and its lookups by each dialect's key, the price
simulator, the orders with their listeners, the request log, the faults, and the open sockets.

- Sessions: `user_for_kite_token(api_key, access_token)`, `user_for_angel_jwt(jwt)` ("Bearer "
  optional), `user_for_angel_feed(client_code, feed_token)`, `user_for_fyers_token(access_token,
  app_id=None)`, `user_for_fyers_hsm(hsm_key)`, `user_for_shoonya_token(susertoken)`; each is None
  when the credentials are invalid or expired.
- Order events: `add_order_listener(broker, user_id, callback)`; `callback(order)` runs in the
  event loop on every visible status change. Session events: `add_session_listener(callback)`;
  `callback(user)` runs when a user's tokens are invalidated (logout, expire_tokens, a new login
  of the same user, reset), so sockets can close.
- `reset()` clears orders, sessions (session listeners are told), log, faults and the price walk;
  users from the config stay, users added over HTTP go. Listeners and open sockets stay.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from paper.derivatives import trading_date
from paper.faults import Fault, Faults
from paper.kite.payloads import kite_order_payload
from paper.orders import PaperOrder, now_ist
from paper.prices import PriceSimulator
from paper.requestlog import RequestLog
from paper.universe import PaperInstrument, build_universe
from paper.users import User, bearer_token

if TYPE_CHECKING:
    from paper.tickrate import TickClock

OrderListener = Callable[[PaperOrder], None]
SessionListener = Callable[[User], None]


class PaperState:
    """Everything the paper broker knows; one instance per process, used from the event loop."""

    def __init__(self, seed: int = 0, users: list[User] | None = None, today: dt.date | None = None) -> None:
        self.seed = seed
        self.users: dict[tuple[str, str], User] = {}
        self._config_users: list[User] = list(users or [])
        # The trading date the derivative universe is listed for (PAPER_TRADING_DATE pins it).
        self.trading_date = today or trading_date()
        self.universe: list[PaperInstrument] = build_universe(self.trading_date)
        self._by_kite_token = {i.kite_token: i for i in self.universe}
        self._by_angel_token = {(i.angel_exchange_type, i.angel_token): i for i in self.universe}
        self._by_symbol: dict[tuple[str, str], PaperInstrument] = {}
        for inst in self.universe:
            self._by_symbol[(inst.exchange, inst.symbol)] = inst
        for inst in self.universe:  # Kite's names first: another broker's never shadows them
            self._by_symbol.setdefault((inst.exchange, inst.angel_symbol), inst)
            self._by_symbol.setdefault((inst.exchange, inst.shoonya_symbol), inst)
        self._by_shoonya_token = {(i.exchange, i.shoonya_token): i for i in self.universe}
        self._by_fyers_symbol = {i.fyers_symbol: i for i in self.universe}
        self._by_fyers_topic = {i.angel_symbol if i.is_index else i.fyers_exchange_token: i for i in self.universe}
        self.prices = PriceSimulator(seed, self.trading_date)
        self.log = RequestLog()
        self.faults = Faults()
        # paper/rules.py: the requests each 2026 rule refused, by rule name.
        self.rule_rejections: Counter[str] = Counter()
        self.orders: dict[str, PaperOrder] = {}
        self._order_seq = itertools.count(1)
        self._trade_seq = itertools.count(1)
        self._order_listeners: dict[tuple[str, str], list[OrderListener]] = {}
        self._session_listeners: list[SessionListener] = []
        # Kite web-login state: request_id -> user, and session cookie -> user.
        self.kite_login_requests: dict[str, User] = {}
        self.kite_web_sessions: dict[str, User] = {}
        # Fyers login state by kind ("steps", "sessions", "codes"): key -> (user, step, expiry epoch s).
        self.fyers_login: dict[str, dict[str, tuple[User, str, float]]] = {"steps": {}, "sessions": {}, "codes": {}}
        # Open sockets by kind ("kite_sockets", ...) and user (or API key): what connection caps count.
        self.sockets: dict[str, dict[str, set[Any]]] = {}
        self.tick_clock: TickClock | None = None  # paper.tickrate.tick_clock makes it on first use
        for user in self._config_users:
            self.add_user(user)

    # ----- users and sessions -----
    def add_user(self, user: User) -> User:
        existing = self.users.get((user.broker, user.user_id))
        if existing is not None:
            self._notify_session(existing)
        self.users[(user.broker, user.user_id)] = user
        return user

    def open_sockets(self, kind: str, key: str) -> set[Any]:
        """The open sockets of ``kind`` ("kite_sockets", ...) of a user (or API key): what a
        connection cap counts."""
        return self.sockets.setdefault(kind, {}).setdefault(key, set())

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
        return self._user_with_secret("angel", "jwt_token", bearer_token(jwt))

    def user_for_shoonya_token(self, susertoken: str) -> User | None:
        """The Shoonya user whose session key (``jKey``, the socket's ``susertoken``) this is."""
        return self._user_with_secret("shoonya", "access_token", susertoken)

    def user_for_fyers_token(self, access_token: str, app_id: str | None = None) -> User | None:
        """The Fyers user of a live access token (and, when given, of that app id)."""
        return self._user_with_secret("fyers", "access_token", access_token, app_id)

    def user_for_fyers_hsm(self, hsm_key: str) -> User | None:
        """The Fyers user whose data-socket key (the token's ``hsm_key`` claim) this is."""
        return self._user_with_secret("fyers", "feed_token", hsm_key)

    def user_for_angel_feed(self, client_code: str, feed_token: str) -> User | None:
        user = self.users.get(("angel", client_code))
        if user and user.feed_token and user.feed_token == feed_token and user.token_expires_at > time.time():
            return user
        return None

    def user_where(self, broker: str, test: Callable[[User], bool]) -> User | None:
        """The first user of ``broker`` for whom ``test`` holds."""
        return next((u for u in self.users.values() if u.broker == broker and test(u)), None)

    def token_expired(self, broker: str, token: str) -> bool:
        """Whether ``token`` was a session token of ``broker`` that logout or expiry ended (an
        "expired" answer rather than "invalid")."""
        return self.user_where(broker, lambda u: token in u.expired_tokens) is not None

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
    def add_fault(self, fault: Fault) -> Fault:
        """Store a fault; expire_tokens also takes effect at once (the tokens are gone now)."""
        self.faults.add(fault)
        if fault.kind == "expire_tokens":
            self.expire_tokens(fault.broker, fault.user_id)
        return fault

    # ----- instruments, by each dialect's key -----
    def by_kite_token(self, token: int) -> PaperInstrument | None:
        return self._by_kite_token.get(token)

    def by_angel_token(self, exchange_type: int, token: str) -> PaperInstrument | None:
        return self._by_angel_token.get((exchange_type, str(token)))

    def by_symbol(self, exchange: str, symbol: str) -> PaperInstrument | None:
        """By Kite's trading symbol ("SBIN", "NIFTY25D1624000CE") or Angel's and Shoonya's
        ("SBIN-EQ", "Nifty 50", "NIFTY16DEC2524000CE", "NIFTY16DEC25C24000"); derivatives on NFO/BFO."""
        return self._by_symbol.get((exchange, symbol))

    def by_shoonya_token(self, exchange: str, token: str) -> PaperInstrument | None:
        return self._by_shoonya_token.get((exchange, str(token)))

    def by_fyers_symbol(self, ticker: str) -> PaperInstrument | None:
        """By Fyers' ticker ("NSE:SBIN-EQ", "NSE:NIFTY25D1624000CE", "BSE:SENSEX-INDEX")."""
        return self._by_fyers_symbol.get(ticker)

    def by_fyers_topic(self, segment_token: str) -> PaperInstrument | None:
        """By the exchange token of an HSM topic ("3045", a derivative's "35012"; tokens never
        collide across segments here), or an index's name ("Nifty 50")."""
        return self._by_fyers_topic.get(segment_token)

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
        self.rule_rejections.clear()
        self.prices.reset()
        self.kite_login_requests.clear()
        self.kite_web_sessions.clear()
        for pending in self.fyers_login.values():
            pending.clear()
        self._order_seq = itertools.count(1)
        self._trade_seq = itertools.count(1)
        config_keys = {(u.broker, u.user_id) for u in self._config_users}
        for key, user in list(self.users.items()):
            user.clear_session()
            self._notify_session(user)
            if key not in config_keys:
                del self.users[key]
