"""Pre-trade risk limits without workers: the arithmetic of each limit (pure), the accounts file's
``risk`` and ``[strategies.<name>]`` tables, the client's refusals, the worker's atomic step
(``risk_admit.lua``) under contention on a real Redis, the open-orders set the order scripts keep,
the daily-loss halt of the sweeper, and ``brokergate risk``."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from common import accountstate, keys, orderstore, risk, safety
from common.client import place_order
from common.errors import ConfigError, Halted, RiskRefused
from common.models import Order, OrderState
from common.portfolio import Position
from common.risklimits import Exposure, RiskLimits, day_pnl, judge, parse_value
from common.settings import parse_accounts
from tests.fixtures.accounts import account_toml

D = Decimal


def order(**kw: Any) -> Order:
    return Order(**{"account": "a1", "exchange": "NSE", "symbol": "INFY", "side": "BUY", "quantity": 1, **kw})


def refused(o: Order, lim: RiskLimits, x: Exposure | None = None, counts: bool = True) -> str | None:
    """The limit that refuses ``o`` (None: let through)."""
    try:
        judge(o, lim, x or Exposure(last_price=D("1500")), counts=counts)
    except RiskRefused as e:
        return e.limit
    return None


# --- the arithmetic, pure ---------------------------------------------------------------------------
@pytest.mark.parametrize(("o", "lim", "x", "want"), [
    # quantity: over refuses, at passes
    (order(quantity=11), RiskLimits(max_order_quantity=10), None, "max_order_quantity"),
    (order(quantity=10), RiskLimits(max_order_quantity=10), None, None),
    # value: a LIMIT at its price, SL-M at its trigger, MARKET at the last price (none: refused)
    (order(quantity=10, order_type="LIMIT", price="1000.05"), RiskLimits(max_order_value=D(10000)), None,
     "max_order_value"),
    (order(quantity=10, order_type="LIMIT", price="1000"), RiskLimits(max_order_value=D(10000)), None, None),
    (order(quantity=7, order_type="SL-M", trigger_price="1500"), RiskLimits(max_order_value=D(10000)), None,
     "max_order_value"),
    (order(quantity=6), RiskLimits(max_order_value=D(10000)), Exposure(last_price=D("1666.66")), None),
    (order(quantity=7), RiskLimits(max_order_value=D(10000)), None, "max_order_value"),
    (order(quantity=1), RiskLimits(max_order_value=D(10000)), Exposure(), "max_order_value"),
    # band: 5% of 1500 is 75; a LIMIT price, an SL price or trigger, an SL-M trigger; MARKET has no price
    (order(order_type="LIMIT", price="1575"), RiskLimits(price_band_pct=D(5)), None, None),
    (order(order_type="LIMIT", price="1575.05"), RiskLimits(price_band_pct=D(5)), None, "price_band_pct"),
    (order(order_type="LIMIT", price="1424.95"), RiskLimits(price_band_pct=D(5)), None, "price_band_pct"),
    (order(order_type="SL", price="1500", trigger_price="1300"), RiskLimits(price_band_pct=D(5)), None,
     "price_band_pct"),
    (order(order_type="SL-M", trigger_price="1600"), RiskLimits(price_band_pct=D(5)), None, "price_band_pct"),
    (order(order_type="LIMIT", price="1500"), RiskLimits(price_band_pct=D(5)), Exposure(), "price_band_pct"),
    (order(), RiskLimits(price_band_pct=D(5)), Exposure(), None),
    # position: per instrument, after the order; shrinking (even above the limit) passes, a flip is judged
    (order(quantity=200), RiskLimits(max_position=500), Exposure(net_position=400), "max_position"),
    (order(quantity=100), RiskLimits(max_position=500), Exposure(net_position=400), None),
    (order(side="SELL", quantity=900), RiskLimits(max_position=500), Exposure(net_position=400), None),
    (order(side="SELL", quantity=1000), RiskLimits(max_position=500), Exposure(net_position=400), "max_position"),
    (order(side="SELL", quantity=100), RiskLimits(max_position=500), Exposure(net_position=800), None),
    (order(quantity=1), RiskLimits(max_position=0), Exposure(), "max_position"),
    # daily loss: reached refuses entries
    (order(), RiskLimits(max_daily_loss=D(1000)), Exposure(day_pnl=D("-1000")), "max_daily_loss"),
    (order(), RiskLimits(max_daily_loss=D(1000)), Exposure(day_pnl=D("-999.99")), None),
    # counts, as the client judges them (the order itself would be one more)
    (order(), RiskLimits(max_open_orders=5), Exposure(open_orders=4), None),
    (order(), RiskLimits(max_open_orders=5), Exposure(open_orders=5), "max_open_orders"),
    (order(), RiskLimits(max_orders_per_minute=3), Exposure(orders_last_minute=3), "max_orders_per_minute"),
    # an exit (reduce_only, and it really reduces its product's position) passes everything but the band
    (order(side="SELL", quantity=600, reduce_only=True),
     RiskLimits(max_order_quantity=10, max_position=0, max_daily_loss=D(1), max_open_orders=0),
     Exposure(net_position=600, product_position=600, day_pnl=D(-50), open_orders=9), None),
    (order(side="SELL", quantity=600, reduce_only=True, order_type="LIMIT", price="1000"),
     RiskLimits(price_band_pct=D(5)), Exposure(last_price=D(1500), product_position=600), "price_band_pct"),
    # a reduce_only order that would flip the position is an entry
    (order(side="SELL", quantity=700, reduce_only=True), RiskLimits(max_position=50),
     Exposure(net_position=600, product_position=600), "max_position"),
])  # fmt: skip
def test_each_limit_judges_an_order_by_its_numbers(o: Order, lim: RiskLimits, x: Exposure | None,
                                                   want: str | None) -> None:
    # Given an order, the limits in force and what Redis holds, When judged, Then the limit named refuses
    assert refused(o, lim, x) == want


def test_the_refusal_says_the_numbers_and_whose_limit_it_is() -> None:
    with pytest.raises(RiskRefused) as e:
        judge(order(order_type="LIMIT", price="1700"), RiskLimits(price_band_pct=D(5)), Exposure(last_price=D(1500)),
              sources={"price_band_pct": "strategy momentum"})
    assert (e.value.limit, e.value.reason) == (
        "price_band_pct", "price 1700 is 13.33% from the last traded price 1500 of NSE:INFY, over the 5% band "
                          "(limit of strategy momentum)")


def test_the_worker_leaves_the_counts_to_its_atomic_step() -> None:
    assert refused(order(), RiskLimits(max_open_orders=0), Exposure(open_orders=3), counts=False) is None


def test_the_tighter_of_account_and_strategy_limits_holds() -> None:
    acct = RiskLimits(max_order_quantity=500, price_band_pct=D(5))
    strat = RiskLimits(max_order_quantity=100, max_orders_per_minute=30, price_band_pct=D(8))
    assert acct.tighter(strat) == RiskLimits(max_order_quantity=100, price_band_pct=D(5), max_orders_per_minute=30)
    # run-time overrides replace the file's value, "none" lifts it
    assert acct.overridden({"max_order_quantity": "50", "price_band_pct": "none"}) == RiskLimits(max_order_quantity=50)


@pytest.mark.parametrize(("key", "value"), [
    ("max_order_quantity", -1), ("max_order_quantity", 1.5), ("max_order_quantity", True), ("max_open_orders", "x"),
    ("max_order_value", 0), ("max_daily_loss", "-5"), ("price_band_pct", 1001), ("max_order_value", "nan"),
    ("max_lots", 3),
])  # fmt: skip
def test_a_bad_value_is_a_config_error_naming_it(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=r"^here"):
        parse_value(key, value, "here")


def test_day_pnl_is_realised_plus_marked_at_the_live_price() -> None:
    long = Position("NSE", "INFY", "INTRADAY", 10, D(1500), realised_pnl=D(20), unrealised_pnl=D(7))
    short = Position("NSE", "TCS", "INTRADAY", -5, D(3000), unrealised_pnl=D(-40))
    # INFY marked at 1490 (-100); TCS has no tick: its own unrealised (-40)
    assert day_pnl([long, short], {"NSE:INFY": D(1490)}) == D(20) - 100 - 40


# --- the accounts file ----------------------------------------------------------------------------
def test_the_accounts_file_carries_account_and_strategy_limits() -> None:
    text = account_toml("a1", risk={"max_order_quantity": 500, "price_band_pct": 2.5, "max_daily_loss": "25000.50"})
    text += "\n[strategies.momentum]\nmax_orders_per_minute = 30\nmax_order_value = 100000\n"
    accts = parse_accounts(text, environ={})
    assert accts["a1"].risk == RiskLimits(max_order_quantity=500, price_band_pct=D("2.5"), max_daily_loss=D("25000.50"))


@pytest.mark.parametrize(("extra", "names"), [
    ({"risk": {"max_order_qty": 5}}, "accounts.a1.risk.max_order_qty"),
    ({"risk": {"max_position": -1}}, "accounts.a1.risk.max_position"),
    ({"risk": 5}, "accounts.a1.risk"),
])  # fmt: skip
def test_a_bad_account_limit_is_refused_naming_the_key(extra: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{names.replace('.', '[.]')}"):
        parse_accounts(account_toml("a1", **extra), environ={})


@pytest.mark.parametrize(("table", "names"), [
    ("[strategies.momentum]\nmax_open_orders = \"many\"\n", "strategies.momentum.max_open_orders"),
    ("[strategies.momentum]\nalgo = 1\n", "strategies.momentum.algo: 'algo' is not a risk limit"),
    ("[strategies.\"bad name\"]\nmax_open_orders = 1\n", "strategies.bad name"),
])  # fmt: skip
def test_a_bad_strategy_table_is_refused_naming_it(table: str, names: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_accounts(account_toml("a1") + "\n" + table, environ={})
    assert str(e.value).startswith(names) or names in str(e.value), str(e.value)


# --- with Redis: the client, the worker's atomic step, the open-orders set, the sweeper, the CLI ----
@pytest.fixture
def accounts_file(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Write an accounts file (``a1``, ``a2`` and ``extra`` text) and point the process at it."""
    from common import settings as bg_settings

    def write(extra: str = "", **fields: Any) -> None:
        path = tmp_path / "accounts.toml"
        path.write_text(account_toml("a1", **fields) + account_toml("a2", user_id="CD5678", **fields) + extra)
        monkeypatch.setenv("BROKERGATE_ACCOUNTS", str(path))
        bg_settings.settings.cache_clear()
        bg_settings.accounts.cache_clear()

    yield write
    bg_settings.settings.cache_clear()
    bg_settings.accounts.cache_clear()


def _fill(r: Any, account: str, side: str, quantity: int, price: str, symbol: str = "INFY") -> None:
    accountstate.apply_fill(r, account, {"exchange": "NSE", "symbol": symbol, "product": "INTRADAY", "side": side},
                            quantity=quantity, price=D(price), broker_order_id=f"B{quantity}",
                            client_order_id=f"c{side}{quantity}", filled_total=quantity)


def test_the_client_refuses_before_anything_is_stored_and_counts_it(accounts_file: Any, r: Any) -> None:
    """Given a file limit and a run-time one, When a strategy places orders that break them, Then
    RiskRefused names the limit, nothing is stored, and the account's stats count each refusal."""
    accounts_file(risk={"max_order_quantity": 10})
    r.hset(keys.LTP, "NSE:INFY", "1500.00")
    risk.set_limits("account:a1", {"price_band_pct": "5"})
    with pytest.raises(RiskRefused, match=r"quantity 11 is over 10 [(]limit of account a1[)]"):
        place_order(order(quantity=11))
    with pytest.raises(RiskRefused) as e:
        place_order(order(order_type="LIMIT", price="1600"))
    assert e.value.limit == "price_band_pct"
    assert r.zcard(keys.account_orders("a1")) == 0
    stats = r.hgetall(keys.stats("a1"))
    assert (stats["risk_refused"], stats["risk_refused:max_order_quantity"], stats["risk_refused:price_band_pct"]) \
        == ("2", "1", "1")
    # a2 has the same file limit but not a1's run-time band
    assert place_order(order(account="a2", order_type="LIMIT", price="1600"))


def test_a_strategy_limit_from_the_file_applies_to_its_orders_across_accounts(accounts_file: Any, r: Any) -> None:
    accounts_file("\n[strategies.momentum]\nmax_order_quantity = 5\n", risk={"max_order_quantity": 10})
    with pytest.raises(RiskRefused, match="limit of strategy momentum"):
        place_order(order(account="a2", quantity=6, strategy="momentum"))
    assert place_order(order(account="a2", quantity=6))
    assert risk.limits_in_force("a1", "momentum", r).max_order_quantity == 5


def test_the_worker_step_lets_exactly_the_limit_through_under_contention(accounts_file: Any, r: Any) -> None:
    """Given max_open_orders 5 and max_orders_per_minute 8 (strategy), When 24 orders race through
    the authoritative check from 24 threads, Then exactly 5 are let through; once 3 of them settle,
    3 more pass, and once a fourth settles the per-minute limit stops the ninth; a resend of one
    let through counts once; the refusals are counted by limit."""
    accounts_file("\n[strategies.burst]\nmax_orders_per_minute = 8\n", risk={"max_open_orders": 5})
    orders = [order(strategy="burst") for _ in range(24)]
    for o in orders:
        orderstore.create(r, o)
    passed: list[Order] = []
    lock = threading.Lock()

    def go(o: Order) -> None:
        try:
            risk.check(o, authoritative=True)
        except RiskRefused as e:
            assert e.limit == "max_open_orders", e
            return
        with lock:
            passed.append(o)

    threads = [threading.Thread(target=go, args=(o,)) for o in orders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(passed) == 5 and r.scard(keys.risk_open("a1")) == 5
    risk.check(passed[0], authoritative=True)  # a resend of an order let through: neither refused nor counted twice
    for o in passed[:3]:
        orderstore.transition(r, o.client_order_id, OrderState.EXPIRED, allowed_from={OrderState.NEW})
    assert r.scard(keys.risk_open("a1")) == 2
    rest = [o for o in orders if o not in passed]
    for o in rest[:3]:
        risk.check(o, authoritative=True)
    orderstore.transition(r, passed[3].client_order_id, OrderState.EXPIRED, allowed_from={OrderState.NEW})
    with pytest.raises(RiskRefused) as e:
        risk.check(rest[3], authoritative=True)
    assert e.value.limit == "max_orders_per_minute" and "8 orders in the last minute, at most 8" in e.value.reason
    assert r.hget(keys.stats("a1"), "risk_refused:max_open_orders") == "19"


def test_without_a_count_limit_the_worker_step_writes_nothing(accounts_file: Any, r: Any) -> None:
    accounts_file(risk={"max_order_quantity": 10})
    o = order()
    orderstore.create(r, o)
    risk.check(o, authoritative=True)
    assert not r.exists(keys.risk_open("a1")) and not r.exists(keys.risk_rate("account:a1"))


def test_the_open_count_heals_when_a_removal_was_missed(accounts_file: Any, r: Any) -> None:
    accounts_file(risk={"max_open_orders": 1})
    r.sadd(keys.risk_open("a1"), "GONE0000000000000000")  # an order hash deleted by hand
    o = order()
    orderstore.create(r, o)
    risk.check(o, authoritative=True)
    assert r.smembers(keys.risk_open("a1")) == {o.client_order_id}


def test_a_broker_sighting_of_an_open_order_counts_it(accounts_file: Any, r: Any) -> None:
    """An order never let through by the worker step (placed before the limits existed) that the
    broker shows OPEN is counted; once settled it is not."""
    from common.models import OrderUpdate

    accounts_file()
    o = order()
    orderstore.create(r, o)
    orderstore.apply_update(r, OrderUpdate(account="a1", client_order_id=o.client_order_id, broker_order_id="B1",
                                           state=OrderState.OPEN, source="test"))
    assert r.sismember(keys.risk_open("a1"), o.client_order_id)
    orderstore.apply_update(r, OrderUpdate(account="a1", client_order_id=o.client_order_id, broker_order_id="B1",
                                           state=OrderState.COMPLETE, filled_quantity=1, source="test"))
    assert r.scard(keys.risk_open("a1")) == 0


def test_the_sweeper_halts_an_account_whose_day_loss_reached_its_limit(accounts_file: Any, r: Any) -> None:
    """Given a1 long 10 INFY at 1500 with max_daily_loss 100 and a2 the same at 2000, When the
    live price falls to 1490, Then the sweep halts a1 (by risk, naming the limit) and not a2; an
    entry of a1 is then refused; a second sweep halts nothing more."""
    accounts_file(risk={"max_daily_loss": 100})
    risk.set_limits("account:a2", {"max_daily_loss": "2000"})
    _fill(r, "a1", "BUY", 10, "1500")
    _fill(r, "a2", "BUY", 10, "1500")
    r.hset(keys.LTP, "NSE:INFY", "1490.05")
    assert risk.sweep_daily_loss(r) == []
    r.hset(keys.LTP, "NSE:INFY", "1490.00")
    assert risk.account_pnl("a1", r) == D(-100)
    assert risk.sweep_daily_loss(r) == ["a1"]
    h = safety.halted("a1", r)
    assert h is not None and h.by == "risk" and "max_daily_loss" in h.reason and safety.halted("a2", r) is None
    with pytest.raises(Halted):
        place_order(order())
    assert risk.sweep_daily_loss(r) == [] and r.hget(keys.stats("a1"), "risk_halted") == "1"


def _cli(*argv: str) -> int:
    from brokergate.cli import main

    return main(list(argv))


def test_the_cli_sets_shows_and_clears_limits_at_run_time(accounts_file: Any, r: Any, capsys: Any) -> None:
    accounts_file(risk={"max_order_quantity": 500})
    assert _cli("risk", "set", "a1", "max_order_quantity=50", "max_position=none") == 0
    assert _cli("risk", "set", "--strategy", "momentum", "max_orders_per_minute=30") == 0
    assert risk.limits_in_force("a1", "momentum") == RiskLimits(max_order_quantity=50, max_orders_per_minute=30)
    capsys.readouterr()
    assert _cli("risk", "show", "a1", "--json") == 0
    [doc] = json.loads(capsys.readouterr().out)
    assert (doc["file"], doc["run_time"], doc["in_force"]) == (
        {"max_order_quantity": "500"}, {"max_order_quantity": "50", "max_position": "none"},
        {"max_order_quantity": "50"})
    assert _cli("risk", "show") == 0
    shown = capsys.readouterr().out
    assert "account:a1" in shown and "account:a2" in shown and "strategy:momentum" in shown
    # a bad value changes nothing and names the limit
    assert _cli("risk", "set", "a1", "price_band_pct=-3") == 2
    assert "price_band_pct" in capsys.readouterr().err and r.hget(keys.risk_limits("account:a1"), "price_band_pct") is None
    assert _cli("risk", "set", "nobody", "max_position=1") == 2
    assert _cli("risk", "clear", "a1", "max_order_quantity") == 0
    assert risk.limits_in_force("a1") == RiskLimits(max_order_quantity=500)
    assert _cli("risk", "clear", "a1") == 0 and not r.exists(keys.risk_limits("account:a1"))


def test_status_shows_the_refusals_of_each_account(capsys: Any) -> None:
    from types import SimpleNamespace

    from brokergate.cli import render_status

    account = {"broker": "kite", "token": {"present": False}, "backoff_s": {}, "limiter": {},
               "stats": {"placed": 3, "risk_refused": 3, "risk_refused:max_position": 1, "risk_refused:price_band_pct": 2}}
    snap = {"now_ms": 0, "accounts": {"a1": account, "a2": {**account, "stats": {}}}, "queues": {}, "feed": [],
            "receiver": {}, "beat": {}, "workers": {}}
    render_status(snap, SimpleNamespace(problems=[], healthy=True))
    out = capsys.readouterr().out
    assert "Risk refusals a1: max_position 1, price_band_pct 2" in out and "Risk refusals a2" not in out
