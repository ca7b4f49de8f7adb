"""The brokers the end-to-end tests run for, and what those tests may know about a broker.

``E2E_BROKERS`` is the broker registry itself (``common.brokers.BROKER_NAMES``): a broker that
registers there gets every end-to-end test (login, caps, exactly-once, feed resilience, push
updates) with no line of test code of its own. So the tests never ask "which broker is it?":
what they need to know comes from the surfaces every broker has (its adapter, its ``updates``
and ``feed`` flags, its instrument master, the paper broker's ``/_paper`` API).

A pytest plugin (registered by tests/conftest.py). Fixtures:
- ``broker`` (function, parametrized over E2E_BROKERS): the broker's name. A test that needs
  other cases parametrizes ``broker`` itself (e.g. over :data:`PUSH_CASES`).
- ``make_account`` (function): ``make_account(**kw) -> Account``, one configured account of
  ``broker`` and of no other broker (``kw`` as for ``make_accounts``: caps, postback_url, ...).
- ``broker_account`` (function): ``ready(make_account())``: logged in (token in Redis) and with
  its instrument master (MASTER_SYMBOLS) from the paper broker.

Helpers: :func:`only`, :func:`ready` (logged in, with an instrument master: :func:`load_master`),
:func:`token_works`, :func:`first_login_step`, :func:`login_requests`, :func:`push_paths`,
:func:`marketable` (an order that fills at once, within the broker's 2026 rules).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from common.brokers import BROKER_NAMES, spec_for
from common.brokers import broker as broker_record
from common.models import Instrument
from common.settings import Account

__all__ = [
    "E2E_BROKERS",
    "PUSH_CASES",
    "broker",
    "broker_account",
    "first_login_step",
    "load_master",
    "login_requests",
    "make_account",
    "marketable",
    "only",
    "push_paths",
    "ready",
    "token_works",
]

E2E_BROKERS: tuple[str, ...] = tuple(BROKER_NAMES)


def only(broker: str) -> dict[str, int]:
    """``make_accounts`` counts for one account of ``broker`` and none of the others (whose
    defaults are not all 0)."""
    return {"kite": 0, "angel": 0, broker: 1}


def push_paths(broker: str) -> list[str]:
    """The ways ``broker`` pushes order updates, from its own flags: ``postback`` (the
    receiver), ``order_socket`` (a socket of its own, feed/order_socket.py) and ``ticker``
    (messages on the market-data socket the feed keeps open)."""
    record = broker_record(broker)
    paths = []
    if record.updates.HAS_POSTBACK:
        paths.append("postback")
    if record.updates.ORDER_SOCKET:
        paths.append("order_socket")
    if record.feed.TICKER_CARRIES_ORDER_UPDATES:
        paths.append("ticker")
    return paths


def marketable(broker: str, side: str = "BUY") -> dict[str, str]:
    """The order fields of an order that fills at once at the paper broker within ``broker``'s
    2026 rules: none (a MARKET order) where the broker takes market orders from API clients
    (``BrokerSpec.market_orders``), else a LIMIT priced through every paper price (the client
    refuses a MARKET order there)."""
    if spec_for(broker).market_orders != "refused":
        return {}
    return {"order_type": "LIMIT", "price": "10000.00" if side.upper() == "BUY" else "0.05"}


# (broker, push path) for every push path of every broker.
PUSH_CASES: list[tuple[str, str]] = [(b, p) for b in E2E_BROKERS for p in push_paths(b)]


@pytest.fixture(params=E2E_BROKERS)
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_account(broker: str, make_accounts: Callable[..., dict[str, Account]]) -> Callable[..., Account]:
    made: set[str] = set()  # make_accounts returns every account so far: pick the new one

    def make(**kw: Any) -> Account:
        accts = make_accounts(**only(broker), **kw)
        (new,) = [a for n, a in accts.items() if a.broker == broker and n not in made]
        made.update(accts)
        return new

    return make


@pytest.fixture
def broker_account(make_account: Callable[..., Account], redis_url: str) -> Account:
    return ready(make_account())


# The instruments the end-to-end tests trade and stream (an index among them).
MASTER_SYMBOLS = frozenset({"INFY", "SBIN", "TCS", "RELIANCE", "HDFCBANK", "NIFTY 50"})
_masters: dict[str, list[Instrument]] = {}


def load_master(acct: Account) -> None:
    """Store the account's instrument master: the broker's own list, downloaded from the paper
    broker and parsed by the broker's ``instruments`` module, cut to MASTER_SYMBOLS. Downloaded
    once per broker (the paper universe is fixed for the session): storing all 9,000 rows in
    every test would cost more than the test."""
    from common import instruments
    from common.tokens import get_token

    if acct.broker not in _masters:
        tok = get_token(acct.name)
        rows = broker_record(acct.broker).instruments.fetch(acct, tok.access_token if tok else None)
        _masters[acct.broker] = [i for i in rows if i.exchange == "NSE" and i.symbol in MASTER_SYMBOLS]
        assert {i.symbol for i in _masters[acct.broker]} == MASTER_SYMBOLS, _masters[acct.broker]
    instruments.store(acct.name, _masters[acct.broker])


def ready(acct: Account) -> Account:
    """``acct`` logged in (the real login flow; token in Redis) and with its instrument master."""
    from tests.fixtures.accounts import logged_in

    logged_in([acct])
    load_master(acct)
    return acct


def token_works(acct: Account, access_token: str, timeout_s: float = 5.0) -> bool:
    """Whether the broker accepts ``access_token``, asked through the broker's own adapter
    (reading the order book): True when it answers, False when it refuses the token. A
    rate-limit answer is no answer to the question: ask again after it."""
    import time

    from common.brokers.base import adapter_for
    from common.errors import RateLimited, TokenExpired

    adapter = adapter_for(acct, lambda: access_token)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            adapter.orders()
            return True
        except TokenExpired:
            return False
        except RateLimited as e:
            if time.monotonic() + e.retry_after_s > deadline:
                raise
            time.sleep(max(e.retry_after_s, 0.05))


def first_login_step(log: list[dict[str, Any]], acct: Account) -> str | None:
    """The path of the first step of this account's login flow: the first login-class request
    that names its user. Every flow sends it exactly once, whatever its later steps."""
    for q in log:
        if q["endpoint_class"] == "login" and q.get("user_id") == acct.user_id and q.get("broker") == acct.broker:
            return str(q["path"])
    return None


def login_requests(paper: Any, acct: Account, *, accepted_only: bool = False) -> list[dict[str, Any]]:
    """The first step of each login flow of this account in the paper broker's log (one per
    flow; ``accepted_only``: not counting answers of the broker's own login rate limit)."""
    log = paper.requests()
    path = first_login_step(log, acct)
    return [
        q
        for q in log
        if q["path"] == path
        and q.get("user_id") == acct.user_id
        and q.get("broker") == acct.broker
        and (q["status"] == 200 or not accepted_only)
    ]
