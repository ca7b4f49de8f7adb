"""Redis connections from settings: one pool per configuration per process (fork-safe via
redis-py). A plain URL, TLS with an ACL user, or Sentinel, as ``common/redisconf.py`` reads them."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

import redis
from redis.connection import SSLConnection
from redis.sentinel import Sentinel, SentinelManagedConnection
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


class MasterFollowingConnection(SentinelManagedConnection):
    """A connection to the master the sentinels name *now*, on every connect and reconnect.

    redis-py 8.2's SentinelManagedConnection asks the sentinels only in ``connect()``; a command
    retried over a lost connection reconnects through ``connect_check_health``, which reuses the
    old address, so a command in flight at a failover spent its whole retry budget on the dead
    primary and raised ConnectionError (10.5 s stalls: tests/ha/test_sentinel_client.py). Here
    every reconnect asks the sentinels, and makes one socket attempt: the command's own retry
    (``BROKERGATE_REDIS_RETRY_S``) asks again after its backoff, so it lands on the promoted
    replica as soon as the sentinels name it (MasterNotFoundError, a ConnectionError, until then).

    kombu's Sentinel transport and Celery's Sentinel result backend do not need it: they give
    redis-py no command retry (a lost command fails at once) and reconnect themselves through
    ``connect()``, which asks the sentinels. RedBeat's client is this module's (beat/lock.py).
    """

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if self._sock:
            return
        if self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
            retry_socket_connect = False
        super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)

    def _connect_retry(self) -> None:
        if self._sock or not self.connection_pool.is_master:
            super()._connect_retry()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            return
        # connect_check_health asks the sentinels itself: once per attempt, not twice
        self.connect_check_health(check_health=self.connection_pool.check_connection)


class MasterFollowingSSLConnection(MasterFollowingConnection, SSLConnection):
    """:class:`MasterFollowingConnection` over TLS."""


def connect(conf: RedisConf, *, decode: bool = True) -> redis.Redis:
    """A new client for ``conf``: the one server at its URL, or, with Sentinel, the master the
    sentinels name, found again on every new connection (so it follows a failover).

    Commands retry over a lost connection with bounded backoff (``BROKERGATE_REDIS_RETRY_S``);
    a health check and keepalive notice a dead peer."""
    if conf.sentinel:
        nodes, sentinel_kwargs, data_kwargs = redisconf.sentinel_args(conf, decode)
        cls = MasterFollowingSSLConnection if conf.tls else MasterFollowingConnection
        sentinel = Sentinel(nodes, sentinel_kwargs=sentinel_kwargs, **data_kwargs)
        client: redis.Redis = sentinel.master_for(conf.master, connection_class=cls)
        return client
    return redis.Redis.from_url(redisconf.data_url(conf), **redisconf.redis_kwargs(conf, decode))


def get_redis(*, decode: bool = True) -> redis.Redis:
    """The process's shared client (the settings' Redis)."""
    conf = redis_conf()
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
