"""Redis connections from settings: one pool per configuration per process (fork-safe via
redis-py). A plain URL, TLS with an ACL user, or Sentinel, as ``common/redisconf.py`` reads them."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import replace

import redis
from redis.sentinel import Sentinel
from redis.typing import EncodableT, FieldT

from common import redisconf
from common.logs import register_secrets
from common.redisconf import RedisConf
from common.settings import Settings, settings

# A mapping as redis-py's ``hset`` types it: keys of every encodable type. A dict's key type is
# invariant, so a dict[str, str] does not fit: build the dict as this type (or use hash_fields).
HashFields = dict[FieldT, EncodableT]

_lock = threading.Lock()
_clients: dict[tuple[RedisConf, bool], redis.Redis] = {}
_conf: tuple[Settings, RedisConf] | None = None


def redis_conf() -> RedisConf:
    """The process's Redis configuration (``BROKERGATE_REDIS_*``), read with its settings and
    again whenever they are (``settings.cache_clear()``). Its passwords are registered with the
    log redactor before anything can log them. Raises ConfigError naming a bad variable."""
    global _conf
    s = settings()  # loads .env into the environment first
    with _lock:
        if _conf is None or _conf[0] is not s:
            conf = redisconf.parse({**os.environ, "BROKERGATE_REDIS_URL": s.redis_url})
            register_secrets(conf.secrets())
            _conf = (s, conf)
        return _conf[1]


def connect(conf: RedisConf, *, decode: bool = True) -> redis.Redis:
    """A new client for ``conf``: the one server at its URL, or, with Sentinel, the master the
    sentinels name, found again on every new connection (so it follows a failover).

    Commands retry over a lost connection with bounded backoff (``BROKERGATE_REDIS_RETRY_S``);
    a health check and keepalive notice a dead peer."""
    if conf.sentinel:
        nodes, sentinel_kwargs, data_kwargs = redisconf.sentinel_args(conf, decode)
        client: redis.Redis = Sentinel(nodes, sentinel_kwargs=sentinel_kwargs, **data_kwargs).master_for(conf.master)
        return client
    return redis.Redis.from_url(redisconf.data_url(conf), **redisconf.redis_kwargs(conf, decode))


def get_redis(url: str | None = None, *, decode: bool = True) -> redis.Redis:
    """The process's shared client (the settings' Redis; ``url``: that one server instead, with
    the settings' TLS files and credentials)."""
    conf = redis_conf()
    if url is not None and url != conf.url:
        tls, host, port, db, _user, _password = redisconf.url_parts(url)
        conf = replace(conf, url=url, tls=tls, host=host, port=port, db=db, sentinels=(), master="",
                       credentials_from_env=False)  # fmt: skip
    key = (conf, decode)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = connect(conf, decode=decode)
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
