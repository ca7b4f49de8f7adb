"""Account-state benchmarks (issue #17): reading the positions from Redis, and a fill pushed into them.

One private stack (bench/stack.py): Redis, the paper broker, one Kite account whose postbacks go to
a receiver running in this process (``feed.postback.create_app`` / ``serve_in_thread``, as
tests/account/test_account_state_e2e.py runs it) and a real order worker. No worker consumes the
``default`` queue, so no read from the broker (the login's, Beat's) runs behind the bench's back.

- :func:`bench_push`: ``N`` market orders one after another; for each, the time from the paper
  broker's fill (``fill_wall_ns`` of ``/_paper/orders``, ``time.time_ns()`` in the paper process:
  one wall clock for every process of the machine) to the ``positions`` message on
  ``keys.account_state_channel`` that follows it (a subscriber thread stamps each message as it
  arrives), with the snapshot checked to show the fill. p50/p99 in ms; the paper broker's request
  log proves no portfolio REST request was made.
- :func:`bench_reads`: ``common.client.positions(account)`` (Redis; the snapshot the fills left,
  ten rows) beside the official ``kiteconnect.KiteConnect(...).positions()`` against the paper
  broker on the account's own token (a test-only oracle, fine in a benchmark), side by side: one
  SDK call per slot of Kite's cap and ten of ours beside it (which goes first alternates), so both
  see the same moments of the machine. p50/p99; ratio = SDK / ours.

    python -m bench --only account
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import redis

from bench.report import Progress, Record, noop, percentile, timed_ms
from bench.stack import Listener, Stack
from common.redis import as_text

ACCOUNT = "kite1"  # AccountsWriter names a broker's first account <broker>1
SYMBOLS = ("INFY", "SBIN", "TCS", "RELIANCE", "HDFCBANK")
PRODUCTS = ("INTRADAY", "DELIVERY")  # with SYMBOLS: ten position rows
PUSH_WARMUP, PUSH_N = 5, 100
SDK_WARMUP, SDK_CALLS, OURS_PER_SLOT = 10, 200, 10
# The paper broker holds Kite's cap on these reads ("other", 10/s) as Kite does: the SDK is paced under it.
SDK_INTERVAL_S = 0.125
TARGET_PUSH_P99_MS = 50.0
TARGET_READ_P99_MS = 1.0
TARGET_READ_RATIO = 5.0  # "many times faster": the SDK's p50 and p99 at least this many times ours
# Kite's portfolio reads (docs/brokers.md): positions, holdings, margins, the trade book.
PORTFOLIO_PATHS = ("/portfolio/", "/user/margins", "/trades")
MESSAGE_WAIT_S = 15.0


def portfolio_reads(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The portfolio REST requests in a slice of the paper broker's request log."""
    return [e for e in log if e["method"] == "GET" and str(e["path"]).startswith(PORTFOLIO_PATHS)]


class _Channel(Listener):
    """Every message on the account's state channel, stamped with ``time.time_ns()`` on arrival."""

    def __init__(self, r: redis.Redis, channel: str) -> None:
        self.got: queue.Queue[tuple[int, str]] = queue.Queue()
        super().__init__(r, channel, time.time_ns, lambda at, data: self.got.put((at, as_text(data))))

    def next_positions(self) -> int:
        """The arrival time of the next ``positions`` message (``trades`` ones follow every fill too)."""
        deadline = time.monotonic() + MESSAGE_WAIT_S
        while True:
            at, kind = self.got.get(timeout=max(0.001, deadline - time.monotonic()))
            if kind == "positions":
                return at


@contextlib.contextmanager
def _kite_account_with_postbacks(s: Stack) -> Iterator[Any]:
    """The account, logged in, its order worker running and its postbacks going to a receiver."""
    from feed.postback import create_app, serve_in_thread

    # The receiver reads the accounts file on its first postback, after the account exists.
    app = create_app(reconcile_on_start=False)
    receiver = serve_in_thread(app)
    try:
        acct = s.accounts(kite=1, angel=0, postback_url=f"{receiver.url}/postback/{ACCOUNT}")[ACCOUNT]
        s.login({ACCOUNT: acct})
        s.workers.start(s.queues(ACCOUNT))
        yield acct
    finally:
        receiver.stop()


def _fill_wall_ns(s: Stack, tag: str) -> int:
    assert s.paper is not None
    [order] = s.paper.orders(tag=tag)
    if order["status"] != "COMPLETE" or not order.get("fill_wall_ns"):
        raise RuntimeError(f"order {tag} not filled at the paper broker: {order['status']}")
    return int(order["fill_wall_ns"])


def _one_push(s: Stack, r: redis.Redis, channel: _Channel, i: int, placed: Counter[tuple[str, str]]
              ) -> tuple[float, float]:
    """Place order ``i`` and wait for its fill in the positions: (fill -> positions message ms,
    enqueue -> fill ms)."""
    from common import accountstate
    from common.client import place_order
    from common.portfolio import position_key

    symbol, product = SYMBOLS[i % len(SYMBOLS)], PRODUCTS[(i // len(SYMBOLS)) % len(PRODUCTS)]
    enqueued_ns = time.time_ns()
    h = place_order(account=ACCOUNT, exchange="NSE", symbol=symbol, side="BUY", quantity=1, product=product)
    seen_ns = channel.next_positions()
    placed[(symbol, product)] += 1
    # The message is published in the transaction that wrote the fill: the snapshot shows it now.
    rows = {p.key: p.quantity for p in accountstate.read(r, ACCOUNT, "positions").items}
    want = placed[(symbol, product)]
    key = position_key("NSE", symbol, product)
    if rows.get(key) != want:
        raise RuntimeError(f"positions after order {i} show {rows.get(key)} of {key}, not {want}")
    fill_ns = _fill_wall_ns(s, h.id)
    return (seen_ns - fill_ns) / 1e6, (fill_ns - enqueued_ns) / 1e6


def bench_push(s: Stack, user_id: str, progress: Progress = noop) -> Record:
    from common import keys
    from common.redis import get_redis

    r = get_redis()
    channel = _Channel(r, keys.account_state_channel(ACCOUNT))
    channel.start()
    placed: Counter[tuple[str, str]] = Counter()
    # The paper log's arrival_ns is CLOCK_MONOTONIC, which every process of the machine shares.
    since_ns = time.monotonic_ns()
    try:
        for i in range(PUSH_WARMUP):
            _one_push(s, r, channel, i, placed)
        got = [_one_push(s, r, channel, i, placed) for i in range(PUSH_WARMUP, PUSH_WARMUP + PUSH_N)]
    finally:
        channel.close()
    log = s.requests(user_id=user_id, since_ns=since_ns)
    reads = portfolio_reads(log)
    places = [e for e in log if e["endpoint_class"] == "orders" and e["method"] == "POST"]
    lat = [a for a, _ in got]
    to_fill = [b for _, b in got]
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    progress(f"fill -> positions: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(lat):.2f} ms over {len(lat)}; "
             f"enqueue -> fill p50 {percentile(to_fill, 50):.2f} ms; portfolio REST requests {len(reads)}")
    return Record(
        name="account state: fill by push -> positions p99",
        value=round(p99, 3),
        unit="ms",
        target=f"p99 <= {TARGET_PUSH_P99_MS:g} ms, no REST request (issue #17)",
        passed=p99 <= TARGET_PUSH_P99_MS and not reads and len(lat) == PUSH_N,
        spread=f"p50 {p50:.2f} ms / max {max(lat):.2f} ms over {len(lat)}",
        repeats=len(lat),
        notes=(f"{PUSH_N} market orders one after another (after {PUSH_WARMUP} not counted), Kite postbacks to the "
               f"receiver, one order worker; from the paper broker's fill (its time.time_ns()) to the 'positions' "
               f"message on the account's state channel, the snapshot checked to show it; portfolio REST requests "
               f"during the run: {len(reads)} (paper request log; {len(places)} order POSTs)"),
        extra={"p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "max_ms": round(max(lat), 3),
               "portfolio_requests": len(reads), "order_posts": len(places),
               "enqueue_to_fill_p50_ms": round(percentile(to_fill, 50), 3), "latencies_ms": [round(x, 3) for x in lat]},
    )


def _side_by_side(sdk: Any, ours: list[float], theirs: list[float]) -> tuple[int, int]:
    """One SDK call per slot of the broker's cap and ``OURS_PER_SLOT`` reads of ours in the same
    slot; the first ``SDK_WARMUP`` slots not counted. (rows ours, rows the SDK read)."""
    from common.client import positions

    rows = net = 0
    for k in range(SDK_WARMUP + SDK_CALLS):
        next_slot = time.monotonic() + SDK_INTERVAL_S
        t: list[float] = []
        o: list[float] = []
        # Which goes first after the idle wait alternates: the first call after it is the slowest.
        if k % 2:
            rows = len(timed_ms(lambda: positions(ACCOUNT), o, OURS_PER_SLOT))
        net = len(timed_ms(sdk.positions, t)["net"])
        if not k % 2:
            rows = len(timed_ms(lambda: positions(ACCOUNT), o, OURS_PER_SLOT))
        if k >= SDK_WARMUP:
            theirs += t
            ours += o
        time.sleep(max(0.0, next_slot - time.monotonic()))
    return rows, net


def bench_reads(s: Stack, acct: Any, user_id: str, progress: Progress = noop) -> Record:
    from kiteconnect import KiteConnect

    from common.tokens import get_token

    assert s.paper is not None
    tok = get_token(ACCOUNT)
    assert tok is not None
    sdk = KiteConnect(api_key=acct.api_key, access_token=tok.access_token, root=s.paper.url)
    since_ns = time.monotonic_ns()
    ours: list[float] = []
    theirs: list[float] = []
    rows, net = _side_by_side(sdk, ours, theirs)
    if not rows or rows != net:
        raise RuntimeError(f"positions: brokergate has {rows} rows, the SDK reads {net}")
    reads = portfolio_reads(s.requests(user_id=user_id, since_ns=since_ns))
    sdk_calls = SDK_WARMUP + SDK_CALLS
    o50, o99, t50, t99 = (percentile(ours, 50), percentile(ours, 99), percentile(theirs, 50), percentile(theirs, 99))
    progress(f"positions from Redis: p50 {o50 * 1000:.0f} us, p99 {o99 * 1000:.0f} us over {len(ours)}; "
             f"KiteConnect.positions(): p50 {t50:.2f} ms, p99 {t99:.2f} ms over {len(theirs)}; "
             f"portfolio requests {len(reads)} (SDK calls {sdk_calls})")
    return Record(
        name="account state read: positions(account) p99",
        value=round(o99, 4),
        unit="ms",
        target="p99 well under 1 ms; many times faster than the broker REST call",
        passed=o99 < TARGET_READ_P99_MS and min(t50 / o50, t99 / o99) >= TARGET_READ_RATIO and len(reads) == sdk_calls,
        anchor="official KiteConnect.positions() against the paper broker, p99",
        anchor_value=round(t99, 3),
        ratio=round(t99 / o99, 1),
        spread=f"p50 {o50 * 1000:.0f} us / max {max(ours) * 1000:.0f} us over {len(ours)}",
        repeats=len(ours),
        notes=(f"common.client.positions(account) from Redis ({rows} rows, marked to the ticks: two round trips) "
               f"p50 {o50 * 1000:.0f} us, p99 {o99 * 1000:.0f} us over {len(ours)}; SDK p50 {t50:.2f} ms, p99 "
               f"{t99:.2f} ms over {len(theirs)} (keep-alive, the account's token, one call per "
               f"{SDK_INTERVAL_S * 1000:.0f} ms under Kite's 10/s, {OURS_PER_SLOT} of ours beside each); ratio SDK / "
               f"ours: p50 {t50 / o50:.0f}x, p99 {t99 / o99:.0f}x (pass: p99 < {TARGET_READ_P99_MS:g} ms and both "
               f">= {TARGET_READ_RATIO:g}x); portfolio requests at the paper broker {len(reads)} = the SDK's "
               f"{sdk_calls} (ours made none)"),
        extra={"ours_p50_ms": round(o50, 4), "ours_p99_ms": round(o99, 4), "sdk_p50_ms": round(t50, 3),
               "sdk_p99_ms": round(t99, 3), "ratio_p50": round(t50 / o50, 1), "ratio_p99": round(t99 / o99, 1),
               "rows": rows},
    )


def run(progress: Progress = noop) -> Iterator[Record]:
    with Stack() as s, _kite_account_with_postbacks(s) as acct:
        user_id = s.user_id(ACCOUNT)
        progress(f"{PUSH_N} market orders, fills by postback")
        # First the fills: they leave the snapshot the reads then serve (no read from the broker).
        yield bench_push(s, user_id, progress)
        progress(f"{SDK_CALLS * OURS_PER_SLOT} reads from Redis beside {SDK_CALLS} SDK calls")
        yield bench_reads(s, acct, user_id, progress)


if __name__ == "__main__":
    for rec in run(progress=print):
        print(rec)
