"""The broker adapter contract, and how generic code gets an adapter without naming a broker.

A broker package provides ``rest.Adapter(account, token_getter)`` implementing
:class:`BrokerAdapter`. Every method raises only the types of ``common/errors.py`` (each
broker maps its errors in its ``errors.py``, at one point), speaks the generic models, and
never retries on its own: retry, re-login and reconciliation are the caller's decisions,
because only the caller knows the order's state and deadline.

The HTTP road every REST adapter shares is here too (:func:`new_session`, :func:`send`): one
keep-alive session, explicit (connect, read) timeouts, and the one point where transport
failures become error types. A failure before the request could reach the broker (DNS,
connect refused, connect timeout) is BrokerUnavailable: certainly not processed, safe to
retry. A failure after the request left (read timeout, reset, the connection dropped
mid-answer) is Ambiguous: the broker may have acted on it, so reconcile before any resend.

A request sent inside :func:`sending_by` does not leave when its connection is only made after
the given moment (a new connection can take seconds: DNS, a lost SYN); that is a failure before
the send (BrokerUnavailable), so an order's deadline holds up to the moment its bytes leave.

Order egress (the 2026 static-IP rule, ``common/brokers/egress.py``): an account whose extras name an
``order_source_address`` or an ``order_proxy`` gets a second keep-alive session, on that road, for its
order calls (place, modify, cancel: each adapter passes ``order=True`` to :meth:`RestAdapterBase._session`);
everything else keeps the default road. Both sessions are :func:`new_session`'s, deadline-aware alike.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.util.retry import Retry

from common.brokers import broker
from common.brokers.egress import OrderEgress
from common.errors import Ambiguous, BrokerError, BrokerUnavailable, OrderRejected, TokenExpired
from common.models import Instrument, Order, OrderUpdate
from common.portfolio import Funds, Holding, Margin, Position, Trade
from common.settings import READ_TIMEOUT_S, Account

__all__ = [
    "CONNECT_TIMEOUT_S",
    "NOT_FORWARDED",
    "PORTFOLIO",
    "BrokerAdapter",
    "RestAdapterBase",
    "TokenGetter",
    "adapter_for",
    "coded_error",
    "default_token_getter",
    "get_file",
    "json_or_none",
    "new_session",
    "pinned_token",
    "placed",
    "request_once",
    "send",
    "sending_by",
    "session_or_new",
    "status_error",
    "warm",
]

log = logging.getLogger(__name__)

# Returns the access token to send, or None when the account has none (-> TokenExpired).
TokenGetter = Callable[[], "str | None"]


@runtime_checkable
class BrokerAdapter(Protocol):
    """What the order worker needs from a broker's REST API."""

    account: Account

    def place(self, order: Order, instrument: Instrument | None) -> str:
        """Send a new order (its client_order_id as the broker's tag); the broker's order id."""
        ...

    def modify(self, order: Order, broker_order_id: str, changes: dict[str, Any],
               instrument: Instrument | None) -> str:
        """Change quantity, price, trigger_price, order_type or validity of an open order."""
        ...

    def cancel(self, order: Order, broker_order_id: str) -> str:
        """Cancel an open order; the broker's order id."""
        ...

    def order_by_tag(self, tag: str) -> OrderUpdate | None:
        """The order carrying ``tag`` in the day's order book, or None (reconciliation)."""
        ...

    def orders(self) -> list[OrderUpdate]:
        """The day's order book, normalized (rows without a known status are skipped)."""
        ...

    # Account state (``common/brokers/<broker>/portfolio.py`` translates; ``common/accountstate.py``
    # calls these through the limiter, endpoint class :data:`PORTFOLIO`).
    def positions(self) -> list[Position]:
        """Today's position book (net positions, with the day's buys and sells)."""
        ...

    def holdings(self) -> list[Holding]:
        """The demat holdings."""
        ...

    def funds(self) -> Funds:
        """Funds and margins (per segment where the broker splits them)."""
        ...

    def trades(self) -> list[Trade]:
        """The day's trade book (fills)."""
        ...

    def margin_required(self, orders: Sequence[tuple[Order, Instrument | None]]) -> Margin:
        """The broker's margin calculator for these orders (each with its instrument from the
        master), together and one by one; nothing is placed."""
        ...


# The endpoint class of the account-state reads (positions, holdings, funds, trades): a broker's
# spec may cap it on its own; else the account's "other" caps apply (Account.caps_for).
PORTFOLIO = "portfolio"


class RestAdapterBase:
    """What every REST adapter shares: its account, token getter, HTTP session and timeouts, the
    token check before a request, and the order-book lookup by tag. A broker's ``Adapter``
    adds its headers, its call and error mapping, and the order endpoints."""

    def __init__(self, account: Account, token_getter: TokenGetter) -> None:
        self.account = account
        self._token = token_getter
        self._base = account.rest_url.rstrip("/")
        self._http = new_session(base_url=self._base)
        egress = OrderEgress.of(account.extra)
        # Order calls leave from the address the broker has registered; without one set, the same session.
        self._order_http = self._http if egress.default else new_session(
            base_url=self._base, source_address=egress.source_address, proxy=egress.proxy)
        self._read_timeout_s = account.read_timeout_s

    def _session(self, order: bool = False) -> requests.Session:
        """The session a request goes on: the order egress's for an order call (place, modify, cancel),
        the default one for every other (login, books, positions, instruments)."""
        return self._order_http if order else self._http

    def _access_token(self) -> str:
        token = _pinned.get()
        if token is None:
            token = self._token()
        if not token:
            raise TokenExpired(f"{self.account.name}: no access token (not logged in)")
        return token

    def orders(self) -> list[OrderUpdate]:
        raise NotImplementedError

    def order_by_tag(self, tag: str) -> OrderUpdate | None:
        # The latest row wins if a tag appears twice (it must not, but never pick a stale one).
        found = [u for u in self.orders() if u.client_order_id == tag]
        return found[-1] if found else None


def placed(order_id: str, broker: str) -> str:
    """The order id of a place answer that says success; a success without one is Ambiguous (the
    order may be at the broker: reconcile by its tag, never resend)."""
    if not order_id:
        raise Ambiguous(f"{broker}: success without an order id")
    return order_id


def default_token_getter(account: Account) -> TokenGetter:
    """The account's current access token from the token store (cached; new versions seen fast)."""

    def get() -> str | None:
        from common.tokens import get_token

        tok = get_token(account.name)
        return tok.access_token if tok else None

    return get


_lock = threading.Lock()
_adapters: dict[tuple[int, str], BrokerAdapter] = {}


def adapter_for(account: Account, token_getter: TokenGetter | None = None) -> BrokerAdapter:
    """The adapter of ``account``'s broker. Without a token getter it is cached per process
    (one keep-alive HTTP session per account; per pid, since a forked child must not share
    its parent's sockets)."""
    make = broker(account.broker).rest
    if token_getter is not None:
        return make(account, token_getter)
    key = (os.getpid(), account.name)
    with _lock:
        adapter = _adapters.get(key)
        if adapter is None or adapter.account != account:
            adapter = make(account, default_token_getter(account))
            _adapters[key] = adapter
        return adapter


# The token an order worker read before its point of no return (workers/brokercall.py): the
# request carries exactly that one, and reads nothing from Redis after it was marked sent.
_pinned: contextvars.ContextVar[str | None] = contextvars.ContextVar("bg_pinned_token", default=None)


@contextlib.contextmanager
def pinned_token(access_token: str) -> Iterator[None]:
    """Requests made in this block (this thread) carry ``access_token``, not a fresh read ("":
    the account has none, so they raise TokenExpired before anything leaves)."""
    token = _pinned.set(access_token)
    try:
        yield
    finally:
        _pinned.reset(token)


_warm_pools: weakref.WeakKeyDictionary[requests.Session, HTTPConnectionPool] = weakref.WeakKeyDictionary()


def warm(adapter: BrokerAdapter, order: bool = False) -> None:
    """Open a connection to the adapter's host when its session has no idle one, so that a
    request bound to a limiter slot does not spend its slot on DNS, TCP and TLS. Best effort:
    a failure here is met again, and classified, by the request itself. ``order``: the session of
    the order calls (their own egress, when the account has one)."""
    http = (order and getattr(adapter, "_order_http", None)) or getattr(adapter, "_http", None)
    base = getattr(adapter, "_base", None)
    if not isinstance(http, requests.Session) or not base:
        return
    try:
        pool = _warm_pools.get(http)
        if pool is None:
            # The pool requests itself will use for this host (its key carries the TLS settings);
            # only an HTTPAdapter (ours, new_session's) has pools to warm. Looked up once per
            # session (~0.2 ms, on every order's path otherwise): a session talks to one host.
            transport = http.get_adapter(base)
            if not isinstance(transport, HTTPAdapter):
                return
            prepared = requests.Request("GET", base).prepare()
            pool = _warm_pools[http] = transport.get_connection_with_tls_context(
                prepared, http.verify, proxies=http.proxies or None, cert=http.cert)
        if pool.pool is not None and pool.pool.qsize() and any(
                c is not None and not c.is_closed for c in list(pool.pool.queue)):
            return
        # urllib3 has no public "pre-connect"; take a connection, connect it, give it back.
        conn = pool._get_conn()
        try:
            if conn.is_closed:
                conn.timeout = CONNECT_TIMEOUT_S
                conn.connect()
        finally:
            pool._put_conn(conn)
    except Exception as e:
        log.debug("warming a connection to %s failed: %s", base, type(e).__name__)


# --- the HTTP road ------------------------------------------------------------------------------

CONNECT_TIMEOUT_S = 3.05  # just over a TCP retransmit (3 s), so one lost SYN is survived
# The default read timeout is the account's (common/settings.py, one definition).


_send_by: contextvars.ContextVar[float | None] = contextvars.ContextVar("bg_send_by", default=None)


@contextlib.contextmanager
def sending_by(monotonic_deadline: float) -> Iterator[None]:
    """Requests made in this block (this thread) are not sent on a connection made after
    ``monotonic_deadline`` (time.monotonic()): they fail with BrokerUnavailable instead."""
    token = _send_by.set(monotonic_deadline)
    try:
        yield
    finally:
        _send_by.reset(token)


class _PastDeadline(NewConnectionError):
    """Connected, or about to write the request, only after its deadline: the request was not sent."""


def _check_send_by(conn: HTTPConnection) -> None:
    by = _send_by.get()
    if by is not None and time.monotonic() > by:
        conn.close()
        raise _PastDeadline(conn, "past the request's send-by moment: not sent")


class _SendBy(HTTPConnection):
    """Checks the send-by moment after connecting and again right before a request's first byte is
    written, so a kept-alive connection does not carry a request out late: a thread held up after
    its point of no return (the GIL, a pause) would otherwise write it whenever it ran again."""

    _bg_unwritten = False

    def connect(self) -> None:
        super().connect()
        _check_send_by(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._bg_unwritten = True
        try:
            super().request(*args, **kwargs)
        finally:
            self._bg_unwritten = False

    def send(self, data: Any) -> None:
        if self._bg_unwritten:
            # As late as Python can check: only the sendall call is left after it (a plain-HTTP
            # connection is made inside this send, and connect() checks again after it).
            self._bg_unwritten = False
            _check_send_by(self)
        super().send(data)


class _DeadlineHTTPSConnection(_SendBy, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _SendBy


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_POOL_CLASSES = {"http": _HTTPPool, "https": _HTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    """Every pool (direct, or through a proxy) makes deadline-aware connections, bound to
    ``source_address`` when one is given (urllib3 binds each new socket to it before connecting)."""

    def __init__(self, *args: Any, source_address: str = "", **kwargs: Any) -> None:
        self._bind: dict[str, Any] = {"source_address": (source_address, 0)} if source_address else {}
        super().__init__(*args, **kwargs)  # calls init_poolmanager, which reads _bind

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **{**kwargs, **self._bind})
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **{**proxy_kwargs, **self._bind})
        manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


def new_session(base_url: str | None = None, *, source_address: str = "", proxy: str = "") -> requests.Session:
    """A keep-alive session. urllib3 must never retry on its own: a silent resend of an order
    POST is exactly the duplicate this project exists to prevent.

    With ``base_url`` (every request goes to that host), the environment's proxy and CA-bundle
    settings are read once, here, with requests' own rules (``NO_PROXY`` included): requests
    otherwise re-reads them, scanning the whole environment, on every request, which cost
    ~0.5 ms of every order's send path (measured by cProfile on the worker).

    ``source_address`` (a local IP) binds every connection to it; ``proxy`` (an http(s) URL) sends
    every request through it. Either one is an explicit egress: the environment's proxies are then
    not used (an environment proxy would make the broker see the proxy's address instead)."""
    s = requests.Session()
    explicit = bool(source_address or proxy)
    if explicit:
        s.proxies.update({"http": proxy, "https": proxy} if proxy else {})
    elif base_url is not None:
        s.proxies.update(requests.utils.get_environ_proxies(base_url))
    if base_url is not None or explicit:
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            s.verify = bundle
        s.trust_env = False
    adapter = _DeadlineAdapter(pool_connections=1, pool_maxsize=4, source_address=source_address,
                               max_retries=Retry(total=0, connect=0, read=0, redirect=0, status=0, other=0,
                                                 raise_on_redirect=False, raise_on_status=False))
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def _before_send(exc: BaseException) -> bool:
    """True when the failure happened before the request could have reached the server."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, requests.exceptions.ConnectTimeout | NewConnectionError | NameResolutionError
                      | ConnectionRefusedError):
            return True
        reason = getattr(cur, "reason", None)
        if isinstance(reason, BaseException) and id(reason) not in seen:
            cur = reason
            continue
        args = getattr(cur, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        cur = nested if nested is not None else (cur.__cause__ or cur.__context__)
    return False


def send(session: requests.Session, method: str, url: str, *, read_timeout_s: float = READ_TIMEOUT_S,
         **kw: Any) -> requests.Response:
    """One request; transport failures mapped to BrokerUnavailable / Ambiguous."""
    try:
        return session.request(method, url, timeout=(CONNECT_TIMEOUT_S, read_timeout_s), **kw)
    except requests.exceptions.ConnectTimeout as e:
        raise BrokerUnavailable(f"connect timeout: {url}", reached=False) from e
    except requests.exceptions.ReadTimeout as e:
        raise Ambiguous(f"no answer within {read_timeout_s} s: {url}") from e
    except requests.exceptions.ConnectionError as e:
        if _before_send(e):
            raise BrokerUnavailable(f"cannot connect: {url}", reached=False) from e
        raise Ambiguous(f"connection lost after the request was sent: {url}") from e
    except requests.exceptions.RequestException as e:
        raise Ambiguous(f"request failed: {url}: {type(e).__name__}") from e


# Statuses that say the request went no further than the server that answered: 503 (no upstream
# to give it to, or refused under load). A 502 is not one: a proxy answers it also when its
# upstream closed the connection mid-answer, after the broker may have acted; 500 and 504 likewise.
NOT_FORWARDED = frozenset({503})


def status_error(broker: str, http_status: int, text: str = "") -> BrokerError:
    """The error for an answer that is not the broker's own (a proxy's or load balancer's page):
    BrokerUnavailable when its status says nothing was forwarded, else Ambiguous (reconcile)."""
    if http_status in NOT_FORWARDED:
        return BrokerUnavailable(f"{broker}: HTTP {http_status}", http_status=http_status)
    return Ambiguous(f"{broker}: HTTP {http_status}, not a {broker} answer: {(text or '')[:120]!r}",
                     http_status=http_status)


def coded_error(kind: type[BrokerError] | None, message: str, *, code: str | None,
                http_status: int) -> BrokerError:
    """The error of a well-formed error answer whose code a broker's table names as ``kind`` (None: a
    code missing from the table). An answer that may have been acted on (Ambiguous) is BrokerUnavailable
    when its status says nothing was forwarded; an unknown code is a refusal (OrderRejected: the same
    request fails again), except with a 5xx status: the OMS may have acted before it failed (Ambiguous)."""
    if kind is Ambiguous and http_status in NOT_FORWARDED:
        return BrokerUnavailable(message, code=code, http_status=http_status)
    if kind is None:
        kind = Ambiguous if 500 <= http_status <= 599 else OrderRejected
    return kind(message, code=code, http_status=http_status)


# --- one-off requests: a login step, an instrument file --------------------------------------------


@contextlib.contextmanager
def session_or_new(session: requests.Session | None) -> Iterator[requests.Session]:
    """``session`` as given (the caller's to close), or a new one closed on leaving the block."""
    s = session or requests.Session()
    try:
        yield s
    finally:
        if session is None:
            s.close()


def request_once(session: requests.Session, method: str, url: str, what: str, *,
                 timeout: float | tuple[float, float], **kw: Any) -> requests.Response:
    """One request outside the order path (a login step, a file download): nothing there needs
    reconciling, so every transport failure is BrokerUnavailable (``"<what>: <exception type>"``;
    never the URL or the exception text, which may carry a secret) and the caller retries."""
    try:
        return session.request(method, url, timeout=timeout, **kw)
    except requests.RequestException as e:
        raise BrokerUnavailable(f"{what}: {type(e).__name__}") from None


def get_file(session: requests.Session, url: str, what: str, *, timeout: float | tuple[float, float],
             headers: dict[str, str] | None = None, token_refused: int | None = None) -> requests.Response:
    """A GET that must answer 200 (an instrument file): any other status is BrokerUnavailable,
    except ``token_refused`` (the status by which the host refuses the token): TokenExpired."""
    resp = request_once(session, "GET", url, what, timeout=timeout, headers=headers)
    if token_refused is not None and resp.status_code == token_refused:
        raise TokenExpired(f"{what}: token refused", http_status=resp.status_code)
    if resp.status_code != 200:
        raise BrokerUnavailable(f"{what}: HTTP {resp.status_code}", http_status=resp.status_code)
    return resp


def json_or_none(resp: requests.Response) -> Any:
    """The answer's JSON, or None when it has none (an HTML error page, an empty body)."""
    try:
        return resp.json()
    except ValueError:
        return None
