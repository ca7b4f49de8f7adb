"""What one order costs in Redis round trips on the worker's path (``workers.placing.run_place``),
counted on the wire: every ``send_packed_command`` of every redis-py connection is one request
(a pipeline is one). The latency target (enqueue -> request at the broker, docs/architecture.md
§ Targets) is paid round trip by round trip, so the path's count is held here, not guessed.

The worker's authoritative risk read rides in the claim (``order_claim.lua``): an order with no
limit in force pays no round trip of its own for it; one with a count limit in force pays the
atomic admit (``risk_admit.lua``) and nothing more."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

from common import keys, orderstore, ratelimit, risk
from common.models import Order
from common.orderscripts import script
from common.risklimits import RiskLimits
from common.settings import Account, Cap, Secret
from tests.orders.helpers import make_order

_BULK = re.compile(rb"\$\d+\r\n([^\r]*)\r\n")
_ORDER_SCRIPTS = ("order_claim", "order_mark_sent", "order_apply", "order_transition")


class _Wire:
    """Every request this process sends to Redis while counting: the command's name, and for
    EVALSHA the script's name when it is one of the order or risk scripts."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.on = False
        self.names = {script(n).sha: n for n in _ORDER_SCRIPTS}
        self.names |= {risk._script(n).sha: n for n in ("risk_read", "risk_admit")}
        self.names |= {ratelimit._script(n).sha: n for n in ("ratelimit_reserve", "ratelimit_confirm")}

    def note(self, command: Any) -> None:
        if not self.on:
            return
        raw = b"".join(command) if isinstance(command, list | tuple) else bytes(command)
        words = _BULK.findall(raw[:200])
        name = words[0].decode().upper() if words else "?"
        if name == "EVALSHA" and len(words) > 1:
            name = self.names.get(words[1].decode(), "EVALSHA")
        self.sent.append(name)


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Wire]:
    w = _Wire()
    real = redis_lib.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> Any:
        w.note(command)
        return real(self, command, check_health)

    monkeypatch.setattr(redis_lib.connection.AbstractConnection, "send_packed_command", counted)
    yield w


class _Broker:
    """A broker that takes every order (the round trips counted are brokergate's own)."""

    def __init__(self) -> None:
        self.placed: list[str] = []

    def place(self, order: Order, _inst: Any) -> str:
        self.placed.append(order.client_order_id)
        return f"B{len(self.placed)}"


def _account(lim: RiskLimits) -> Account:
    # The bench's latency account: a cap the limiter never paces at, so the slot is one round trip.
    return Account(name="acct1", broker="kite", user_id="U1", api_key="k", password=Secret(""), totp_secret=Secret(""),
                   api_secret=Secret(""), rest_url="http://127.0.0.1:9", login_url="", ws_url="", order_ws_url="",
                   caps={"orders": (Cap(1000, 1),)}, extra={"read_timeout_s": 0}, risk=lim)


def _place(r: redis_lib.Redis, wire: _Wire, monkeypatch: pytest.MonkeyPatch, lim: RiskLimits) -> list[str]:
    """Place one order on the worker's path (the client stored it); the requests it sent."""
    from workers import brokercall as bc
    from workers import placing

    acct = _account(lim)
    broker = _Broker()
    monkeypatch.setattr(bc, "account", lambda _name: acct)
    monkeypatch.setattr(bc, "adapter_for", lambda _a: broker)
    monkeypatch.setattr(bc, "_token", lambda _a: ("tok", 1))
    # A thread paused past the slot's tolerance (2 busy cores) takes a new slot: more round trips, not ours.
    monkeypatch.setattr(ratelimit, "LATE_TOLERANCE_MS", 60_000)
    warm = make_order(account="acct1")  # loads every script and opens the connection: not counted
    orderstore.create(r, warm)
    assert placing.run_place(warm.to_dict()) == "OPEN"
    o = make_order(account="acct1")
    orderstore.create(r, o)
    wire.on = True
    try:
        state = placing.run_place(o.to_dict())
    finally:
        wire.on = False
    assert state == "OPEN" and broker.placed[-1] == o.client_order_id
    return wire.sent


def test_an_order_with_no_limit_pays_no_round_trip_for_the_risk_read(r: redis_lib.Redis, wire: _Wire,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Given an account with no risk limit (none in the file, none set at run time), When the
    worker places an order, Then the risk read is the claim's (no request of its own), and the
    whole path is the claim, the instrument's lookup (no master here: None), the limiter slot, the
    send gate, its confirmation and the OPEN update, which counts the order placed: six round trips
    (eight before the read rode in the claim, seven before the count rode in the update), four of
    them before the request leaves."""
    sent = _place(r, wire, monkeypatch, RiskLimits())
    assert sent[:4] == ["order_claim", "HMGET", "ratelimit_reserve", "order_mark_sent"], " ".join(sent)
    assert "risk_read" not in sent and "risk_admit" not in sent, " ".join(sent)
    assert sent[4:] == ["ratelimit_confirm", "order_apply"], " ".join(sent)
    assert r.hget(keys.stats("acct1"), "placed") == "2"  # the warm-up order and this one


def test_a_count_limit_costs_its_atomic_admit_and_nothing_more(r: redis_lib.Redis, wire: _Wire,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Given max_open_orders in force (set at run time: the read must see it on this very order),
    When the worker places an order, Then it pays the admit (which records it as open) and no
    separate read."""
    risk.set_limits(risk.account_scope("acct1"), {"max_open_orders": "5"}, r)
    sent = _place(r, wire, monkeypatch, RiskLimits())
    assert sent[:3] == ["order_claim", "HMGET", "risk_admit"], " ".join(sent)
    assert sent.count("risk_admit") == 1 and "risk_read" not in sent, " ".join(sent)
    assert len(sent) == 7, " ".join(sent)
    assert r.scard(keys.risk_open("acct1")) == 2  # both orders let through, both OPEN
