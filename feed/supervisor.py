"""The feed process's brain: every account's sockets, their subscriptions, tokens and heartbeats.

- Subscriptions: hash :func:`keys.feed_subs` per account (``EXCHANGE:SYMBOL`` → mode), changed
  by :mod:`common.ticks` which then publishes the account on :data:`keys.FEED_CONTROL`. The
  feed resolves each name to the broker's token through the instrument master
  (:func:`keys.instruments`), shards them over the account's sockets (:mod:`feed.shard`) and
  hands each socket its whole wanted set; a socket sends only the difference while
  connected and all of it after every reconnect. Everything is also re-read every
  ``reload_s`` and after the control channel reconnects, so a missed message heals.
- Tokens: a ``"<account> <version>"`` on :data:`keys.TOKEN_CHANGED` makes the account's
  sockets reconnect with the new token (and wakes sockets waiting after a 403).
- Heartbeats: every ``heartbeat_s`` one hash per socket, :func:`keys.feed_heartbeat`, with a
  TTL of ``heartbeat_ttl_s`` (a dead feed's keys vanish): connected, last_frame_ms, frames,
  ticks, tick_rate, reconnects, stalls, refused, malformed, unknown, instruments,
  token_version, p99_us (receive → published), last_error, pid.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import redis
from redis.sentinel import SentinelConnectionPool

from common import keys
from common.brokers import broker
from common.brokers.contracts import FeedDialect
from common.models import Instrument
from common.settings import Account
from feed import orderupdates, shard
from feed.publisher import Publisher
from feed.session import FeedSession, TokenSource

__all__ = ["AccountFeed", "Feed"]

log = logging.getLogger(__name__)

# SessionStats fields the heartbeat hash carries as they are.
_STATS_AS_IS = ("last_frame_ms", "connected_at_ms", "frames", "ticks", "reconnects", "stalls", "refused",
                "malformed", "unknown", "token_version")


def _read_token_from(r: redis.Redis) -> TokenSource:
    from common.tokens import read_token

    return lambda account: read_token(account, r)


def _p99(values: Any) -> int:
    """p99 of a deque another thread appends to (copying may race: try again)."""
    data: list[int] = []
    for _ in range(5):
        try:
            data = sorted(values)
            break
        except RuntimeError:  # deque mutated during iteration
            continue
    return data[min(len(data) - 1, int(len(data) * 0.99))] if data else 0


class AccountFeed:
    """The sockets of one account."""

    def __init__(
        self,
        account: Account,
        r: redis.Redis,
        publisher: Publisher,
        token_source: TokenSource,
        session_kw: Mapping[str, Any] | None = None,
    ) -> None:
        self.account = account
        self.redis = r
        self.publisher = publisher
        self.token_source = token_source
        self.session_kw = dict(session_kw or {})
        self.dialect: FeedDialect = broker(account.broker).feed
        self.sessions: list[FeedSession] = []
        self.assignment: dict[Any, int] = {}
        self.unresolved: list[str] = []
        self.unplaced: list[Any] = []
        self._lock = threading.Lock()
        self._beat: dict[int, tuple[float, int]] = {}  # socket -> (monotonic, ticks) at the last beat

    def _session(self, n: int) -> FeedSession:
        while len(self.sessions) <= n:
            kw = dict(self.session_kw)
            if self.dialect.TICKER_CARRIES_ORDER_UPDATES:  # reconcile after a gap
                kw.setdefault("on_reconnect", _request_reconcile)
            s = FeedSession(self.account, len(self.sessions), self.dialect, self.publisher, self.token_source, **kw)
            self.sessions.append(s)
            s.start()
        return self.sessions[n]

    def stop(self) -> None:
        for s in self.sessions:
            s.stop()

    def wanted(self) -> dict[Any, tuple[str, str, str]]:
        """broker key → (mode, exchange, symbol), from the subscription and instrument hashes."""
        name = self.account.name
        subs: dict[str, str] = self.redis.hgetall(keys.feed_subs(name))
        if not subs:
            self.unresolved = []
            return {}
        names = list(subs)
        raws = self.redis.hmget(keys.instruments(name), names)
        out: dict[Any, tuple[str, str, str]] = {}
        unresolved: list[str] = []
        for key, raw in zip(names, raws, strict=True):
            mode = subs[key] if subs[key] in ("ltp", "quote", "full") else "quote"
            if not raw:
                unresolved.append(key)
                continue
            inst = Instrument.from_dict(json.loads(raw))
            out[self.dialect.key_of(inst)] = (mode, inst.exchange, inst.symbol)
        if unresolved and unresolved != self.unresolved:
            log.warning(
                "feed %s: %d instrument(s) not in the instrument master, not subscribed: %s",
                name, len(unresolved), ", ".join(unresolved[:10]),
            )  # fmt: skip
        self.unresolved = unresolved
        return out

    def reload(self) -> None:
        wanted = self.wanted()
        d = self.dialect
        with self._lock:
            assignment, unplaced = shard.assign(
                wanted, self.assignment, d.MAX_PER_SOCKET, d.MAX_SOCKETS, self.account.feed_sockets
            )
            if unplaced and len(unplaced) != len(self.unplaced):
                log.error(
                    "feed %s: %d instrument(s) over the broker's limit (%d sockets x %d), not subscribed",
                    self.account.name, len(unplaced), d.MAX_SOCKETS, d.MAX_PER_SOCKET,
                )  # fmt: skip
            self.unplaced = unplaced
            self.assignment = assignment
            n = max(assignment.values(), default=0) + 1
            per: list[dict[Any, tuple[str, str, str]]] = [{} for _ in range(n)]
            for key, sn in assignment.items():
                per[sn][key] = wanted[key]
            for i in range(n):
                self._session(i).set_subscriptions(per[i])
            # sockets no longer needed (beyond the first) close
            while len(self.sessions) > n and len(self.sessions) > 1:
                s = self.sessions.pop()
                s.stop()
                self.redis.delete(keys.feed_heartbeat(self.account.name, s.socket_no))
        log.info(
            "feed %s: %d instrument(s) over %d socket(s)%s",
            self.account.name, len(assignment), n, f", {len(unplaced)} over the limit" if unplaced else "",
        )  # fmt: skip

    def token_changed(self, version: int | None) -> None:
        for s in list(self.sessions):
            s.token_changed(version)

    def heartbeat(self, pipe: Any, ttl_ms: int) -> None:
        now = time.monotonic()
        for s in list(self.sessions):
            st = s.stats
            prev = self._beat.get(s.socket_no)
            rate = 0.0
            if prev is not None and now > prev[0]:
                rate = (st.ticks - prev[1]) / (now - prev[0])
            self._beat[s.socket_no] = (now, st.ticks)
            key = keys.feed_heartbeat(self.account.name, s.socket_no)
            pipe.hset(
                key,
                mapping={
                    "account": self.account.name,
                    "broker": self.account.broker,
                    "socket": s.socket_no,
                    "connected": int(st.connected),
                    **{name: getattr(st, name) for name in _STATS_AS_IS},
                    "tick_rate": round(rate, 1),
                    "instruments": s.instruments,
                    "p99_us": _p99(st.latency_us),
                    "last_error": st.last_error[:200],
                    "pid": os.getpid(),
                },
            )
            pipe.pexpire(key, ttl_ms)


def _request_reconcile(session: FeedSession) -> None:
    """After a reconnect of a ticker that carries order updates, one may have been missed: ask (debounced,
    off the receive thread) for the account's order book to be reconciled."""

    reason = f"ticker socket {session.socket_no} reconnected"
    threading.Thread(target=orderupdates.request_reconcile, args=(session.account.name, reason),
                     name="feed-reconcile", daemon=True).start()  # fmt: skip


def _undecoded(r: redis.Redis) -> redis.Redis:
    """A client to ``r``'s server without response decoding (the publisher reads only integer
    replies); with Sentinel, one whose pool follows the master too."""
    pool = r.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        client: redis.Redis = pool.sentinel_manager.master_for(pool.service_name, decode_responses=False)
        return client
    kwargs = {**pool.connection_kwargs, "decode_responses": False}
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


class Feed:
    """Every account's feed in one process. ``start()``, ``stop()``; ``run(stop_event)`` blocks."""

    def __init__(
        self,
        accounts: Mapping[str, Account],
        r: redis.Redis,
        *,
        publisher: Publisher | None = None,
        heartbeat_s: float = 1.0,
        heartbeat_ttl_s: float = 5.0,
        reload_s: float = 60.0,
        **session_kw: Any,
    ) -> None:
        self.redis = r  # decoded responses
        if publisher is None:
            publisher = Publisher(_undecoded(r))
        self.publisher = publisher
        self.heartbeat_s = heartbeat_s
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.reload_s = reload_s
        token_source = session_kw.pop("token_source", None) or _read_token_from(r)
        self.feeds = {
            name: AccountFeed(a, r, self.publisher, token_source, session_kw) for name, a in accounts.items()
        }
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, ready_timeout_s: float = 10.0) -> None:
        for f in self.feeds.values():
            with f._lock:
                f._session(0)
        for target, name in ((self._control, "feed-control"), (self._heartbeats, "feed-heartbeat")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        if not self._ready.wait(ready_timeout_s):
            log.warning("feed: control channel not ready after %.0f s; continuing", ready_timeout_s)
        log.info("feed started: %d account(s)", len(self.feeds))

    def stop(self) -> None:
        self._stop.set()
        for f in self.feeds.values():
            f.stop()
        for t in self._threads:
            t.join(5)
        try:
            with self.redis.pipeline(transaction=False) as p:
                for f in self.feeds.values():
                    for s in f.sessions:
                        p.delete(keys.feed_heartbeat(f.account.name, s.socket_no))
                p.execute()
        except redis.RedisError:
            pass
        log.info("feed stopped")

    def run(self, stop: threading.Event) -> None:
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()

    def reload(self, account: str | None = None) -> None:
        for name, f in self.feeds.items():
            if account is None or name == account:
                try:
                    f.reload()
                except redis.RedisError as e:
                    log.warning("feed %s: reload failed: %s", name, e)

    def _control(self) -> None:
        """Subscription and token announcements; a periodic full reload heals missed messages."""
        delay = 0.0
        while not self._stop.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(keys.FEED_CONTROL, keys.TOKEN_CHANGED)
                self.reload()  # after subscribing: nothing announced meanwhile is missed
                self._ready.set()
                delay = 0.0
                next_reload = time.monotonic() + self.reload_s
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=0.5)
                    if msg is not None and msg.get("type") == "message":
                        self._on_control(msg["channel"], msg["data"])
                    if time.monotonic() >= next_reload:
                        self.reload()
                        next_reload = time.monotonic() + self.reload_s
            except (redis.RedisError, OSError) as e:
                delay = min(5.0, delay * 2 or 0.1)
                log.warning("feed: control channel lost (%s); again in %.1f s", e, delay)
                self._stop.wait(delay)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()

    def _on_control(self, channel: str, data: str) -> None:
        if channel == keys.FEED_CONTROL:
            self.reload(data.strip())
        elif channel == keys.TOKEN_CHANGED:
            name, _, version = data.partition(" ")
            f = self.feeds.get(name)
            if f is not None:
                log.info("feed %s: new token version %s", name, version)
                f.token_changed(int(version) if version.strip().isdigit() else None)

    def _heartbeats(self) -> None:
        ttl_ms = int(self.heartbeat_ttl_s * 1000)
        while not self._stop.wait(self.heartbeat_s):
            try:
                with self.redis.pipeline(transaction=False) as p:
                    for f in self.feeds.values():
                        f.heartbeat(p, ttl_ms)
                    p.execute()
            except redis.RedisError as e:
                log.warning("feed: heartbeat failed: %s", e)
            except Exception:  # never let the heartbeat thread die
                log.exception("feed: heartbeat failed")
