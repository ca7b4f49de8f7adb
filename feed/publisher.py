"""Ticks → Redis: one round trip per received frame.

Each frame's ticks become one write of pre-packed RESP commands (``PUBLISH`` per tick on
``ticks:<EXCHANGE>:<SYMBOL>``, then one ``HSET bg:ltp`` with every instrument's last price
as an exact decimal string) and one read of the replies. Commands are packed with
hiredis' C packer and sent on a redis-py connection, which skips redis-py's per-command
Python bookkeeping in a pipeline: measured here at 1,000-tick frames, ~1.5x the ticks/s
of a redis-py pipeline with the same messages (bench/feed.py has the numbers).

The PUBLISHes are sent between ``CLIENT REPLY OFF`` and ``CLIENT REPLY ON``: a PUBLISH
answers only a subscriber count, and reading one reply per tick was a third of a frame's
time (60-tick frames: ~400 -> ~280 us). The HSET comes after ``ON``, so a failing write
(out of memory, a wrong type) is still seen. A server without CLIENT REPLY (some proxies)
gets every reply read, as before.

Ticks of unknown instruments (exchange ``""``: a token the feed did not ask for, or one
unsubscribed a moment ago) are counted and not published. A Redis failure loses that
frame's ticks (a later tick supersedes them), is counted and logged, and the next frame
reconnects: the feed never stops for Redis.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import hiredis
import redis

from common import keys
from common.models import Tick
from common.ticks import encode_tick, price_str

__all__ = ["Publisher"]

log = logging.getLogger(__name__)

_LTP = keys.LTP.encode()
_REPLY_OFF = hiredis.pack_command((b"CLIENT", b"REPLY", b"OFF"))
_REPLY_ON = hiredis.pack_command((b"CLIENT", b"REPLY", b"ON"))


class Publisher:
    """Publishes decoded ticks; thread-safe (each call borrows a connection from the pool)."""

    def __init__(self, r: redis.Redis, encode: Callable[[Tick], bytes] = encode_tick) -> None:
        self.redis = r
        self.encode = encode
        self._pack = hiredis.pack_command
        self._channels: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        self._lock = threading.Lock()
        self.published = 0
        self.unknown = 0
        self.errors = 0
        self._quiet: bool | None = None  # does the server take CLIENT REPLY? (asked on first use)

    def _names(self, exchange: str, symbol: str) -> tuple[bytes, bytes]:
        """(channel, ltp field) for an instrument, cached."""
        names = self._channels.get((exchange, symbol))
        if names is None:
            names = (keys.ticks_channel(exchange, symbol).encode(), f"{exchange}:{symbol}".encode())
            if len(self._channels) > 200_000:
                self._channels.clear()
            self._channels[(exchange, symbol)] = names
        return names

    def publish(self, ticks: Sequence[Tick]) -> int:
        """Publish ``ticks`` in one round trip; returns how many were published."""
        if not ticks:
            return 0
        pack = self._pack
        encode = self.encode
        names = self._names
        parts: list[bytes] = []
        ltp: list[bytes | str] = [b"HSET", _LTP]
        unknown = 0
        for t in ticks:
            if not t[0]:
                unknown += 1
                continue
            channel, field = names(t[0], t[1])
            parts.append(pack((b"PUBLISH", channel, encode(t))))
            ltp.append(field)
            ltp.append(price_str(t[5], t[4]))
        if unknown:
            self.unknown += unknown
        n = len(parts)
        if not n:
            return 0
        if self._quiet is None:
            self._quiet = self._takes_client_reply()
        if self._quiet is True:
            parts.insert(0, _REPLY_OFF)
            parts.append(_REPLY_ON)
            replies = 2  # ON's OK and the HSET's count
        else:
            replies = n + 1
        parts.append(pack(tuple(ltp)))
        if self._send(parts, replies):
            self.published += n
            return n
        return 0

    def _takes_client_reply(self) -> bool | None:
        """Whether the server takes CLIENT REPLY; None when it cannot be asked now (ask again)."""
        try:
            self.redis.execute_command("CLIENT", "REPLY", "ON")
        except redis.ResponseError:
            log.info("the server does not take CLIENT REPLY: reading one reply per tick")
            return False
        except redis.RedisError:
            return None
        return True

    def _send(self, parts: list[bytes], replies: int) -> bool:
        pool = self.redis.connection_pool
        try:
            conn = pool.get_connection()
        except redis.RedisError as e:
            self._failed(e)
            return False
        try:
            conn.send_packed_command([b"".join(parts)], check_health=False)
            for _ in range(replies):
                conn.read_response()
        except (redis.RedisError, OSError) as e:
            conn.disconnect()
            self._failed(e)
            return False
        finally:
            pool.release(conn)
        return True

    def _failed(self, e: Exception) -> None:
        with self._lock:
            self.errors += 1
            first = self.errors == 1 or self.errors % 1000 == 0
        if first:
            log.warning("publish failed (%d so far), frame dropped: %s", self.errors, e)
