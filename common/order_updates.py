"""Order updates for strategies, without writing a pub/sub listener.

Every state change of an order (and every fill the broker pushes) is published as one JSON
:class:`~common.models.OrderUpdate` on ``orders:<account>`` (:func:`common.keys.orders_channel`)
by the order store's scripts. Two ways to read them:

* :func:`on_order_update` (``brokergate.on_order_update``): a background thread that calls
  ``callback(update)`` for every update of one or more accounts until ``.stop()``;
* :func:`order_updates` (``OrderHandle.updates()``): an iterator over one order's updates that
  starts with the order as stored now (so what happened before the caller began to listen is
  never lost) and ends when the order is settled.

Both subscribe before they return (or yield), and both survive a Redis restart: the listener
resubscribes with a short backoff. An update published while Redis was unreachable is not
replayed by pub/sub; :func:`order_updates` therefore re-reads the stored order after a
reconnect, and a callback user who must not miss one reads the order store
(``brokergate.get_order``) after a ``.reconnects`` change.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis

from common import keys
from common.models import OrderUpdate
from common.orderstate import TERMINAL_STATES
from common.redis import get_redis

__all__ = ["Handle", "OrderUpdateListener", "at_broker_or_settled", "on_order_update", "order_updates", "stored_update",
           "wait_stored"]

log = logging.getLogger("brokergate.order_updates")

POLL_S = 0.5  # how often the listener thread looks at its stop flag while the channel is quiet
RECONNECT_BACKOFF_S = (0.05, 0.2, 0.5, 1.0)  # waits between resubscribe attempts after a lost connection


def _decode(data: bytes | str) -> OrderUpdate | None:
    try:
        return OrderUpdate.from_dict(json.loads(data))
    except (ValueError, KeyError, TypeError):
        log.warning("ignored a malformed order update: %.200r", data)
        return None


def stored_update(order: dict[str, Any]) -> OrderUpdate:
    """The stored order (``orderstore.get``) as an :class:`OrderUpdate`: what a late listener
    has missed so far. Its ``source`` is that of the order's last change (``postback``,
    ``socket``, ``reconcile``, ``worker``, ...), ``store`` when the history names none."""
    history = order.get("history") or []
    source = str((history[-1] or {}).get("source") or "store") if history else "store"
    # The stored hash names the update's message "error" and keeps no source of its own.
    return OrderUpdate.from_dict({**order, "message": order.get("error") or "", "source": source})


class _Subscription:
    """A pub/sub subscription to some ``orders:<account>`` channels that resubscribes after a
    lost connection. ``get(timeout_s)`` returns the next update, or None when none came."""

    def __init__(self, r: redis.Redis, accounts: list[str]) -> None:
        self._r = r
        self._channels = [keys.orders_channel(a) for a in accounts]
        self.reconnects = 0
        self._ps = self._subscribe()

    def _subscribe(self) -> Any:
        ps = self._r.pubsub(ignore_subscribe_messages=False)
        ps.subscribe(*self._channels)
        # Wait for every confirmation: only then is an update published from now on certain to arrive.
        confirmed = 0
        deadline = time.monotonic() + 10
        while confirmed < len(self._channels):
            msg = ps.get_message(timeout=max(0.01, deadline - time.monotonic()))
            if msg is not None and msg.get("type") == "subscribe":
                confirmed += 1
            elif time.monotonic() > deadline:
                ps.close()
                raise TimeoutError(f"Redis did not confirm the subscription to {', '.join(self._channels)}")
        return ps

    def get(self, timeout_s: float) -> OrderUpdate | None:
        try:
            msg = self._ps.get_message(timeout=timeout_s)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            self._reconnect(e)
            return None
        if msg is None or msg.get("type") != "message":
            return None
        return _decode(msg["data"])

    def _reconnect(self, error: Exception) -> None:
        log.warning("order updates: lost the Redis connection (%s); resubscribing", error)
        self.close()
        for attempt in range(1_000_000):
            try:
                self._ps = self._subscribe()
                self.reconnects += 1
                return
            except (redis.ConnectionError, redis.TimeoutError, TimeoutError):
                time.sleep(RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)])

    def close(self) -> None:
        try:
            self._ps.close()
        except Exception:  # closing a dead connection may raise; it is gone either way
            log.debug("closing the old subscription failed", exc_info=True)


class OrderUpdateListener:
    """A background listener returned by :func:`on_order_update`. ``stop()`` ends it (also as a
    context manager); ``errors`` counts callbacks that raised (each is logged, none stops it)."""

    def __init__(self, accounts: list[str], callback: Callable[[OrderUpdate], Any], r: redis.Redis | None = None) -> None:
        if not accounts:
            raise ValueError("no account to listen to")
        self.accounts = accounts
        self.errors = 0
        self._callback = callback
        self._stop = threading.Event()
        self._sub = _Subscription(r or get_redis(), accounts)  # subscribed before the constructor returns
        self._thread = threading.Thread(target=self._run, name=f"order-updates-{','.join(accounts)}", daemon=True)
        self._thread.start()

    @property
    def reconnects(self) -> int:
        """How often the connection was lost and the subscription made again."""
        return self._sub.reconnects

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                update = self._sub.get(POLL_S)
                if update is None:
                    continue
                try:
                    self._callback(update)
                except Exception:
                    # A strategy's bug in one callback must not silence every later update.
                    self.errors += 1
                    log.exception("order update callback failed for %s", update.client_order_id)
        finally:
            self._sub.close()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop listening; returns once the thread has ended (or after ``timeout_s``)."""
        self._stop.set()
        if threading.current_thread() is not self._thread:  # stop() from inside the callback
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> OrderUpdateListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"OrderUpdateListener({self.accounts!r}, running={self.running})"


def on_order_update(
    account: str | Iterable[str], callback: Callable[[OrderUpdate], Any], *, r: redis.Redis | None = None
) -> OrderUpdateListener:
    """Call ``callback(update)`` in a background thread for every :class:`OrderUpdate` of
    ``account`` (a name or several), until the returned listener's ``.stop()``.

    The subscription is confirmed before this returns, so every update published afterwards
    reaches the callback, in the order Redis published it. Callbacks run one at a time on the
    listener's thread: keep them short (hand heavy work to a queue of your own)."""
    names = [account] if isinstance(account, str) else list(account)
    return OrderUpdateListener(names, callback, r)


def order_updates(
    client_order_id: str, account: str, *, timeout_s: float | None = None, r: redis.Redis | None = None
) -> Iterator[OrderUpdate]:
    """The updates of one order: first the order as stored now (:func:`stored_update`), then every
    update pushed for it, ending after the one that settles it (COMPLETE, REJECTED, CANCELLED,
    FAILED, EXPIRED). ``timeout_s`` bounds the wait for each next update: TimeoutError after
    that long without one (None waits for ever)."""
    from common import orderstore

    client = r or get_redis()
    sub = _Subscription(client, [account])  # subscribe first, then read: nothing falls in between
    try:
        reconnects = sub.reconnects
        got = orderstore.get(client, client_order_id)
        if got is None:
            raise KeyError(f"no order {client_order_id}")
        current = stored_update(got)
        yield current
        if current.state in TERMINAL_STATES:
            return
        until = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = POLL_S if until is None else min(POLL_S, until - time.monotonic())
            if left <= 0:
                raise TimeoutError(f"no update of order {client_order_id} within {timeout_s} s")
            update = sub.get(left)
            if update is None and sub.reconnects != reconnects:
                # Pub/sub does not replay what was published while the connection was down: the
                # store has it. Yield the stored order when it moved on meanwhile.
                reconnects = sub.reconnects
                got = orderstore.get(client, client_order_id)
                if got is not None and got.get("state") != current.state.value:
                    update = stored_update(got)
            if update is None or update.client_order_id != client_order_id:
                continue
            current = update
            yield update
            if update.state in TERMINAL_STATES:
                return
            until = None if timeout_s is None else time.monotonic() + timeout_s
    finally:
        sub.close()


class Handle:
    """What a placed order's handle and a sliced order's share: ``.id``, ``.account`` and the
    Redis client it reads with (the process's own unless one was given)."""

    def __init__(self, client_order_id: str, account_name: str, r: redis.Redis | None = None) -> None:
        self.id = client_order_id
        self.account = account_name
        self._r = r

    @property
    def r(self) -> redis.Redis:
        return self._r or get_redis()


def at_broker_or_settled(state: str, final: bool) -> bool:
    """What a handle's ``wait`` waits for: settled, or (unless ``final``) OPEN at the broker."""
    return state in {s.value for s in TERMINAL_STATES} or (state == "OPEN" and not final)


def wait_stored(r: redis.Redis, client_order_ids: list[str], read: Callable[[], dict[str, Any] | None],
                ready: Callable[[dict[str, Any]], bool], timeout_s: float | None, name: str) -> dict[str, Any]:
    """``read()`` once ``ready`` says so; woken by every state change a handle cares about (the
    orders' wake-up lists), the 1 s cap only bounding a lost wake-up. TimeoutError after
    ``timeout_s`` (None: never)."""
    until = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        got = read()
        if got is not None and ready(got):
            return got
        remaining = 1.0 if until is None else until - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"order {name} is {got['state'] if got else 'missing'} after {timeout_s} s")
        r.blpop([keys.order_done(c) for c in client_order_ids], timeout=min(remaining, 1.0))
