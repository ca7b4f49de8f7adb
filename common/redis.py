"""Redis connections from settings: one pool per URL per process (fork-safe via redis-py)."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import redis
from redis.typing import EncodableT, FieldT

from common.settings import settings

# A mapping as redis-py's ``hset`` types it: keys of every encodable type. A dict's key type is
# invariant, so a dict[str, str] does not fit: build the dict as this type (or use hash_fields).
HashFields = dict[FieldT, EncodableT]

_lock = threading.Lock()
_clients: dict[tuple[str, bool], redis.Redis] = {}


def get_redis(url: str | None = None, *, decode: bool = True) -> redis.Redis:
    """A shared client for ``url`` (the settings' URL by default).

    Health checks and retries make a restarted Redis transparent to callers that retry.
    """
    url = url or settings().redis_url
    key = (url, decode)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = redis.Redis.from_url(
                url,
                decode_responses=decode,
                health_check_interval=10,
                socket_connect_timeout=5,
                socket_keepalive=True,
                retry_on_timeout=True,
            )
            _clients[key] = client
        return client


def reset_clients() -> None:
    """Forget cached clients (tests, and after the settings change)."""
    with _lock:
        for c in _clients.values():
            c.close()
        _clients.clear()


def server_time_ms(r: redis.Redis) -> int:
    """Redis server time in ms: the one clock every host agrees on."""
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


def hash_fields(values: Mapping[str, str | int | float]) -> HashFields:
    """``values`` as a mapping for ``hset`` (see :data:`HashFields`)."""
    return dict(values.items())


def as_text(value: bytes | str) -> str:
    """A reply as text: every client of :func:`get_redis` decodes, but a caller may pass one
    that does not (``decode=False``), whose replies are bytes."""
    return value.decode() if isinstance(value, bytes) else value


def text_hash(h: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    """An HGETALL reply as text (see :func:`as_text`)."""
    return {as_text(k): as_text(v) for k, v in h.items()}
