"""Fixtures of the feed tests: paper accounts logged in, an instrument master, a running feed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_lib

from common import instruments as master
from common.models import Instrument
from devtools.waiting import wait_for as _wait_for
from feed.supervisor import Feed
from paper.universe import build_universe
from tests.fixtures.accounts import logged_in
from tests.fixtures.paper import PaperBroker

UNIVERSE = build_universe()
BY_SYMBOL = {p.symbol: p for p in UNIVERSE}


def instruments_for(broker: str, symbols: list[str] | None = None) -> list[Instrument]:
    out = []
    for p in UNIVERSE if symbols is None else [BY_SYMBOL[s] for s in symbols]:
        if broker == "kite":
            out.append(Instrument(p.exchange, p.symbol, str(p.kite_token), instrument_type=p.instrument_type))
        else:
            out.append(Instrument(p.exchange, p.symbol, p.angel_token, broker_symbol=p.angel_symbol))
    return out


class Ticker:
    """The paper broker's tick clock (``/_paper/ticks``)."""

    def __init__(self, paper: PaperBroker) -> None:
        self.paper = paper

    def set(self, **body: Any) -> dict[str, Any]:
        r = self.paper.http.post(f"{self.paper.url}/_paper/ticks", json=body, timeout=10)
        r.raise_for_status()
        return dict(r.json())

    def last(self, broker: str, token: str, user_id: str) -> list[dict[str, Any]]:
        r = self.paper.http.get(
            f"{self.paper.url}/_paper/ticks/last", params={"broker": broker, "token": token, "user_id": user_id}, timeout=5
        )
        r.raise_for_status()
        return list(r.json())


@pytest.fixture
def ticker(paper: PaperBroker) -> Iterator[Ticker]:
    t = Ticker(paper)
    t.set(interval_ms=50, paused=False)
    yield t
    t.set(interval_ms=250, paused=False)


@pytest.fixture
def accounts(paper_accounts: dict[str, Any], r: redis_lib.Redis) -> dict[str, Any]:
    """kite1 and angel1, logged in (tokens in Redis), with a small instrument master."""
    logged_in(paper_accounts)
    symbols = ["NIFTY 50", "INFY", "SBIN", "RELIANCE", "TCS", "HDFCBANK"]
    for name, a in paper_accounts.items():
        master.store(name, instruments_for(a.broker, symbols), r)
    return paper_accounts


@pytest.fixture
def start_feed(r: redis_lib.Redis) -> Iterator[Callable[..., Feed]]:
    feeds: list[Feed] = []

    def start(accounts: dict[str, Any], **kw: Any) -> Feed:
        kw.setdefault("heartbeat_s", 0.1)
        kw.setdefault("backoff_base_s", 0.05)
        kw.setdefault("token_poll_s", 0.5)
        f = Feed(accounts, r, **kw)
        f.start()
        feeds.append(f)
        return f

    yield start
    for f in feeds:
        f.stop()


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """:func:`devtools.waiting.wait_for`, polling every 10 ms."""
    return _wait_for(predicate, timeout_s, interval_s=0.01, what=what)
