"""The feed against the real paper broker over real WebSockets: values, modes, faults, tokens."""

from __future__ import annotations

import time
from typing import Any

import redis as redis_lib

from common import instruments as master
from common import keys
from common.brokers import broker as broker_record
from common.models import Tick
from common.ticks import TickSubscription, subscribe, subscribe_ticks, unsubscribe
from tests.brokers import E2E_BROKERS, ready
from tests.feed.conftest import BY_SYMBOL, wait_for
from tests.fixtures.accounts import paper_user_of


def next_tick(sub: TickSubscription, timeout_s: float, pred: Any = None) -> Tick:
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no tick within {timeout_s} s")
        t = sub.get(left)
        if t is not None and (pred is None or pred(t)):
            return t


def hb(r: redis_lib.Redis, account: str, n: int = 0) -> dict[str, str]:
    return r.hgetall(keys.feed_heartbeat(account, n))


def sent_values(ticker: Any, broker: str, token: str, user_id: str) -> dict[str, Any]:
    """The values the paper broker last handed its encoder for ``token`` on this user's socket."""
    rows = ticker.last(broker, token, user_id)
    assert rows, f"paper sent nothing for {token}"
    return dict(rows[0]["values"])


def expected(values: dict[str, Any], mode: str, index: bool) -> dict[str, Any]:
    """What our Tick must carry for the values the paper broker handed its encoder."""
    e: dict[str, Any] = {"last_price": values["last_price"], "mode": mode}
    if mode == "ltp":
        return e
    e.update(open=values["open"], high=values["high"], low=values["low"], close=values["close"])
    if not index:
        e.update(
            last_quantity=values["last_quantity"], average_price=values["average_price"], volume=values["volume"]
        )
    if mode == "full" and not index:
        e["oi"] = values["oi"]
        depth = values["depth"]
        e["bids"] = tuple(x for d in depth["buy"][:5] for x in (d["price"], d["quantity"], d["orders"]))
        e["asks"] = tuple(x for d in depth["sell"][:5] for x in (d["price"], d["quantity"], d["orders"]))
        e["bid_price"], e["bid_quantity"] = e["bids"][0], e["bids"][1]
        e["ask_price"], e["ask_quantity"] = e["asks"][0], e["asks"][1]
    return e


def exchange_times_ms(values: dict[str, Any]) -> set[int]:
    """The exchange time sent, in ms, at either precision a wire format may carry it (ms, or s)."""
    return {values["exchange_timestamp_ms"], values["exchange_timestamp"] * 1000}


def step_until_tick(ticker: Any, sub: TickSubscription, symbol: str, mode: str, timeout_s: float = 5.0) -> Tick:
    """Step the paused clock until a tick of ``symbol`` in ``mode`` arrives; then drain, so the
    tick returned is the one of the last step (what /_paper/ticks/last reports)."""
    deadline = time.monotonic() + timeout_s
    got: Tick | None = None
    while got is None:
        assert time.monotonic() < deadline, f"no {mode} tick of {symbol} within {timeout_s} s"
        ticker.set(steps=1)
        t = sub.get(0.3)
        while t is not None:
            if t.symbol == symbol and t.mode == mode:
                got = t
            t = sub.get(0.15)
    return got


def test_ticks_carry_exactly_what_the_paper_broker_sent_in_every_mode(broker_account, start_feed, ticker, r) -> None:
    # Given a running feed and a paused tick clock
    acct = broker_account
    account, broker = acct.name, acct.broker
    start_feed({account: acct})
    ticker.set(paused=True)
    user_id = paper_user_of(acct).user_id
    for mode in ("ltp", "quote", "full"):
        for symbol in ("INFY", "NIFTY 50"):
            p = BY_SYMBOL[symbol]
            inst = master.lookup(account, f"NSE:{symbol}", r)
            assert inst is not None
            # When a strategy subscribes in this mode and the broker ticks
            with subscribe_ticks([f"NSE:{symbol}"], mode, account=account, r=r) as sub:
                tick = step_until_tick(ticker, sub, symbol, mode)
            # Then the tick on pub/sub carries exactly the values the broker sent
            values = sent_values(ticker, broker, inst.token, user_id)
            want = expected(values, mode, p.is_index)
            have = {k: getattr(tick, k) for k in want}
            assert have == want, (broker, symbol, mode)
            # (the exchange time where the mode's wire format carries one: a full tick always does)
            if mode == "full":
                assert tick.exchange_ts_ms in exchange_times_ms(values), (broker, symbol, mode)
            elif mode == "quote":
                assert tick.exchange_ts_ms in exchange_times_ms(values) | {0}, (broker, symbol, mode)
            assert (tick.exchange, tick.symbol, tick.token, tick.price_divisor) == ("NSE", symbol, inst.token, 100)
            # and bg:ltp holds the same last price as an exact decimal string
            ltp = r.hget(keys.LTP, f"NSE:{symbol}")
            assert ltp is not None and "." in ltp
        unsubscribe(["NSE:INFY", "NSE:NIFTY 50"], account=account, r=r)


def test_subscriptions_follow_the_control_channel(broker_account, start_feed, ticker, r) -> None:
    # Given a feed streaming INFY in ltp
    account = broker_account.name
    feed = start_feed({account: broker_account})
    with subscribe_ticks(["NSE:INFY", "NSE:SBIN"], "ltp", account=account, r=r) as sub:
        next_tick(sub, 5, lambda t: t.symbol == "INFY" and t.mode == "ltp")
        # When the mode changes and SBIN is dropped
        subscribe("NSE:INFY", "full", account=account, r=r)
        unsubscribe("NSE:SBIN", account=account, r=r)
        # Then INFY arrives in full mode and SBIN stops
        next_tick(sub, 5, lambda t: t.symbol == "INFY" and t.mode == "full" and len(t.bids) == 15)
        time.sleep(0.2)  # let in-flight SBIN ticks pass
        while sub.get(0.01) is not None:
            pass
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            t = sub.get(0.1)
            assert t is None or t.symbol == "INFY"
    infy = master.lookup(account, "NSE:INFY", r)
    assert infy is not None
    key = broker_record(broker_account.broker).feed.key_of(infy)
    assert feed.feeds[account].sessions[0].subscriptions() == {key: "full"}


def wait_restored(sub: TickSubscription, wanted: dict[str, str], after_ns: int, timeout_s: float) -> float:
    """Seconds until every instrument has ticked again in its mode after ``after_ns``."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while seen != set(wanted):
        left = deadline - time.monotonic()
        assert left > 0, f"not restored within {timeout_s} s: missing {set(wanted) - seen}"
        t = sub.get(left)
        if t is not None and t.received_ns > after_ns and wanted.get(t.symbol) == t.mode:
            seen.add(t.symbol)
    return (time.time_ns() - after_ns) / 1e9


def test_a_dropped_socket_is_back_with_every_subscription_within_1_5_s(
    broker_account, start_feed, ticker, r, paper
) -> None:
    account, broker = broker_account.name, broker_account.broker
    start_feed({account: broker_account})
    wanted = {"INFY": "full", "SBIN": "ltp", "TCS": "quote"}
    with TickSubscription([f"NSE:{s}" for s in wanted], r=r) as sub:
        for sym, mode in wanted.items():
            subscribe(f"NSE:{sym}", mode, account=account, r=r)
        wait_restored(sub, wanted, time.time_ns(), 5)
        # When the broker drops the socket
        before = int(hb(r, account)["reconnects"] or 0)
        t0 = time.time_ns()
        paper.fault(kind="drop_socket", broker=broker, user_id=paper_user_of(broker_account).user_id)
        # Then ticks of every instrument, each in its mode, flow again within 1.5 s
        wait_for(lambda: int(hb(r, account).get("reconnects", 0)) > before, 3, "a reconnect")
        took = wait_restored(sub, wanted, t0, 3)
        assert took < 1.5, took


def test_a_silent_stall_is_detected_by_the_watchdog(broker_account, start_feed, ticker, r, paper) -> None:
    # Given a feed with a 0.5 s watchdog (a broker that wants pings gets one every 0.2 s)
    account, broker = broker_account.name, broker_account.broker
    start_feed({account: broker_account}, watchdog_s=0.5, ping_interval_s=0.2)
    with subscribe_ticks(["NSE:INFY"], "quote", account=account, r=r) as sub:
        next_tick(sub, 5)
        # When the socket goes silent (TCP open, nothing sent, pings unanswered)
        t0 = time.monotonic()
        paper.fault(kind="stall_socket", broker=broker, user_id=paper_user_of(broker_account).user_id, count=1,
                    duration_s=30)
        # Then the watchdog reconnects within its timeout, and ticks flow again
        wait_for(lambda: int(hb(r, account).get("stalls", 0)) >= 1, 3, "the watchdog")
        assert time.monotonic() - t0 < 0.5 + 0.5  # timeout + heartbeat-key latency
        after = time.time_ns()
        next_tick(sub, 3, lambda t: t.received_ns > after)


def test_malformed_frames_are_counted_and_the_feed_goes_on(broker_account, start_feed, ticker, r, paper) -> None:
    account, broker = broker_account.name, broker_account.broker
    start_feed({account: broker_account})
    with subscribe_ticks(["NSE:INFY"], "full", account=account, r=r) as sub:
        next_tick(sub, 5)
        paper.fault(kind="malformed_frame", broker=broker, user_id=paper_user_of(broker_account).user_id, count=1)
        wait_for(lambda: int(hb(r, account).get("malformed", 0)) >= 1, 5, "a malformed frame counted")
        after = time.time_ns()
        next_tick(sub, 3, lambda t: t.received_ns > after)
        assert hb(r, account)["reconnects"] == "0"


def handshakes(paper: Any, broker: str, user_id: str, status: int) -> int:
    return sum(
        1 for q in paper.requests()
        # a refused handshake may name no user (the token was not recognised)
        if q.get("broker") == broker and q.get("user_id") in (user_id, None) and q.get("endpoint_class") == "ws"
        and q.get("status") == status
    )  # fmt: skip


def test_expired_token_waits_for_the_new_one_without_a_403_loop(broker_account, start_feed, ticker, r, paper) -> None:
    from tests.fixtures.accounts import logged_in

    account, broker = broker_account.name, broker_account.broker
    start_feed({account: broker_account})
    user_id = paper_user_of(broker_account).user_id
    with subscribe_ticks(["NSE:INFY"], "quote", account=account, r=r) as sub:
        next_tick(sub, 5)
        version = int(hb(r, account)["token_version"])
        # When the broker expires the session (the socket closes; the old token now gets 403)
        paper.fault(kind="expire_tokens", broker=broker, user_id=user_id)
        wait_for(lambda: int(hb(r, account).get("refused", 0)) >= 1, 5, "the refused handshake")
        time.sleep(1.0)  # long enough for a retry loop to show itself
        assert handshakes(paper, broker, user_id, 403) == 1
        # And a new token is stored (the daily login)
        logged_in([broker_account])
        # Then the feed reconnects with it and ticks flow again
        wait_for(lambda: int(hb(r, account).get("token_version", 0)) > version, 5, "the new token")
        after = time.time_ns()
        next_tick(sub, 5, lambda t: t.received_ns > after)
        assert handshakes(paper, broker, user_id, 403) == 1


def test_a_new_token_reconnects_a_live_socket(broker_account, start_feed, ticker, r) -> None:
    from tests.fixtures.accounts import logged_in

    account = broker_account.name
    start_feed({account: broker_account})
    with subscribe_ticks(["NSE:INFY"], "ltp", account=account, r=r) as sub:
        next_tick(sub, 5)
        logged_in([broker_account])
        wait_for(lambda: hb(r, account).get("token_version") == "2", 5, "reconnect with version 2")
        after = time.time_ns()
        next_tick(sub, 5, lambda t: t.received_ns > after)


def test_9000_instruments_are_sharded_over_three_kite_sockets(accounts, start_feed, ticker, r) -> None:
    from common import instruments as master
    from tests.feed.conftest import instruments_for

    # Given the whole paper universe in the instrument master and a slow clock (9,000 ticks/s)
    ticker.set(interval_ms=1000)
    master.store("kite1", instruments_for("kite"), r)
    symbols = [f"PAPER{i:04d}" for i in range(1, 9001)]
    feed = start_feed({"kite1": accounts["kite1"]})
    # When a strategy subscribes 9,000 instruments
    subscribe([f"NSE:{s}" for s in symbols], "ltp", account="kite1", r=r)
    # Then three sockets carry 3,000 each (the broker's limit), all connected
    for n in range(3):
        wait_for(lambda n=n: hb(r, "kite1", n).get("instruments") == "3000" and hb(r, "kite1", n).get("connected") == "1", 10, f"socket {n}")
    af = feed.feeds["kite1"]
    assert not af.unplaced
    # and each socket delivers ticks
    by_socket: dict[int, str] = {}
    for s in symbols:
        by_socket.setdefault(af.assignment[int(BY_SYMBOL[s].kite_token)], s)
    with TickSubscription([f"NSE:{s}" for s in by_socket.values()], r=r) as sub:
        seen: set[str] = set()
        deadline = time.monotonic() + 10
        while seen != set(by_socket.values()):
            assert time.monotonic() < deadline, f"no ticks from {set(by_socket.values()) - seen}"
            t = sub.get(1)
            if t is not None:
                seen.add(t.symbol)
    wait_for(lambda: r.hlen(keys.LTP) >= 9000, 5, "a last price for all 9,000")
    wait_for(lambda: all(int(hb(r, "kite1", n)["ticks"]) >= 3000 for n in range(3)), 3, "ticks counted per socket")


def test_python_m_feed_runs_every_account_and_stops_cleanly_on_sigterm(make_accounts, paper, r, redis_url) -> None:
    import os
    import signal
    import subprocess
    import sys

    # Given the accounts file with an account of every broker (BROKERGATE_ACCOUNTS) and their tokens
    accts = make_accounts(**dict.fromkeys(E2E_BROKERS, 1))
    assert {a.broker for a in accts.values()} == set(E2E_BROKERS)
    for a in accts.values():
        ready(a)
    env = {**os.environ, "BROKERGATE_REDIS_URL": redis_url}
    proc = subprocess.Popen([sys.executable, "-m", "feed"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # When it runs, every account's socket connects and beats
        wait_for(lambda: all(hb(r, name).get("connected") == "1" for name in accts), 10, "every socket")
    finally:
        # Then SIGTERM stops it cleanly, and its heartbeat keys go with it
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err[-2000:]
    assert "feed stopped" in err
    assert not any(r.exists(keys.feed_heartbeat(name, 0)) for name in accts)
