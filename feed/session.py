"""One broker WebSocket: connect, subscribe, receive → decode → publish, reconnect for ever.

One thread per socket, on websocket-client's low-level ``create_connection`` (the product's
WebSocket library). Why not ``WebSocketApp``: its callbacks and its own ping/reconnect logic
would sit between us and the socket, while the blocking ``recv_data`` with a socket timeout
gives the watchdog for free (the wait is bounded by the watchdog's remaining time) and keeps
receive → decode → publish on one thread with no queue hop. Why not the asyncio
``websockets`` library: a feed has at most three sockets an account, each busy on one core's
worth of decode and publish, so threads cost nothing here, and the publish path (redis-py)
is blocking anyway. Decode and publish release no GIL, but they are microseconds a tick.

Reconnects: exponential backoff with full jitter (``uniform(0, min(cap, base * 2**n))``),
the first retry immediate, never giving up; the attempt counter resets once a connection
delivers a frame. Every (re)connect resubscribes every instrument in its mode. A handshake
refused with 401/403 marks that token version as refused: the session waits for a newer
version (announced on TOKEN_CHANGED) instead of hammering the broker with a dead token.

The dialect is the broker's :class:`common.brokers.contracts.FeedDialect` (its ``feed.py``):
handshake, subscription messages, decoder and limits, and the hooks some wires need
(``login_messages`` after the handshake, ``update_table`` for a table kept across
subscription changes, ``reply_to`` acknowledgements, ``binary_refusal``, ``PING_AS_FRAME``),
which the others answer with the contract's do-nothing defaults. ``classify_text`` may answer
``"ticks"`` (a text wire) and ``"refused"`` besides the order and heartbeat kinds. Messages given
as bytes go as binary frames.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import websocket

from common.brokers.contracts import FeedDialect, Message
from common.settings import Account
from feed import orderupdates
from feed.publisher import Publisher
from feed.watchdog import Watchdog

__all__ = ["FeedSession", "SessionStats", "backoff_s"]

log = logging.getLogger(__name__)

TokenSource = Callable[[str], Any]  # account name -> Token | None (.access_token, .feed_token, .version)


def backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Delay before reconnect attempt ``attempt`` (0 = the first retry, which is immediate)."""
    if attempt <= 0:
        return 0.0
    return (rng or random).uniform(0.0, min(cap_s, base_s * 2 ** min(attempt, 30)))


@dataclass
class SessionStats:
    connected: bool = False
    connects: int = 0
    reconnects: int = 0
    frames: int = 0
    ticks: int = 0
    malformed: int = 0
    unknown: int = 0
    refused: int = 0  # handshakes refused (401/403)
    stalls: int = 0  # watchdog reconnects
    last_frame_ms: int = 0
    connected_at_ms: int = 0
    token_version: int = 0
    last_error: str = ""
    # receive → published, µs, for the last frames
    latency_us: collections.deque[int] = field(default_factory=lambda: collections.deque(maxlen=4096))


def _send(ws: websocket.WebSocket, message: str | bytes) -> None:
    """Bytes go as a binary frame (a binary protocol's commands), text as a text frame."""
    ws.send(message, websocket.ABNF.OPCODE_BINARY if isinstance(message, bytes) else websocket.ABNF.OPCODE_TEXT)


class FeedSession:
    """One socket of one account. ``start()``, ``set_subscriptions(...)``, ``stop()``."""

    CONNECT_TIMEOUT_S = 5.0
    BACKOFF_CAP_S = 15.0

    def __init__(
        self,
        account: Account,
        socket_no: int,
        dialect: FeedDialect,
        publisher: Publisher,
        token_source: TokenSource,
        *,
        watchdog_s: float | None = None,
        ping_interval_s: float | None = None,
        backoff_base_s: float = 0.25,
        token_poll_s: float = 2.0,
        on_reconnect: Callable[[FeedSession], None] | None = None,
    ) -> None:
        self.account = account
        self.socket_no = socket_no
        self.dialect = dialect
        self.publisher = publisher
        self.token_source = token_source
        self.watchdog_s = watchdog_s or dialect.WATCHDOG_S
        self.ping_interval_s = ping_interval_s if ping_interval_s is not None else dialect.PING_INTERVAL_S
        self.backoff_base_s = backoff_base_s
        self.token_poll_s = token_poll_s
        self.on_reconnect = on_reconnect
        self.name = f"feed-{account.name}-{socket_no}"
        self.stats = SessionStats()
        self._lock = threading.RLock()
        self._want: dict[Any, str] = {}
        self._table: Any = dialect.symbol_table({})
        self._sent: dict[Any, str] | None = None  # what the live connection has; None when down
        self._ws: websocket.WebSocket | None = None
        self._stop = threading.Event()
        self._token_event = threading.Event()
        self._refused_version: int | None = None
        self._reconnect_reason = ""
        self._thread: threading.Thread | None = None

    # ----- control (any thread) ------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._token_event.set()
        self._abort("stopping")
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def instruments(self) -> int:
        return len(self._want)

    def subscriptions(self) -> dict[Any, str]:
        with self._lock:
            return dict(self._want)

    def set_subscriptions(self, wanted: Mapping[Any, tuple[str, str, str]]) -> None:
        """The whole wanted set of this socket: broker key → (mode, exchange, symbol).
        Sends only the difference to a live connection; a reconnect sends all of it."""
        symbols = {k: (ex, sym) for k, (_m, ex, sym) in wanted.items()}
        modes = {k: m for k, (m, _ex, _sym) in wanted.items()}
        with self._lock:
            self._want = modes
            # A dialect whose wire sends deltas keeps state in its table: it carries over (with
            # the modes, which such a wire does not name); the others build a new one.
            self._table = self.dialect.update_table(self._table, symbols, modes)
            if self._sent is not None:
                try:
                    self._sync_locked()
                except Exception as e:  # the receive loop sees the dead socket and reconnects
                    log.warning("%s: subscribe failed: %s", self.name, e)
                    self._abort("subscribe failed")

    def token_changed(self, version: int | None = None) -> None:
        """A new token was stored: reconnect with it (now, if connected with an older one)."""
        self._token_event.set()
        if self._ws is not None and (version is None or version > self.stats.token_version):
            self._abort(f"new token version {version}")

    def _abort(self, reason: str) -> None:
        """Wake the receive loop by shutting the socket (no close handshake: it may be dead)."""
        with self._lock:
            ws = self._ws
            self._reconnect_reason = reason
        if ws is not None and ws.sock is not None:
            with contextlib.suppress(OSError):
                ws.sock.shutdown(socket.SHUT_RDWR)

    # ----- subscription sync (holding the lock) ---------------------------------------------
    def _sync_locked(self) -> None:
        assert self._sent is not None and self._ws is not None
        sent, want = self._sent, self._want
        removed: dict[str, list[Any]] = {}
        added: dict[str, list[Any]] = {}
        moved_old: dict[str, list[Any]] = {}
        moved_new: dict[str, list[Any]] = {}
        for k, m in sent.items():
            w = want.get(k)
            if w is None:
                removed.setdefault(m, []).append(k)
            elif w != m:
                moved_old.setdefault(m, []).append(k)
                moved_new.setdefault(w, []).append(k)
        for k, m in want.items():
            if k not in sent:
                added.setdefault(m, []).append(k)
        d = self.dialect
        messages: list[Message] = []
        if removed:
            messages += d.unsubscribe_messages(removed)
        if moved_new:
            messages += d.change_mode_messages(moved_old, moved_new)
        if added:
            messages += d.subscribe_messages(added)
        for m in messages:
            _send(self._ws, m)
        self._sent = dict(want)

    # ----- the socket's thread ---------------------------------------------------------------
    def _run(self) -> None:
        attempt = 0
        waiting_logged = False
        while not self._stop.is_set():
            try:
                tok = self.token_source(self.account.name)
            except Exception as e:  # Redis down: try again shortly
                tok = None
                self.stats.last_error = f"token read failed: {e}"
            if tok is None or (self._refused_version is not None and tok.version <= self._refused_version):
                if not waiting_logged:
                    why = "no token" if tok is None else f"token version {tok.version} was refused"
                    log.warning("%s: %s; waiting for a new token", self.name, why)
                    waiting_logged = True
                self._token_event.wait(self.token_poll_s)
                self._token_event.clear()
                continue
            waiting_logged = False
            try:
                ws = self._connect(tok)
            except websocket.WebSocketBadStatusException as e:
                if e.status_code in (401, 403):
                    self.stats.last_error = self._refused(tok.version, f"handshake refused {e.status_code}")
                    continue
                self._failed(f"handshake status {e.status_code}", attempt)
                attempt += 1
                continue
            except Exception as e:
                self._failed(f"connect failed: {e!r}", attempt)
                attempt += 1
                continue
            self.stats.token_version = tok.version
            if self._serve(ws):
                attempt = 0  # the connection worked: the next retry is immediate again
            if not self._stop.is_set():
                self.stats.reconnects += 1

    def _failed(self, why: str, attempt: int) -> None:
        self.stats.last_error = why
        delay = backoff_s(attempt + 1, self.backoff_base_s, self.BACKOFF_CAP_S)
        log.warning("%s: %s; retrying in %.2f s", self.name, why, delay)
        self._stop.wait(delay)

    def _connect(self, tok: Any) -> websocket.WebSocket:
        a = self.account
        url, headers = self.dialect.handshake(a.ws_url, a.api_key, a.user_id, tok.access_token, tok.feed_token)
        ws = websocket.create_connection(
            url,
            header=headers,
            timeout=self.CONNECT_TIMEOUT_S,
            skip_utf8_validation=True,
            enable_multithread=True,
            sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )
        # Brokers that authenticate in a message rather than the handshake: before any subscription.
        try:
            for m in self.dialect.login_messages(a.api_key, a.user_id, tok.access_token, tok.feed_token):
                _send(ws, m)
        except Exception:
            with contextlib.suppress(Exception):
                ws.shutdown()
            raise
        return ws

    def _serve(self, ws: websocket.WebSocket) -> bool:
        """Run one connection until it drops, stalls or is told to go. True if any frame came."""
        st = self.stats
        got_frame = False
        reason = self._attach(ws)
        wd = Watchdog(self.watchdog_s)
        ping_s = self.ping_interval_s
        next_ping = time.monotonic() + ping_s if ping_s else float("inf")
        # Pings as WebSocket ping frames: their pongs are the server's sign of life, so control
        # frames must come out of recv_data (a server's own ping says nothing about its feed).
        ping_frames = self.dialect.PING_AS_FRAME
        control = (websocket.ABNF.OPCODE_PONG, websocket.ABNF.OPCODE_PING)
        try:
            while not reason.startswith("resubscribe") and not self._stop.is_set():
                if self._reconnect_reason:
                    reason = self._reconnect_reason
                    break
                now = time.monotonic()
                if now >= next_ping:
                    self._ping(ws, ping_frames)
                    next_ping = now + ping_s  # type: ignore[operator]
                left = min(wd.remaining_s(now), next_ping - now)
                if left <= 0:
                    if wd.expired(now):
                        st.stalls += 1
                        reason = f"no frame for {self.watchdog_s:g} s (watchdog)"
                        break
                    continue
                ws.settimeout(left)
                try:
                    opcode, data = ws.recv_data(ping_frames)
                except websocket.WebSocketTimeoutException:
                    continue
                if ping_frames and opcode in control:
                    if opcode == websocket.ABNF.OPCODE_PONG:
                        wd.kick()
                    continue
                received_ns = time.time_ns()
                wd.kick()
                got_frame = True
                st.frames += 1
                st.last_frame_ms = received_ns // 1_000_000
                stop = self._on_frame(ws, opcode, data, received_ns)
                if stop is not None:
                    reason = stop
                    break
        except (websocket.WebSocketException, OSError) as e:
            reason = self._reconnect_reason or f"connection lost: {e!r}"
        finally:
            self._detach(ws)
        if not self._stop.is_set():
            st.last_error = reason
            log.warning("%s: disconnected: %s; reconnecting", self.name, reason)
        return got_frame

    def _attach(self, ws: websocket.WebSocket) -> str:
        """Make ``ws`` the session's socket and restore its subscriptions. Returns the reason to
        stop at once ("resubscribe failed: ...") or "closed", the reason if nothing else says."""
        st = self.stats
        reason = "closed"
        with self._lock:
            self._ws = ws
            self._sent = {}
            self._reconnect_reason = ""
            try:
                self._sync_locked()
            except Exception as e:
                reason = f"resubscribe failed: {e}"
        st.connected = True
        st.connects += 1
        st.connected_at_ms = int(time.time() * 1000)
        n_subs = len(self._want)
        log.info("%s: connected (token version %d), subscribed %d", self.name, st.token_version, n_subs)
        if st.connects > 1 and self.on_reconnect is not None:
            with contextlib.suppress(Exception):
                self.on_reconnect(self)
        return reason

    def _detach(self, ws: websocket.WebSocket) -> None:
        with self._lock:
            self._ws = None
            self._sent = None
        self.stats.connected = False
        with contextlib.suppress(Exception):
            ws.shutdown()

    def _ping(self, ws: websocket.WebSocket, as_frame: bool) -> None:
        if as_frame:
            ws.ping(self.dialect.PING_MESSAGE)
        else:
            _send(ws, self.dialect.PING_MESSAGE)

    def _on_frame(self, ws: websocket.WebSocket, opcode: int, data: Any, received_ns: int) -> str | None:
        """One data frame: ticks published, answers sent, text handled. Returns the reason to
        end the connection (a refusal, the server's close), or None to read on."""
        dialect = self.dialect
        if opcode == websocket.ABNF.OPCODE_BINARY:
            ticks, bad = dialect.decode(data, self._table, received_ns)
            # A binary protocol's in-band refusal of the session: as a handshake 401/403.
            refused = dialect.binary_refusal(data) if not ticks and not bad else None
            if refused is not None:
                return self._refused(self.stats.token_version, refused)
            self._publish(ticks, bad, received_ns)
            for m in dialect.reply_to(data, self._table):  # a protocol's acknowledgements
                _send(ws, m)
        elif opcode == websocket.ABNF.OPCODE_TEXT:
            kind, payload = dialect.classify_text(data.decode("utf-8", "replace") if isinstance(data, bytes) else data)
            if kind == "ticks":  # a broker whose ticks are text
                self._publish(*dialect.decode(payload, self._table, received_ns), received_ns)
            elif kind == "refused":  # a session refused after the handshake, as a 401/403
                return self._refused(self.stats.token_version, payload)
            else:
                self._on_text(kind, payload)
        elif opcode == websocket.ABNF.OPCODE_CLOSE:
            return "closed by the server"
        return None

    def _refused(self, version: int, detail: Any) -> str:
        """The broker refused the session (a 401/403 handshake, or in-band after it): this token
        version is marked refused, so the feed waits for a new one. Returns the reason."""
        self._refused_version = version
        self.stats.refused += 1
        reason = f"session refused by the broker (token version {version}): {detail}"
        log.warning("%s: %s", self.name, reason)
        return reason

    def _publish(self, ticks: list[Any], bad: int, received_ns: int) -> None:
        st = self.stats
        if bad:
            st.malformed += bad
            log.warning("%s: %d malformed packet(s) skipped (%d so far)", self.name, bad, st.malformed)
        if ticks:
            published = self.publisher.publish(ticks)
            st.ticks += published
            if published < len(ticks):
                st.unknown += len(ticks) - published
            st.latency_us.append((time.time_ns() - received_ns) // 1000)

    def _on_text(self, kind: str, data: Any) -> None:
        if kind == "order" and isinstance(data, dict):
            try:
                orderupdates.on_broker_message(self.account, data, "socket")
            except Exception:
                log.exception("%s: order update handling failed", self.name)
        elif kind == "error":
            log.warning("%s: broker error: %s", self.name, data)

