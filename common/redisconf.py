"""The one Redis configuration of every process: settings in, each library's arguments out.

Pure (no connection is made here): :func:`parse` reads ``BROKERGATE_REDIS_*`` from a mapping
into a :class:`RedisConf`, and one function per library turns it into that library's arguments:
:func:`redis_kwargs` / :func:`sentinel_args` (redis-py), :func:`celery_conf` (the Celery
transport and result backend), :func:`redbeat_conf` (RedBeat). Three shapes, chosen by the
environment (docs/architecture.md § Redis has the table):

- a plain URL ``redis://host:port/db`` (the default; unchanged from before),
- ``rediss://user:password@host:port/db``: TLS (``..._TLS_CA``, ``..._TLS_CERT``,
  ``..._TLS_KEY``) and an ACL user,
- Sentinel: ``BROKERGATE_REDIS_SENTINELS=h1:26379,h2:26379`` and ``BROKERGATE_REDIS_MASTER``;
  the URL then gives only the scheme (TLS or not), the user, the password and the db.

Passwords never appear in a ``repr`` (:meth:`RedisConf.describe` is what a log line may show),
and :meth:`RedisConf.secrets` lists them for the log redactor.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from common.errors import ConfigError

__all__ = [
    "DEFAULT_URL", "BudgetRetry", "RedisConf", "celery_conf", "data_url", "parse", "redbeat_conf", "redis_kwargs", "retry", "retry_count",
    "sentinel_args", "ssl_kwargs", "url_parts",
]  # fmt: skip

DEFAULT_URL = "redis://127.0.0.1:6379/0"
T = TypeVar("T")
_P = "BROKERGATE_REDIS_"
# Backoff between attempts of one command over a lost connection: quick first (a restarted or
# promoted server answers in well under a second), then at most a second apart.
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class RedisConf:
    """Where Redis is and how to talk to it (see the module). Build it with :func:`parse`."""

    url: str = DEFAULT_URL  # as configured (may hold a password: never log it, use describe())
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    sentinel_tls: bool = False
    wait_replicas: int = 0
    wait_timeout_ms: int = 100
    retry_s: float = 10.0
    # Credentials came from BROKERGATE_REDIS_USERNAME/PASSWORD, not the URL: URLs are rebuilt.
    credentials_from_env: bool = False

    @property
    def sentinel(self) -> bool:
        return bool(self.sentinels)

    def secrets(self) -> list[str]:
        """The passwords in use, for the log redactor: as written and as quoted into a URL."""
        out: list[str] = []
        for p in (self.password, self.sentinel_password):
            if p:
                out += [p] if quote(p, safe="") == p else [p, quote(p, safe="")]
        return out

    def describe(self) -> str:
        """Where Redis is, fit for a log line or ``brokergate status`` (no password)."""
        user = f"{self.username}@" if self.username else ""
        scheme = "rediss" if self.tls else "redis"
        if self.sentinel:
            nodes = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"sentinel {nodes} master {self.master} ({scheme}://{user}.../{self.db})"
        return f"{scheme}://{user}{self.host}:{self.port}/{self.db}"


def _int(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(_P + name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigError(f"{_P}{name}: {raw!r} is not a whole number in {low}..{high}")
    return int(raw)


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(_P + name, "").strip().lower()
    if not raw:
        return default
    if raw not in _TRUE + _FALSE:
        raise ConfigError(f"{_P}{name}: {raw!r} is not 1 or 0")
    return raw in _TRUE


def _sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    out: list[tuple[str, int]] = []
    for part in raw.split(","):
        item = part.strip()
        host, sep, port = item.rpartition(":")
        if not item or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{_P}SENTINELS: {item!r} is not host:port (write h1:26379,h2:26379,h3:26379)")
        out.append((host.strip("[]"), int(port)))
    return tuple(out)


def url_parts(url: str) -> tuple[bool, str, int, int, str | None, str | None]:
    """TLS or not, host, port, db, user and password of a ``redis://`` / ``rediss://`` URL."""
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError:
        raise ConfigError(f"{_P}URL: not a URL like redis://host:6379/0") from None
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"{_P}URL: scheme {parts.scheme!r} is not redis:// or rediss:// "
                          f"(Sentinel is {_P}SENTINELS and {_P}MASTER)")  # fmt: skip
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ConfigError(f"{_P}URL: database {path!r} is not a number")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.scheme == "rediss", parts.hostname or "127.0.0.1", port, int(path or 0), user, password


def _tls_files(environ: Mapping[str, str], tls: bool, sentinel_tls: bool) -> tuple[str | None, str | None, str | None]:
    ca, cert, key = (environ.get(_P + n, "").strip() or None for n in ("TLS_CA", "TLS_CERT", "TLS_KEY"))
    if not (tls or sentinel_tls):
        for name, value in (("TLS_CA", ca), ("TLS_CERT", cert), ("TLS_KEY", key)):
            if value:
                raise ConfigError(f"{_P}{name}: set, but nothing speaks TLS (use a rediss:// URL "
                                  f"or {_P}SENTINEL_TLS=1)")  # fmt: skip
    if bool(cert) != bool(key):
        missing = "TLS_KEY" if cert else "TLS_CERT"
        raise ConfigError(f"{_P}{missing}: a client certificate needs both {_P}TLS_CERT and {_P}TLS_KEY")
    return ca, cert, key


def parse(environ: Mapping[str, str]) -> RedisConf:
    """The configuration in ``environ`` (the process environment, ``.env`` included).
    Raises ConfigError naming the variable that is wrong."""
    url = environ.get(_P + "URL", "").strip() or DEFAULT_URL
    tls, host, port, db, user, password = url_parts(url)
    env_user = environ.get(_P + "USERNAME", "") or None
    env_password = environ.get(_P + "PASSWORD", "") or None
    raw_sentinels = environ.get(_P + "SENTINELS", "").strip()
    sentinels = _sentinels(raw_sentinels) if raw_sentinels else ()
    master = environ.get(_P + "MASTER", "").strip()
    if sentinels and not master:
        raise ConfigError(f"{_P}MASTER: required with {_P}SENTINELS (the name the sentinels monitor)")
    if master and not sentinels:
        raise ConfigError(f"{_P}SENTINELS: required with {_P}MASTER (write h1:26379,h2:26379,h3:26379)")
    sentinel_tls = _flag(environ, "SENTINEL_TLS", tls) if sentinels else False
    ca, cert, key = _tls_files(environ, tls, sentinel_tls)
    timeout_ms = _int(environ, "WAIT_TIMEOUT_MS", 100, 1, 60_000)  # WAIT n 0 would block forever
    retry_raw = environ.get(_P + "RETRY_S", "").strip() or "10"
    try:
        retry_s = float(retry_raw)
    except ValueError:
        retry_s = -1.0
    if not 0 <= retry_s <= 300:  # also refuses nan and inf
        raise ConfigError(f"{_P}RETRY_S: {retry_raw!r} is not a number of seconds in 0..300")
    return RedisConf(
        url=url, host=host, port=port, db=db, username=env_user or user, password=env_password or password,
        tls=tls, tls_ca=ca, tls_cert=cert, tls_key=key, sentinels=sentinels, master=master,
        sentinel_username=environ.get(_P + "SENTINEL_USERNAME", "") or None,
        sentinel_password=environ.get(_P + "SENTINEL_PASSWORD", "") or None, sentinel_tls=sentinel_tls,
        wait_replicas=_int(environ, "WAIT_REPLICAS", 1 if sentinels else 0, 0, 16), wait_timeout_ms=timeout_ms,
        retry_s=retry_s, credentials_from_env=bool(env_user or env_password),
    )  # fmt: skip


# --- redis-py -------------------------------------------------------------------------------------


def retry_count(retry_s: float) -> int:
    """Attempts whose backoffs (50 ms doubling to 1 s) add up to ``retry_s``: a bounded total."""
    n, total, wait = 0, 0.0, BACKOFF_BASE_S
    while total + min(wait, BACKOFF_CAP_S) <= retry_s:
        total += min(wait, BACKOFF_CAP_S)
        wait *= 2
        n += 1
    return n


class BudgetRetry(Retry):
    """redis-py's Retry whose nested uses in one thread share one time budget, counted from the
    first failure: redis-py retries a command, and inside it the connection retries its own
    connect and handshake with the same policy, so a server that accepts and hangs up (a proxy
    before a Redis that is down, a Redis at ``maxclients``) cost the product of the two counts
    (196 attempts, 158 s at a 10 s budget). Past the budget, no loop retries again."""

    _chain = threading.local()  # this thread's nesting depth and the budget's end (monotonic s)

    def __init__(self, budget_s: float) -> None:
        super().__init__(ExponentialBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S), retry_count(budget_s),
                         supported_errors=(RedisConnectionError, RedisTimeoutError),
                         is_retryable=self._within_budget)  # fmt: skip
        self.budget_s = budget_s

    def call_with_retry(self, do: Callable[[], T], fail: Callable[..., Any],
                        is_retryable: Callable[[Exception], bool] | None = None,
                        with_failure_count: bool = False) -> T:  # fmt: skip
        chain = self._chain
        depth = getattr(chain, "depth", 0)
        chain.depth = depth + 1
        try:
            return super().call_with_retry(do, fail, is_retryable, with_failure_count)
        finally:
            chain.depth = depth
            if depth == 0:
                chain.ends = None

    def _within_budget(self, _error: Exception) -> bool:
        chain = self._chain
        ends = getattr(chain, "ends", None)
        if ends is None:
            chain.ends = ends = time.monotonic() + self.budget_s
        return time.monotonic() < ends


def retry(conf: RedisConf) -> Retry:
    """redis-py's retry of one command over a lost connection, bounded by ``retry_s`` in all
    (:class:`BudgetRetry`).

    ConnectionError covers a demoted primary too: a Sentinel-managed connection turns its
    READONLY answer into one (redis-py ``SentinelManagedConnection.read_response``)."""
    return BudgetRetry(conf.retry_s)


def ssl_kwargs(conf: RedisConf) -> dict[str, Any]:
    """redis-py's TLS arguments (certificate and host name always verified)."""
    kw: dict[str, Any] = {"ssl_cert_reqs": "required"}
    if conf.tls_ca:
        kw["ssl_ca_certs"] = conf.tls_ca
    if conf.tls_cert:
        kw.update(ssl_certfile=conf.tls_cert, ssl_keyfile=conf.tls_key)
    return kw


def _common_kwargs(conf: RedisConf, decode: bool) -> dict[str, Any]:
    return {
        "decode_responses": decode, "health_check_interval": 10, "socket_connect_timeout": 5,
        "socket_keepalive": True, "retry": retry(conf),
    }  # fmt: skip


def redis_kwargs(conf: RedisConf, decode: bool = True) -> dict[str, Any]:
    """Arguments for ``Redis.from_url(conf.url, **kwargs)`` (one server, plain or TLS)."""
    kw = _common_kwargs(conf, decode)
    if conf.credentials_from_env:
        kw.update(username=conf.username, password=conf.password)
    if conf.tls:
        kw.update(ssl_kwargs(conf))
    return kw


def _sentinel_node_kwargs(conf: RedisConf) -> dict[str, Any]:
    kw: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 2}
    if conf.sentinel_username:
        kw["username"] = conf.sentinel_username
    if conf.sentinel_password:
        kw["password"] = conf.sentinel_password
    if conf.sentinel_tls:
        kw.update(ssl=True, **ssl_kwargs(conf))
    return kw


def sentinel_args(conf: RedisConf, decode: bool = True) -> tuple[list[tuple[str, int]], dict[str, Any], dict[str, Any]]:
    """``(sentinels, sentinel_kwargs, data_kwargs)``: ``Sentinel(sentinels, sentinel_kwargs=...,
    **data_kwargs).master_for(conf.master)`` is a client whose pool follows the master."""
    data = _common_kwargs(conf, decode)
    data.update(db=conf.db, username=conf.username, password=conf.password)
    if conf.tls:
        data.update(ssl=True, **ssl_kwargs(conf))
    return list(conf.sentinels), _sentinel_node_kwargs(conf), data


# --- Celery (kombu transport, result backend) and RedBeat ------------------------------------------


def _celery_ssl(conf: RedisConf) -> dict[str, Any]:
    """redis-py's TLS arguments, with the ``ssl`` module's constant where kombu wants one."""
    return {**ssl_kwargs(conf), "ssl_cert_reqs": ssl.CERT_REQUIRED}


def _userinfo(conf: RedisConf) -> str:
    if not (conf.username or conf.password):
        return ""
    user = quote(conf.username or "", safe="")
    return f"{user}:{quote(conf.password, safe='')}@" if conf.password else f"{user}@"


def data_url(conf: RedisConf) -> str:
    """The one server's URL with the configured credentials (the URL itself unless they came
    from ``BROKERGATE_REDIS_USERNAME/PASSWORD``)."""
    if not conf.credentials_from_env:
        return conf.url
    parts = urlsplit(conf.url)
    netloc = _userinfo(conf) + parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def celery_conf(conf: RedisConf, transport_options: Mapping[str, Any] | None = None,
                backend_options: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """``app.conf`` entries for the broker and the result backend, ``transport_options`` and
    ``backend_options`` (the caller's own) merged with what Sentinel needs."""
    broker_opts, backend_opts = dict(transport_options or {}), dict(backend_options or {})
    if conf.sentinel:
        # Credentials ride on the first sentinel's URL: kombu and Celery's backend read them there
        # and hand them to the master connections; the sentinels' own come from sentinel_kwargs.
        urls = [f"sentinel://{_userinfo(conf) if i == 0 else ''}{h}:{p}/{conf.db}"
                for i, (h, p) in enumerate(conf.sentinels)]  # fmt: skip
        url = ";".join(urls)
        extra = {"master_name": conf.master, "sentinel_kwargs": _sentinel_node_kwargs(conf)}
        broker_opts.update(extra)
        backend_opts.update(extra)
    else:
        url = data_url(conf)
    out: dict[str, Any] = {
        "broker_url": url, "result_backend": url, "broker_transport_options": broker_opts,
        "result_backend_transport_options": backend_opts,
    }  # fmt: skip
    if conf.tls:
        out.update(broker_use_ssl=_celery_ssl(conf), redis_backend_use_ssl=_celery_ssl(conf))
    return out


def redbeat_conf(conf: RedisConf) -> dict[str, Any]:
    """``app.conf`` entries for RedBeat (celery-redbeat 2.4: ``redis-sentinel://`` with the
    sentinels in ``redbeat_redis_options``). Set explicitly, so RedBeat never falls back to the
    broker's transport options (deprecated there)."""
    options: dict[str, Any] = {"retry_period": conf.retry_s}
    if conf.sentinel:
        options.update(sentinels=list(conf.sentinels), service_name=conf.master, db=conf.db,
                       sentinel_kwargs=_sentinel_node_kwargs(conf), socket_timeout=5)  # fmt: skip
        if conf.username:
            options["username"] = conf.username
        if conf.password:
            options["password"] = conf.password
        url = f"redis-sentinel://{conf.sentinels[0][0]}:{conf.sentinels[0][1]}/{conf.db}"
    else:
        url = data_url(conf)
    out: dict[str, Any] = {"redbeat_redis_url": url, "redbeat_redis_options": options}
    if conf.tls:
        out["redbeat_redis_use_ssl"] = _celery_ssl(conf)
    return out
