"""The feed against the real paper broker over real WebSockets: values, modes, faults, tokens."""

from __future__ import annotations

import time
from typing import Any

import redis as redis_lib

from common import keys
from common.models import Tick
from common.ticks import TickSubscription, subscribe, subscribe_ticks, unsubscribe
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


def sent_values(ticker: Any, broker: str, token: str, user_id: str, mode: str) -> dict[str, Any]:
    rows = ticker.last(broker, token, user_id)
    assert rows, f"paper sent nothing for {token}"
    if broker == "angel":
        by_mode = rows[0]["by_mode"][str({"ltp": 1, "quote": 2, "full": 3}[mode])]
        return dict(by_mode["values"])
    assert rows[0]["mode"] == mode
    return dict(rows[0]["values"])


def expected(values: dict[str, Any], broker: str, mode: str, index: bool) -> dict[str, Any]:
    """What our Tick must carry for the values the paper broker handed its encoder."""
    e: dict[str, Any] = {"last_price": values["last_price"], "mode": mode}
    if mode == "ltp":
        return e
    e.update(open=values["open"], high=values["high"], low=values["low"], close=values["close"])
    if not index:
        e.update(
            last_quantity=values["last_quantity"], average_price=values["average_price"], volume=values["volume"]
        )
    if broker == "angel":
        e["exchange_ts_ms"] = values["exchange_timestamp_ms"]
    elif mode == "full":
        e["exchange_ts_ms"] = values["exchange_timestamp"] * 1000
    if mode == "full" and not index:
        e["oi"] = values["oi"]
        depth = values["depth"]
        e["bids"] = tuple(x for d in depth["buy"][:5] for x in (d["price"], d["quantity"], d["orders"]))
        e["asks"] = tuple(x for d in depth["sell"][:5] for x in (d["price"], d["quantity"], d["orders"]))
        e["bid_price"], e["bid_quantity"] = e["bids"][0], e["bids"][1]
        e["ask_price"], e["ask_quantity"] = e["asks"][0], e["asks"][1]
    return e


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


def test_ticks_carry_exactly_what_the_paper_broker_sent_in_every_mode(accounts, start_feed, ticker, r) -> None:
    # Given a running feed and a paused tick clock
    start_feed(accounts)
    ticker.set(paused=True)
    cases = [("kite1", "kite"), ("angel1", "angel")]
    for account, broker in cases:
        user_id = paper_user_of(accounts[account]).user_id
        for mode in ("ltp", "quote", "full"):
            for symbol in ("INFY", "NIFTY 50"):
                p = BY_SYMBOL[symbol]
                token = str(p.kite_token) if broker == "kite" else p.angel_token
                # When a strategy subscribes in this mode and the broker ticks
                with subscribe_ticks([f"NSE:{symbol}"], mode, account=account, r=r) as sub:
                    tick = step_until_tick(ticker, sub, symbol, mode)
                # Then the tick on pub/sub carries exactly the values the broker sent
                want = expected(sent_values(ticker, broker, token, user_id, mode), broker, mode, p.is_index)
                have = {k: getattr(tick, k) for k in want}
                assert have == want, (broker, symbol, mode)
                assert (tick.exchange, tick.symbol, tick.token, tick.price_divisor) == ("NSE", symbol, token, 100)
                # and bg:ltp holds the same last price as an exact decimal string
                ltp = r.hget(keys.LTP, f"NSE:{symbol}")
                assert ltp is not None and "." in ltp
            unsubscribe(["NSE:INFY", "NSE:NIFTY 50"], account=account, r=r)


def test_subscriptions_follow_the_control_channel(accounts, start_feed, ticker, r) -> None:
    # Given a feed streaming INFY in ltp
    feed = start_feed(accounts)
    with subscribe_ticks(["NSE:INFY", "NSE:SBIN"], "ltp", account="kite1", r=r) as sub:
        next_tick(sub, 5, lambda t: t.symbol == "INFY" and t.mode == "ltp")
        # When the mode changes and SBIN is dropped
        subscribe("NSE:INFY", "full", account="kite1", r=r)
        unsubscribe("NSE:SBIN", account="kite1", r=r)
        # Then INFY arrives in full mode and SBIN stops
        next_tick(sub, 5, lambda t: t.symbol == "INFY" and t.mode == "full" and len(t.bids) == 15)
        time.sleep(0.2)  # let in-flight SBIN ticks pass
        while sub.get(0.01) is not None:
            pass
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            t = sub.get(0.1)
            assert t is None or t.symbol == "INFY"
    assert feed.feeds["kite1"].sessions[0].subscriptions() == {408065: "full"}


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


def test_a_dropped_socket_is_back_with_every_subscription_within_1_5_s(accounts, start_feed, ticker, r, paper) -> None:
    start_feed(accounts)
    wanted = {"INFY": "full", "SBIN": "ltp", "TCS": "quote"}
    for account, broker in (("kite1", "kite"), ("angel1", "angel")):
        with TickSubscription([f"NSE:{s}" for s in wanted], r=r) as sub:
            for sym, mode in wanted.items():
                subscribe(f"NSE:{sym}", mode, account=account, r=r)
            wait_restored(sub, wanted, time.time_ns(), 5)
            # When the broker drops the socket
            before = int(hb(r, account)["reconnects"] or 0)
            t0 = time.time_ns()
            paper.fault(kind="drop_socket", broker=broker, user_id=paper_user_of(accounts[account]).user_id)
            # Then ticks of every instrument, each in its mode, flow again within 1.5 s
            wait_for(lambda a=account, b=before: int(hb(r, a).get("reconnects", 0)) > b, 3, "a reconnect")
            took = wait_restored(sub, wanted, t0, 3)
            assert took < 1.5, took
        unsubscribe([f"NSE:{s}" for s in wanted], account=account, r=r)


def test_a_silent_stall_is_detected_by_the_watchdog(accounts, start_feed, ticker, r, paper) -> None:
    # Given a feed with a 0.5 s watchdog (Angel pings every 0.2 s)
    start_feed(accounts, watchdog_s=0.5, ping_interval_s=0.2)
    for account, broker in (("kite1", "kite"), ("angel1", "angel")):
        with subscribe_ticks(["NSE:INFY"], "quote", account=account, r=r) as sub:
            next_tick(sub, 5)
            # When the socket goes silent (TCP open, nothing sent, pings unanswered)
            t0 = time.monotonic()
            paper.fault(kind="stall_socket", broker=broker, user_id=paper_user_of(accounts[account]).user_id, count=1, duration_s=30)
            # Then the watchdog reconnects within its timeout, and ticks flow again
            wait_for(lambda a=account: int(hb(r, a).get("stalls", 0)) >= 1, 3, "the watchdog")
            assert time.monotonic() - t0 < 0.5 + 0.5  # timeout + heartbeat-key latency
            after = time.time_ns()
            next_tick(sub, 3, lambda t, a=after: t.received_ns > a)
        unsubscribe("NSE:INFY", account=account, r=r)


def test_malformed_frames_are_counted_and_the_feed_goes_on(accounts, start_feed, ticker, r, paper) -> None:
    start_feed(accounts)
    for account, broker in (("kite1", "kite"), ("angel1", "angel")):
        with subscribe_ticks(["NSE:INFY"], "full", account=account, r=r) as sub:
            next_tick(sub, 5)
            paper.fault(kind="malformed_frame", broker=broker, user_id=paper_user_of(accounts[account]).user_id, count=1)
            wait_for(lambda a=account: int(hb(r, a).get("malformed", 0)) >= 1, 5, "a malformed frame counted")
            after = time.time_ns()
            next_tick(sub, 3, lambda t, a=after: t.received_ns > a)
            assert hb(r, account)["reconnects"] == "0"
        unsubscribe("NSE:INFY", account=account, r=r)


def handshakes(paper: Any, broker: str, user_id: str, status: int) -> int:
    return sum(
        1 for q in paper.requests()
        # a refused Kite handshake names no user (the token was not recognised)
        if q.get("broker") == broker and q.get("user_id") in (user_id, None) and q.get("endpoint_class") == "ws"
        and q.get("status") == status
    )  # fmt: skip


def test_expired_token_waits_for_the_new_one_without_a_403_loop(accounts, start_feed, ticker, r, paper) -> None:
    from tests.fixtures.accounts import logged_in

    start_feed(accounts)
    for account, broker in (("kite1", "kite"), ("angel1", "angel")):
        user_id = paper_user_of(accounts[account]).user_id
        with subscribe_ticks(["NSE:INFY"], "quote", account=account, r=r) as sub:
            next_tick(sub, 5)
            version = int(hb(r, account)["token_version"])
            # When the broker expires the session (the socket closes; the old token now gets 403)
            paper.fault(kind="expire_tokens", broker=broker, user_id=user_id)
            wait_for(lambda a=account: int(hb(r, a).get("refused", 0)) >= 1, 5, "the refused handshake")
            time.sleep(1.0)  # long enough for a retry loop to show itself
            assert handshakes(paper, broker, user_id, 403) == 1
            # And a new token is stored (the daily login)
            logged_in({account: accounts[account]})
            # Then the feed reconnects with it and ticks flow again
            wait_for(lambda a=account, v=version: int(hb(r, a).get("token_version", 0)) > v, 5, "the new token")
            after = time.time_ns()
            next_tick(sub, 5, lambda t, a=after: t.received_ns > a)
            assert handshakes(paper, broker, user_id, 403) == 1
        unsubscribe("NSE:INFY", account=account, r=r)


def test_a_new_token_reconnects_a_live_socket(accounts, start_feed, ticker, r) -> None:
    from tests.fixtures.accounts import logged_in

    start_feed(accounts)
    with subscribe_ticks(["NSE:INFY"], "ltp", account="kite1", r=r) as sub:
        next_tick(sub, 5)
        logged_in({"kite1": accounts["kite1"]})
        wait_for(lambda: hb(r, "kite1").get("token_version") == "2", 5, "reconnect with version 2")
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


def test_kite_order_updates_reach_the_order_update_hook(accounts, start_feed, ticker, r, monkeypatch) -> None:
    import feed.session as session_mod

    got: list[tuple[str, dict[str, Any], str]] = []

    class Hook:
        @staticmethod
        def on_broker_message(account: Any, payload: dict[str, Any], source: str) -> None:
            got.append((account.name, payload, source))

    monkeypatch.setattr(session_mod, "_orderupdates", Hook)
    feed = start_feed({"kite1": accounts["kite1"]})
    wait_for(lambda: hb(r, "kite1").get("connected") == "1", 5, "connected")
    # When the ticker carries an order update (sent through the paper broker's order path)
    from kiteconnect import KiteConnect

    a = accounts["kite1"]
    tok = r.hgetall(keys.token("kite1"))
    kite = KiteConnect(api_key=a.api_key, root=a.rest_url)
    kite.set_access_token(tok["access_token"])
    kite.place_order(variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY",
                     quantity=1, product="MIS", order_type="MARKET", tag="feedtest1")  # fmt: skip
    # Then the feed hands it to feed.orderupdates.on_broker_message as a socket update
    wait_for(lambda: got, 5, "an order update")
    assert got[0][0] == "kite1" and got[0][2] == "socket" and got[0][1].get("order_id")
    assert feed.feeds["kite1"].sessions[0].stats.connected


def test_python_m_feed_runs_every_account_and_stops_cleanly_on_sigterm(accounts, r, redis_url) -> None:
    import os
    import signal
    import subprocess
    import sys

    # Given the accounts file of kite1 and angel1 (BROKERGATE_ACCOUNTS) and their tokens
    env = {**os.environ, "BROKERGATE_REDIS_URL": redis_url}
    proc = subprocess.Popen([sys.executable, "-m", "feed"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # When it runs, every account's socket connects and beats
        wait_for(lambda: hb(r, "kite1").get("connected") == "1" and hb(r, "angel1").get("connected") == "1", 10, "both sockets")
    finally:
        # Then SIGTERM stops it cleanly, and its heartbeat keys go with it
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err[-2000:]
    assert "feed stopped" in err
    assert not r.exists(keys.feed_heartbeat("kite1", 0))
