"""Process settings (environment and ``.env``) and the accounts file (TOML).

Secrets are references in the accounts file (``api_secret = "env:ACCOUNT1_API_SECRET"``).
A bad field, or a secret written as a value, is one :class:`ConfigError` at load time whose
message names it. The environment variable behind a reference is read on first use
(:meth:`Secret.get`), so a process that never logs in or sends (a strategy, ``brokergate
status``) runs with the accounts' public fields alone; a missing variable is then a
:class:`ConfigError` naming it. Processes that do log in and send (workers, Beat, feed,
receiver) call :func:`require_secrets` at start, so there a missing secret is a start-up
error. A :class:`Secret` never shows its value in a repr or str, and every resolved secret
is registered with the log redactor.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from common import keys
from common.algorules import check_clients, registered_algo
from common.brokers import BROKER_NAMES, COUNTED_PER_APP, SHARED_BUDGET, BrokerSpec, market_orders, spec_for
from common.errors import ConfigError
from common.risklimits import RiskLimits, parse_limits, parse_strategies

__all__ = ["Account", "Cap", "Secret", "Settings", "load_accounts", "load_settings", "parse_cap", "require_secrets"]

_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
_CAP = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")
_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
SECRET_FIELDS = ("password", "totp_secret", "api_secret")


class Secret:
    """A secret value that never prints itself: a value, or a reference to an environment
    variable (:meth:`reference`) read on first :meth:`get`."""

    __slots__ = ("_environ", "_value", "_var", "_where")

    def __init__(self, value: str) -> None:
        self._value: str | None = value
        self._var = ""
        self._where = ""
        self._environ: Mapping[str, str] | None = None

    @classmethod
    def reference(cls, var: str, where: str, environ: Mapping[str, str] | None = None) -> Secret:
        """``env:VAR``, resolved on first use from ``environ`` (default: the process
        environment at that moment, ``.env`` included); ``where`` names it in errors."""
        s = cls("")
        s._value, s._var, s._where, s._environ = None, var, where, environ
        return s

    @property
    def variable(self) -> str:
        """The environment variable behind a reference ("" for a value)."""
        return self._var

    def get(self) -> str:
        """The value. Raises ConfigError naming the variable when a reference cannot be resolved."""
        if self._value is None:
            env = os.environ if self._environ is None else self._environ
            # Not env.get(): a dict subclass that overrides only __contains__/__getitem__ keeps its rules.
            value = env[self._var] if self._var in env else ""  # noqa: SIM401
            if not value:
                raise ConfigError(f"{self._where}: environment variable {self._var} is not set")
            from common.logs import register_secrets

            # Registered before anyone can log it: the redactor knows every secret in use.
            register_secrets([value])
            self._value = value
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def _identity(self) -> tuple[str, str]:
        # A reference is the same secret as another of the same variable, resolved or not.
        return ("env", self._var) if self._var else ("value", self._value or "")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._identity() == self._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __bool__(self) -> bool:
        """Whether it is configured (a reference, or a non-empty value); resolves nothing."""
        return bool(self._var or self._value)


@dataclass(frozen=True, slots=True)
class Cap:
    """At most ``count`` requests in any sliding window of ``period_s`` seconds."""

    count: int
    period_s: int

    def __str__(self) -> str:
        unit = {1: "s", 60: "min", 3600: "hour", 86400: "day"}.get(self.period_s)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.period_s}s"


def parse_cap(text: str, where: str = "cap") -> Cap:
    m = _CAP.match(str(text).lower())
    if not m or m.group(2) not in _PERIODS or int(m.group(1)) <= 0:
        raise ConfigError(f"{where}: {text!r} is not a cap like '10/s', '400/min', '1000/hour' or '5000/day'")
    return Cap(int(m.group(1)), _PERIODS[m.group(2)])


@dataclass(frozen=True)
class Account:
    """One broker account from the accounts file. Secrets are :class:`Secret`."""

    name: str
    broker: str
    user_id: str
    api_key: str
    password: Secret
    totp_secret: Secret
    api_secret: Secret
    rest_url: str
    login_url: str
    ws_url: str
    order_ws_url: str
    caps: dict[str, tuple[Cap, ...]]
    login_time: time = time(8, 45)
    timezone: str = "Asia/Kolkata"
    concurrency: int = 2
    rate_limit: str = ""  # Celery's per-worker rate_limit; derived from the order caps unless set
    deadline_s: float = 30.0
    feed_sockets: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    risk: RiskLimits = field(default_factory=RiskLimits)  # pre-trade limits (common/risk.py), overridable at run time
    registered_algo: bool = False  # a strategy registered with the exchange: may send > 10 orders/s (common/algorules.py)

    def secrets(self) -> list[str]:
        """Every configured secret's value (resolving references: ConfigError when one is missing)."""
        return [s.get() for s in (getattr(self, f) for f in SECRET_FIELDS) if s]

    @property
    def market_orders(self) -> str:
        """How the broker takes this account's MARKET and SL-M orders (``BrokerSpec.market_orders``)."""
        return market_orders(spec_for(self.broker), self.extra)

    @property
    def read_timeout_s(self) -> float:
        """How long an order request waits for the broker's answer before it is Ambiguous."""
        return float(self.extra.get("read_timeout_s", READ_TIMEOUT_S))

    def caps_for(self, endpoint_class: str) -> tuple[Cap, ...]:
        return self.caps.get(endpoint_class) or self.caps.get("other", ())

    def shared_caps(self) -> tuple[Cap, ...]:
        """The caps every request of the account counts in, whatever its class (empty when the
        broker counts each class on its own; ``BrokerSpec.shared_caps``)."""
        return self.caps.get(SHARED_BUDGET, ())

    def limit_scope(self) -> str:
        """Whose requests the broker counts together (``BrokerSpec.caps_counted_per``): the
        user id or the API key, with the broker. The limiter keys its state by this, so every
        account of one scope shares one limiter, as they share one counter at the broker."""
        counted_per = spec_for(self.broker).caps_counted_per
        identity = self.api_key if counted_per == COUNTED_PER_APP else self.user_id
        return keys.limit_scope(self.broker, counted_per, identity)

    def order_rate(self) -> float | None:
        """Order requests per second at the rate of the shortest order window (None: no order cap)."""
        shortest = min(self.caps_for("orders"), key=lambda c: c.period_s, default=None)
        return None if shortest is None else shortest.count / shortest.period_s

    def celery_rate_limit(self) -> str:
        """Celery's ``rate_limit`` for this account's order task, as a first line of defence
        (the Redis limiter is the guarantee): the explicit ``rate_limit``, else the rate of the
        SHORTEST order window. Not the tightest average: Celery's bucket holds one token, so
        20/min would become one task per 3 s per worker and forbid the burst the caps allow
        (measured: 25 orders at 5/s + 20/min took 37 s instead of 4 s); bursts within the
        longer windows are the limiter's to shape."""
        if self.rate_limit:
            return self.rate_limit
        rate = self.order_rate()
        return "10/s" if rate is None else f"{rate:.4g}/s"


@dataclass(frozen=True)
class Settings:
    """Process-wide settings, from the environment (``BROKERGATE_*``) and ``.env``."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    accounts_path: str = "accounts.toml"
    log_level: str = "INFO"
    log_json: bool = False
    flower_user: str = ""
    flower_password: Secret = field(default_factory=lambda: Secret(""))
    postback_host: str = "127.0.0.1"
    postback_port: int = 8701
    # How long a settled order (and its entry in the account's index) stays readable: long enough
    # for a strategy or an operator to look back over a trading week, short enough that Redis,
    # which holds everything in memory, does not grow with every order ever placed.
    order_retention_days: float = 7.0
    # How often Beat reads every account's positions, holdings, funds and trades from the broker
    # (common/accountstate.py): pushed fills keep them current in between, so this only bounds
    # the drift a missed postback can leave. Low on purpose: each read spends a request of a cap.
    account_state_every_s: float = 60.0


def _number(environ: dict[str, str], name: str, default: float, ok: Callable[[float], bool], what: str) -> float:
    """The variable as a float that ``ok`` accepts: a non-number reads as nan, which (like inf)
    every bound refuses."""
    text = environ.get(name, str(default))
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not ok(value):
        raise ConfigError(f"{name}: {text!r} is not {what}")
    return value


def load_dotenv_once() -> None:
    """Read ``.env`` into the environment; variables already set win."""
    from dotenv import load_dotenv

    load_dotenv(".env", override=False)


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    if environ is None:
        load_dotenv_once()
        environ = dict(os.environ)
    port = environ.get("BROKERGATE_POSTBACK_PORT", str(Settings.postback_port))
    if not port.isdigit():
        raise ConfigError(f"BROKERGATE_POSTBACK_PORT: {port!r} is not a port number")
    level = environ.get("BROKERGATE_LOG_LEVEL", Settings.log_level).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"BROKERGATE_LOG_LEVEL: {level!r} is not a log level")
    retention_days = _number(environ, "BROKERGATE_ORDER_RETENTION_DAYS", Settings.order_retention_days,
                             lambda x: 0 < x < 3650, "a number of days > 0")
    every_s = _number(environ, "BROKERGATE_ACCOUNT_STATE_EVERY_S", Settings.account_state_every_s,
                      lambda x: 5 <= x <= 86400, "a number of seconds in 5..86400")
    return Settings(
        redis_url=environ.get("BROKERGATE_REDIS_URL", Settings.redis_url),
        accounts_path=environ.get("BROKERGATE_ACCOUNTS", Settings.accounts_path),
        log_level=level,
        log_json=environ.get("BROKERGATE_LOG_JSON", "").lower() in ("1", "true", "yes"),
        flower_user=environ.get("BROKERGATE_FLOWER_USER", Settings.flower_user),
        flower_password=Secret(environ.get("BROKERGATE_FLOWER_PASSWORD", "")),
        postback_host=environ.get("BROKERGATE_POSTBACK_HOST", Settings.postback_host),
        postback_port=int(port),
        order_retention_days=retention_days,
        account_state_every_s=every_s,
    )


def _secret_ref(value: Any, where: str, environ: Mapping[str, str] | None, required: bool) -> Secret:
    """The secret a field refers to, unresolved: the file's mistakes are errors now, the
    environment's only when the secret is used (see the module docstring)."""
    if value is None or value == "":
        if required:
            raise ConfigError(f"{where}: required (write it as \"env:VARIABLE\")")
        return Secret("")
    if not isinstance(value, str) or not value.startswith("env:"):
        # A literal secret in a file that gets committed and copied around is how keys leak.
        raise ConfigError(f"{where}: secrets are references like \"env:VARIABLE\", not values")
    var = value[4:]
    if not var:
        raise ConfigError(f"{where}: empty variable name in {value!r}")
    return Secret.reference(var, where, environ)


def _str(table: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    v = table.get(key, default)
    if v is None:
        raise ConfigError(f"{where}.{key}: required")
    if not isinstance(v, str):
        raise ConfigError(f"{where}.{key}: must be a string, got {type(v).__name__}")
    return v


READ_TIMEOUT_S = 7.0  # an order answer normally takes < 1 s; longer means "reconcile", not "wait"


def _parse_extra(t: dict[str, Any], where: str, spec: BrokerSpec) -> dict[str, Any]:
    """The account's `extra` table, each key one the broker reads and of its type."""
    extra = t.get("extra", {})
    if not isinstance(extra, dict):
        raise ConfigError(f"{where}.extra: must be a table like {{ read_timeout_s = 7 }}")
    for key, value in extra.items():
        problem = spec.extra_problem(key, value)
        if problem:
            raise ConfigError(f"{where}.extra.{key}: {problem}")
    try:
        market_orders(spec, extra)
    except ValueError as e:
        raise ConfigError(f"{where}.extra.{e}") from None
    return dict(extra)


_ACCOUNT_FIELDS = frozenset(f.name for f in fields(Account)) - {"name"}  # what an [accounts.<name>] table may say


def _parse_caps(t: dict[str, Any], where: str, broker: str, spec: BrokerSpec) -> dict[str, tuple[Cap, ...]]:
    """The broker's caps, each class the account's table names replacing the broker's own."""
    caps_in = t.get("caps", {})
    if not isinstance(caps_in, dict):
        raise ConfigError(f"{where}.caps: must be a table like {{ orders = [\"10/s\", \"400/min\"] }}")
    caps: dict[str, tuple[Cap, ...]] = {k: tuple(parse_cap(c, f"{where}.caps.{k}") for c in v) for k, v in spec.caps.items()}
    if spec.shared_caps:
        caps[SHARED_BUDGET] = tuple(parse_cap(c, f"{where}.caps.{SHARED_BUDGET}") for c in spec.shared_caps)
    for cls, values in caps_in.items():
        if cls == SHARED_BUDGET and not spec.shared_caps:
            # It would be a budget the broker does not have, silently shared by every class.
            raise ConfigError(f"{where}.caps.{cls}: {broker} counts each endpoint class on its own; "
                              "there is no budget shared by all classes to cap")
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.caps.{cls}: must be a list of caps like [\"10/s\"]")
        caps[cls] = tuple(parse_cap(c, f"{where}.caps.{cls}") for c in values)
    return caps


def _parse_schedule(t: dict[str, Any], where: str) -> dict[str, Any]:
    """The daily login time and the time zone it is read in (as Account fields)."""
    lt = t.get("login_time", Account.login_time.strftime("%H:%M"))
    try:
        hh, mm = str(lt).split(":")
        login_time = time(int(hh), int(mm))
    except ValueError:
        raise ConfigError(f"{where}.login_time: {lt!r} is not HH:MM") from None
    tz = _str(t, "timezone", where, Account.timezone)
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(tz)
    except Exception:
        raise ConfigError(f"{where}.timezone: {tz!r} is not a known time zone") from None
    return {"login_time": login_time, "timezone": tz}


def _parse_limits(t: dict[str, Any], where: str) -> dict[str, Any]:
    """``concurrency`` and ``feed_sockets``, ``deadline_s`` and the Celery ``rate_limit`` (as Account fields)."""
    out: dict[str, Any] = {}
    for key, default in (("concurrency", Account.concurrency), ("feed_sockets", Account.feed_sockets)):
        v = t.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{where}.{key}: must be a whole number >= 1")
        out[key] = v
    deadline = t.get("deadline_s", Account.deadline_s)
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or not 0 < deadline <= 3600:
        raise ConfigError(f"{where}.deadline_s: must be a number of seconds in (0, 3600]")
    rate_limit = _str(t, "rate_limit", where, "")
    if rate_limit and not re.match(r"^\d+(\.\d+)?/[smh]$", rate_limit):
        raise ConfigError(f"{where}.rate_limit: {rate_limit!r} is not a Celery rate like '3/s'")
    return {**out, "deadline_s": float(deadline), "rate_limit": rate_limit}


def _parse_account(name: str, t: Any, environ: Mapping[str, str] | None) -> Account:
    where = f"accounts.{name}"
    if not _ACCOUNT_NAME.match(name):
        raise ConfigError(f"{where}: account names are 1-40 letters, digits, '_' or '-'")
    if not isinstance(t, dict):
        raise ConfigError(f"{where}: must be a table")
    broker = _str(t, "broker", where)
    if broker not in BROKER_NAMES:
        raise ConfigError(f"{where}.broker: {broker!r} is not one of {', '.join(BROKER_NAMES)}")
    spec = spec_for(broker)
    for key in t:
        if key not in _ACCOUNT_FIELDS:
            raise ConfigError(f"{where}.{key}: unknown field")
    secrets: dict[str, Any] = {k: _secret_ref(t.get(k), f"{where}.{k}", environ, required=k in spec.secrets)
                               for k in SECRET_FIELDS}
    caps = _parse_caps(t, where, broker, spec)
    return Account(
        name=name, broker=broker,
        user_id=_str(t, "user_id", where),
        api_key=_str(t, "api_key", where),
        rest_url=_str(t, "rest_url", where, spec.rest_url).rstrip("/"),
        login_url=_str(t, "login_url", where, spec.login_url).rstrip("/"),
        ws_url=_str(t, "ws_url", where, spec.ws_url),
        order_ws_url=_str(t, "order_ws_url", where, spec.order_ws_url),
        caps=caps,
        **_parse_schedule(t, where),
        **_parse_limits(t, where),
        extra=_parse_extra(t, where, spec),
        risk=parse_limits(t.get("risk"), f"{where}.risk"),
        registered_algo=registered_algo(t, where, caps),  # refuses caps above the 2026 rule's 10/s
        **secrets,
    )


def _fmt_caps(caps: tuple[Cap, ...]) -> str:
    return "[" + ", ".join(f'"{c}"' for c in caps) + "]" if caps else "none"


def _check_shared_scopes(accounts: dict[str, Account]) -> None:
    """Accounts the broker counts as one (same broker and user id, or API key for a broker that
    counts per app) share one limiter state (``Account.limit_scope``). That is only sound when
    their caps agree: with different caps each would reserve against its own idea of the windows
    in one log, and the laxer one would fill what the stricter one must keep. So refuse, naming
    both accounts and the first class that differs; when they agree, they simply share."""
    first: dict[str, Account] = {}
    for a in accounts.values():
        scope = a.limit_scope()
        other = first.setdefault(scope, a)
        if other is a:
            continue
        for cls in sorted(set(a.caps) | set(other.caps)):
            mine, theirs = a.caps_for(cls), other.caps_for(cls)
            if mine != theirs:
                broker, counted_per, identity = scope.split(":", 2)
                raise ConfigError(
                    f"accounts.{a.name}.caps.{cls}: {_fmt_caps(mine)} disagrees with accounts.{other.name}.caps.{cls}: "
                    f"{_fmt_caps(theirs)}; both are {broker} {counted_per} {identity!r}, which the broker counts as one "
                    f"(caps counted per {counted_per}), so they share one limiter: give both the same caps")


def parse_accounts(text: str, environ: Mapping[str, str] | None = None, source: str = "accounts") -> dict[str, Account]:
    """Parse an accounts TOML document into accounts by name. Secrets stay references into
    ``environ`` (default: the process environment), read on first use; :func:`require_secrets`
    reads them all at once."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    table = doc.get("accounts")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{source}: no [accounts.<name>] table")
    accounts = {name: _parse_account(name, t, environ) for name, t in table.items()}
    _check_shared_scopes(accounts)
    check_clients(accounts.values())  # the 2026 rule's 10 orders/s per client, across a client's apps
    parse_strategies(doc.get("strategies"))  # read by common/risk.py; checked here, so a bad one fails at start
    return accounts


def require_secrets(accts: Iterable[Account], fields: Iterable[str] = SECRET_FIELDS) -> None:
    """Resolve these secrets of these accounts now (a process that logs in or sends calls this at
    start, for what it uses); one ConfigError naming every missing variable, so an operator fixes
    them in one go."""
    missing: list[str] = []
    names = tuple(fields)
    for a in accts:
        for s in (getattr(a, f) for f in names):
            if not s:
                continue
            try:
                s.get()
            except ConfigError as e:
                missing.append(str(e))
    if missing:
        raise ConfigError("; ".join(missing))


def load_accounts(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Account]:
    if environ is None:
        load_dotenv_once()
    p = Path(path or load_settings(None if environ is None else dict(environ)).accounts_path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"BROKERGATE_ACCOUNTS: accounts file {str(p)!r} does not exist") from None
    return parse_accounts(text, environ, source=str(p))


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()


@lru_cache(maxsize=1)
def accounts() -> dict[str, Account]:
    """The process's accounts, read once (restart, or ``accounts.cache_clear()``, to re-read).
    Secrets are read from the environment on first use (see :func:`require_secrets`)."""
    return load_accounts(settings().accounts_path)


def account(name: str) -> Account:
    try:
        return accounts()[name]
    except KeyError:
        raise ConfigError(f"account {name!r} is not in the accounts file") from None
