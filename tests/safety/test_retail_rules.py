"""The 2026 retail-algo rule of at most 10 orders per second per client (docs/brokers.md § The 2026
retail-algo rules; common/algorules.py), and the exchange algo id of a registered strategy.

- configuration: order caps that let more than 10 requests through in a second are refused at load
  unless the account is a ``registered_algo``; every broker's defaults keep the rule; a client's
  accounts on several apps (where the broker counts per app) may not add up to more;
- the paper broker: a user who is not a registered algo gets its 11th order request in a second
  refused in the dialect's own rate-limit answer, counted under ``orders_per_second``;
- brokergate at its default caps, 30 orders as fast as it can to each broker: no rule rejection;
- ``[strategies.<name>] algo_id``: checked at load and sent on Kite placements.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from common import instruments, keys, orderstore
from common.algorules import ORDERS_PER_SECOND, algo_id_of, most_in_one_second
from common.brokers import BROKER_NAMES, spec_for
from common.brokers.base import adapter_for
from common.brokers.kite import translate as kite_translate
from common.brokers.kite.rest import Adapter as KiteAdapter
from common.client import place_order
from common.errors import ConfigError, RateLimited
from common.models import Order
from common.ratelimit import max_in_window
from common.redis import get_redis
from common.settings import Account, parse_accounts, parse_cap
from devtools.paperbroker import PaperBroker
from devtools.waiting import wait_for
from paper.users import DEFAULT_CAPS
from tests.brokers import marketable, ready
from tests.fixtures.accounts import account_toml, paper_user_of
from tests.orders.helpers import order_requests

ENV = {"R_PASSWORD": "pw-123456", "R_TOTP": "JBSWY3DPEHPK3PXP", "R_SECRET": "s3cr3t-api"}
NS = 1_000_000_000


def _accounts(*tables: str, strategies: str = "") -> dict[str, Account]:
    return parse_accounts("".join(tables) + strategies, ENV)


def _table(name: str = "kite1", broker: str = "kite", user_id: str = "AB1234", api_key: str = "key1",
           **fields: Any) -> str:
    return account_toml(name, broker, user_id, api_key, env="R", **fields)


# --- configuration ------------------------------------------------------------------------------------
@pytest.mark.parametrize("orders", [["20/s"], ["1200/min"], ["11/s", "400/min"], ["100/s", "5000/day"]])
def test_order_caps_above_10_a_second_are_refused_naming_the_account_the_cap_and_the_rule(orders: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        _accounts(_table(caps={"orders": orders}))
    text = str(e.value)
    assert "accounts.kite1.caps.orders" in text and orders[0] in text
    assert "10 orders per second per client" in text and "registered_algo = true" in text


@pytest.mark.parametrize("orders", [["10/s"], ["10/s", "1200/min"], ["9/s", "500/min", "1000/hour"], ["5/min"]])
def test_order_caps_within_10_a_second_load(orders: list[str]) -> None:
    acct = _accounts(_table(caps={"orders": orders}))["kite1"]
    assert not acct.registered_algo and most_in_one_second(acct.caps_for("orders")) <= ORDERS_PER_SECOND


def test_a_registered_algo_may_go_above_and_the_flag_is_a_boolean() -> None:
    acct = _accounts(_table(caps={"orders": ["50/s"]}, registered_algo=True))["kite1"]
    assert acct.registered_algo and acct.caps_for("orders") == (parse_cap("50/s"),)
    with pytest.raises(ConfigError, match=r"accounts\.kite1\.registered_algo: must be true or false"):
        _accounts(_table(registered_algo="yes"))


def test_a_shared_budget_bounds_the_orders_too() -> None:
    # Fyers counts every class in one budget (caps.all): orders at 20/s under an all of 10/s hold 10/s.
    fyers = _table("f1", "fyers", "XY12345", "APPID-100", caps={"orders": ["20/s"], "all": ["10/s"]})
    assert not _accounts(fyers)["f1"].registered_algo


@pytest.mark.parametrize("broker", BROKER_NAMES)
def test_every_brokers_default_caps_keep_the_rule_here_and_at_the_paper_broker(broker: str) -> None:
    spec = spec_for(broker)
    ours = [parse_cap(c) for c in spec.caps["orders"] + list(spec.shared_caps or [])]
    paper = [parse_cap(c) for c in DEFAULT_CAPS[broker]["orders"]]
    assert most_in_one_second(ours) <= ORDERS_PER_SECOND and most_in_one_second(paper) <= ORDERS_PER_SECOND
    user_id = {"kite": "AB1234", "angel": "A123456", "fyers": "XY12345", "shoonya": "FA12345"}[broker]
    assert not _accounts(_table("a1", broker, user_id, "APPID-100"))["a1"].registered_algo


def test_one_clients_accounts_on_several_apps_may_not_add_up_above_10_a_second() -> None:
    # Fyers keeps one limiter state per app: one client's two apps at 10/s each would send 20/s.
    two = (_table("f1", "fyers", "XY12345", "APPA-100") + _table("f2", "fyers", "XY12345", "APPB-100"))
    with pytest.raises(ConfigError) as e:
        _accounts(two)
    assert "accounts.f1, accounts.f2" in str(e.value) and "up to 20 order requests" in str(e.value)
    halves = (_table("f1", "fyers", "XY12345", "APPA-100", caps={"orders": ["5/s"]})
              + _table("f2", "fyers", "XY12345", "APPB-100", caps={"orders": ["5/s"]}))
    assert set(_accounts(halves)) == {"f1", "f2"}
    # Accounts the broker counts as one share one limiter state: nothing adds up.
    assert set(_accounts(_table("k1", api_key="key-one") + _table("k2", api_key="key-two"))) == {"k1", "k2"}


# --- the paper broker's rule --------------------------------------------------------------------------
def _limit_order(acct: Account) -> Order:
    return Order(account=acct.name, exchange="NSE", symbol="INFY", side="BUY", quantity=1, order_type="LIMIT",
                 price=Decimal("1.00"))


def _send(acct: Account, n: int) -> tuple[list[str | Exception], float]:
    """``n`` placements straight through the broker's adapter, one after another, as fast as it goes."""
    adapter, r = adapter_for(acct), get_redis()
    out: list[str | Exception] = []
    t0 = time.monotonic()
    for _ in range(n):
        order = _limit_order(acct)
        try:
            out.append(adapter.place(order, instruments.lookup(acct.name, order.instrument_key, r)))
        except RateLimited as e:
            out.append(e)
    return out, time.monotonic() - t0


@pytest.mark.trips_rules
def test_the_paper_broker_refuses_the_11th_order_in_a_second_in_the_brokers_rate_limit_answer(
        broker_account: Account, paper: PaperBroker) -> None:  # fmt: skip
    """Given an account at its broker's default caps whose paper user is no registered algo, When
    11 orders go straight through the adapter within a second, Then the first 10 are placed and the
    11th is the broker's own rate-limit answer (brokergate reads it as RateLimited), counted once
    under orders_per_second and never placed."""
    got, took_s = _send(broker_account, ORDERS_PER_SECOND + 1)
    assert took_s < 1, f"11 requests to a local broker took {took_s:.2f} s: the rule's second is gone"
    assert all(isinstance(x, str) for x in got[:ORDERS_PER_SECOND]), got
    assert isinstance(got[-1], RateLimited), got[-1]
    assert paper.rule_rejections() == {"orders_per_second": 1}
    user = paper_user_of(broker_account).user_id
    assert len([o for o in paper.orders() if o["user_id"] == user]) == ORDERS_PER_SECOND


def test_a_registered_algos_paper_user_is_not_held_to_10_a_second(make_account: Any, paper: PaperBroker) -> None:
    """Given a registered algo (account and paper user) with room in its caps, When 15 orders go
    within a second, Then all are placed and no rule is counted."""
    acct = ready(make_account(caps={"orders": ["100/s"]}, registered_algo=True))
    got, _ = _send(acct, 15)
    assert all(isinstance(x, str) for x in got), got
    assert paper.rule_rejections() == {}


def test_the_control_endpoint_takes_registered_algo_as_a_boolean(paper: PaperBroker) -> None:
    paper.add_user(broker="kite", user_id="RA1234", registered_algo=True)
    listed = {u["user_id"]: u for u in paper.http.get(f"{paper.url}/_paper/users", timeout=5).json()}
    assert listed["RA1234"]["registered_algo"] is True
    answer = paper.http.post(f"{paper.url}/_paper/users", timeout=5, json={
        "broker": "kite", "user_id": "RB1234", "password": "p", "totp_secret": "JBSWY3DPEHPK3PXP", "api_key": "k",
        "registered_algo": "yes"})
    assert answer.status_code == 400 and "registered_algo must be true or false" in answer.json()["error"]


# --- brokergate at its default caps ------------------------------------------------------------------
@pytest.mark.slow
def test_brokergate_at_default_caps_sends_30_orders_to_each_broker_without_a_rule_rejection(
        make_accounts: Any, celery_workers: Any, paper: PaperBroker) -> None:  # fmt: skip
    """Given one account per broker at its default caps and one worker each, When 30 orders per
    account are enqueued at once, Then every order reaches its broker, no sliding second holds more
    than 10 of one client's order requests, and the paper broker refused nothing under the rules."""
    accts = make_accounts(kite=1, angel=1, fyers=1, shoonya=1)
    for acct in accts.values():
        ready(acct)
    celery_workers.start_many([([keys.urgent_queue(n), keys.orders_queue(n)], {}) for n in accts])
    ids = {n: [place_order(account=n, exchange="NSE", symbol="INFY", side="BUY", quantity=1, deadline_s=60,
                           **marketable(a.broker)).id for _ in range(30)] for n, a in accts.items()}
    r = get_redis()
    everyone = [i for each in ids.values() for i in each]
    wait_for(lambda: all((orderstore.get(r, i) or {}).get("state") in ("OPEN", "COMPLETE") for i in everyone),
             30, 0.2, "120 orders at their brokers")
    assert paper.rule_rejections() == {}
    log = paper.requests()
    for name, acct in accts.items():
        sent = order_requests(log, paper_user_of(acct).user_id)
        assert sorted(e["tag"] for e in sent) == sorted(ids[name]), name  # each once, none refused
        assert max_in_window([e["arrival_ns"] for e in sent], NS) <= ORDERS_PER_SECOND, name


# --- the exchange algo id -----------------------------------------------------------------------------
STRATEGIES = '\n[strategies.momentum]\nmax_order_quantity = 100\nalgo_id = "NSE-ALGO-42"\n'


def test_a_strategys_algo_id_is_checked_at_load_beside_its_limits() -> None:
    assert set(_accounts(_table(), strategies=STRATEGIES)) == {"kite1"}
    with pytest.raises(ConfigError, match=r"strategies\.momentum\.algo_id"):
        _accounts(_table(), strategies='\n[strategies.momentum]\nalgo_id = "has spaces"\n')
    with pytest.raises(ConfigError, match=r"strategies\.momentum\.algo_id"):
        _accounts(_table(), strategies="\n[strategies.momentum]\nalgo_id = 42\n")


@pytest.fixture
def accounts_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from common import settings as bg_settings

    path = tmp_path / "accounts.toml"
    path.write_text(_table() + STRATEGIES)
    monkeypatch.setenv("BROKERGATE_ACCOUNTS", str(path))
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    bg_settings.settings.cache_clear()
    bg_settings.accounts.cache_clear()
    yield path
    bg_settings.settings.cache_clear()
    bg_settings.accounts.cache_clear()


def test_kite_placements_carry_the_strategys_algo_id_and_others_carry_none(accounts_file: Path) -> None:
    """Kite's place_order takes ``algo_id`` (kiteconnect 5.2.2); its modify does not."""
    assert algo_id_of("momentum") == "NSE-ALGO-42" and algo_id_of("other") == "" and algo_id_of("") == ""
    from common.settings import accounts

    adapter = KiteAdapter(accounts()["kite1"], lambda: "token")
    sent: list[dict[str, str] | None] = []

    def fake_call(method: str, path: str, data: dict[str, str] | None = None, json: Any = None, *,
                  order: bool = False) -> dict[str, Any]:
        sent.append(data)
        return {"status": "success", "data": {"order_id": "1"}}

    adapter._call = fake_call  # type: ignore[method-assign]
    order = Order(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1, order_type="LIMIT",
                  price=Decimal("1.00"), strategy="momentum")
    adapter.place(order, None)
    adapter.place(order.with_(strategy="other"), None)
    assert sent[0] is not None and sent[0]["algo_id"] == "NSE-ALGO-42"
    assert sent[1] is not None and "algo_id" not in sent[1]
    assert "algo_id" not in kite_translate.modify_form(order)
