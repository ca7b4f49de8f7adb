"""Chaos on the place path (issue 15): a slow connect, 503 then success (and a gateway's bare
502), duplicated and reordered pushed updates, and a cancel during every phase of a place.

Each test checks the same four things against the paper broker's own books (``GET
/_paper/orders``, ``GET /_paper/requests``), never against our store alone:
- every order is terminal in the store;
- each client_order_id was placed at most once at the broker (its book, and its accepted order
  POSTs);
- every order whose cancel was requested is not live (not OPEN / TRIGGER PENDING) at the broker;
- every fill at the broker was seen by the strategy: published on ``orders:<account>`` (the
  channel a strategy subscribes to) and in the store, with the broker's filled quantity.

``make chaos`` runs the long versions (marker ``chaos``); each has a short version in the default
run (``*_short``), a few seconds of orders each. Real processes: the paper broker, ``celery``
worker subprocesses, the receiver and the feed's push paths where a test needs them.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_lib

from common import keys
from common.client import OrderHandle, place_order
from common.redis import get_redis
from common.settings import Account
from devtools.waiting import wait_for
from tests.brokers import E2E_BROKERS, PUSH_CASES, marketable, ready
from tests.chaos.test_chaos import TERMINAL, _say, _settle
from tests.fixtures.accounts import paper_user_of
from tests.updates.test_end_to_end import pushing

LIVE_AT_BROKER = {"OPEN", "TRIGGER PENDING"}
RANK = {"NEW": 0, "SENDING": 1, "UNKNOWN": 1, "OPEN": 2}  # terminal states rank 3


# --- what the strategy saw ---------------------------------------------------------------------------


class Seen(threading.Thread):
    """Every update published on ``orders:<account>``, by client_order_id, in arrival order: what
    a strategy subscribed to the channel sees."""

    def __init__(self, account: str) -> None:
        super().__init__(name=f"seen-{account}", daemon=True)
        self.pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(keys.orders_channel(account))
        wait_for(lambda: self.pubsub.get_message(timeout=0.05) is None and self.pubsub.subscribed, 5,
                 what="subscribed to the order channel")
        self.updates: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                msg = self.pubsub.get_message(timeout=0.2)
            except (redis_lib.ConnectionError, ValueError):
                return
            if msg and msg["type"] == "message":
                u = json.loads(msg["data"])
                self.updates[u["client_order_id"]].append(u)

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.pubsub.close()


@pytest.fixture
def seen() -> Iterator[Callable[[str], Seen]]:
    made: list[Seen] = []

    def make(account: str) -> Seen:
        s = Seen(account)
        s.start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


# --- the four checks ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _said(capsys: pytest.CaptureFixture[str], report: list[str]) -> Iterator[dict[str, Any]]:
    """Say ``report`` after the checks in the block: with what they checked (the block sets
    ``out["checked"]``) or, the failure re-raised, with why they failed."""
    out: dict[str, Any] = {}
    try:
        yield out
    except AssertionError as e:
        _say(capsys, "\n[chaos] ".join([*report, f"FAILED: {e}"]))
        raise
    _say(capsys, "\n[chaos] ".join([*report, f"checked: {out['checked']}"]))


def _is_place(path: str) -> bool:
    """An order POST that places (Angel and Shoonya also POST their cancels and modifies)."""
    p = path.lower()
    return "cancel" not in p and "modify" not in p


def check_books(paper: Any, acct: Account, ids: list[str], cancelled: set[str], seen: Seen | None,
                states: dict[str, str]) -> dict[str, Any]:
    """The four checks of the module docstring; returns counts for the report."""
    from common import orderstore

    user = paper_user_of(acct).user_id
    book = [o for o in paper.orders() if o["broker"] == acct.broker and o["user_id"] == user and o.get("tag") in ids]
    by_tag: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for o in book:
        by_tag[o["tag"]].append(o)
    posts = collections.Counter(
        e["tag"] for e in paper.requests()
        if e["endpoint_class"] == "orders" and e["user_id"] == user and e["method"] == "POST"
        and 200 <= e["status"] < 300 and e.get("tag") in ids and _is_place(e["path"])
    )
    problems: list[str] = []
    not_terminal = {i: s for i, s in states.items() if s not in TERMINAL}
    if not_terminal:
        problems.append(f"not terminal: {dict(collections.Counter(not_terminal.values()))}")
    twice = [t for t, os_ in by_tag.items() if len(os_) > 1] + [t for t, n in posts.items() if n > 1]
    if twice:
        problems.append(f"placed more than once at the broker: {sorted(set(twice))[:5]}")
    live = [i for i in cancelled if any(o["status"] in LIVE_AT_BROKER for o in by_tag.get(i, []))]
    if live:
        problems.append(f"cancel requested but live at the broker: {[(i, states[i]) for i in live[:5]]}")
    r = get_redis()
    missed: list[str] = []
    fills = 0
    for tag, os_ in by_tag.items():
        filled = max(o["filled_quantity"] for o in os_)
        if not filled:
            continue
        fills += 1
        stored = orderstore.get(r, tag) or {}
        published = [u["filled_quantity"] for u in (seen.updates.get(tag, []) if seen else [])]
        if int(stored.get("filled_quantity") or 0) != filled or (seen is not None and filled not in published):
            missed.append(f"{tag}: broker filled {filled}, store {stored.get('state')}/{stored.get('filled_quantity')}, "
                          f"published {published}")
    if missed:
        problems.append(f"fills not seen by the strategy: {missed[:5]}")
    assert not problems, "; ".join(problems)
    return {"at_broker": len(by_tag), "fills": fills, "cancel_requested": len(cancelled),
            "states": dict(collections.Counter(states.values()))}


def no_regression(seen: Seen, ids: list[str]) -> list[str]:
    """Orders whose published updates went backwards (a later update of a lower rank, or a fill
    that shrank): what a strategy must never be shown, duplicated and reordered pushes or not."""
    bad = []
    for i in ids:
        rank, filled = -1, -1
        for u in seen.updates.get(i, []):
            r_, f_ = RANK.get(u["state"], 3), int(u.get("filled_quantity") or 0)
            if r_ < rank or f_ < filled:
                bad.append(f"{i}: {[(x['state'], x.get('filled_quantity'), x.get('source')) for x in seen.updates[i]]}")
                break
            rank, filled = r_, f_
    return bad


# --- helpers -----------------------------------------------------------------------------------------


def _stored(coid: str) -> dict[str, str]:
    return get_redis().hgetall(keys.order(coid))


def _phase(coid: str) -> str:
    """Where the place of an order is, read from the store: queued (NEW), waiting for its limiter
    slot (SENDING, not sent), in flight (SENDING, sent), or the state it reached."""
    h = _stored(coid)
    state = h.get("state", "MISSING")
    if state == "SENDING":
        return "in flight" if h.get("sent_at_ms") else "waiting for its slot"
    return {"NEW": "queued"}.get(state, state)


def _order(acct: Account, *, limit: bool = False, deadline_s: float = 20) -> OrderHandle:
    # A LIMIT buy far below the market rests OPEN; a MARKET order (a LIMIT through the price where
    # the broker refuses market orders) fills at once.
    extra = {"order_type": "LIMIT", "price": "100.00"} if limit else marketable(acct.broker)
    return place_order(account=acct.name, exchange="NSE", symbol="INFY", side="BUY", quantity=1,
                       deadline_s=deadline_s, **extra)


def _workers(celery_workers: Any, acct: Account, *, orders_lane: bool = True) -> list[Any]:
    urgent, orders = keys.urgent_queue(acct.name), keys.orders_queue(acct.name)
    specs: list[tuple[list[str], dict[str, object]]] = [([urgent], {"concurrency": 1})]
    if orders_lane:
        specs.append(([urgent, orders], {"concurrency": 4}))
    return list(celery_workers.start_many(specs))


# --- a cancel during every phase of a place ----------------------------------------------------------


def _cancel_in_every_phase(acct: Account, paper: Any, celery_workers: Any, seen_of: Callable[[str], Seen],
                           capsys: Any, slow_proxy: Any, proxy: Any, per_phase: int) -> None:
    """Cancel ``per_phase`` orders at each phase of their place, then check the books."""
    user = paper_user_of(acct).user_id
    seen = seen_of(acct.name)
    ids: list[str] = []
    cancelled: set[str] = set()
    at_cancel: dict[str, list[str]] = collections.defaultdict(list)  # chosen phase -> phases observed

    def cancel(h: OrderHandle, chosen: str) -> None:
        at_cancel[chosen].append(_phase(h.id))
        h.cancel()
        cancelled.add(h.id)

    # 1. queued: only the urgent lane runs, so no worker can claim the place yet.
    _workers(celery_workers, acct, orders_lane=False)
    queued = [_order(acct, limit=True) for _ in range(per_phase)]
    for h in queued:
        cancel(h, "queued")
    ids += [h.id for h in queued]
    wait_for(lambda: all(_stored(h.id).get("state") in TERMINAL for h in queued), 15,
             what="cancels of queued orders handled")
    celery_workers.start([keys.urgent_queue(acct.name), keys.orders_queue(acct.name)], concurrency=4)

    # 2. claimed, waiting for its limiter slot: a burst at the 2/s cap keeps claimed ones waiting.
    burst = [_order(acct, limit=True) for _ in range(4 + per_phase)]
    ids += [h.id for h in burst]
    waiting = wait_for(lambda: [h for h in burst if _phase(h.id) == "waiting for its slot"], 15,
                       interval_s=0.005, what="an order claimed and waiting for its slot")
    for h in waiting[:per_phase]:
        cancel(h, "waiting for its slot")
    wait_for(lambda: all(_stored(h.id).get("state") in TERMINAL | {"OPEN"} for h in burst), 30,
             what="the burst placed")
    for h in burst:  # the rest rest OPEN; cancel them too (the plain case), so the run ends clean
        if h.id not in cancelled:
            cancel(h, "OPEN")

    def in_flight(chosen: str, fault: dict[str, Any] | None, after: Callable[[], None] | None = None) -> None:
        for _ in range(per_phase):
            if fault:
                paper.fault(broker=acct.broker, user_id=user, **fault)
            h = _order(acct, limit=True)
            ids.append(h.id)
            wait_for(lambda h=h: _phase(h.id) not in ("queued", "waiting for its slot"), 15, interval_s=0.005,
                     what=f"{chosen}: the place sent")
            cancel(h, chosen)
            if after is not None:
                after()

    # 3. in flight: the broker holds the place's answer (under the 3 s read timeout).
    in_flight("in flight (delayed answer)", {"kind": "delay", "count": 1, "delay_s": 1.0})
    # 4. in flight, then certainly not sent: two 503s, so the place retries while the cancel runs.
    in_flight("in flight, 503 then retried", {"kind": "error_5xx", "count": 2})
    # 5. in flight over a slow new connection (the proxy holds new connections for 1 s).
    if proxy is not None:
        proxy.set_delay(1.0)
        in_flight("in flight (slow connect)", None)
        proxy.set_delay(0)
    # 6. OPEN at the broker.
    resting = [_order(acct, limit=True) for _ in range(per_phase)]
    ids += [h.id for h in resting]
    for h in resting:
        h.wait(20)
        cancel(h, "OPEN")
    # 7. filled.
    filled = [_order(acct) for _ in range(per_phase)]
    ids += [h.id for h in filled]
    for h in filled:
        # Filled at the broker (the store may learn it later: no push path runs here, so from
        # reconciliation), then cancelled.
        wait_for(lambda h=h: any(o["status"] == "COMPLETE" for o in paper.orders() if o.get("tag") == h.id), 20,
                 interval_s=0.05, what="filled at the broker")
        cancel(h, "filled")

    states = _settle(acct.name, ids, 60)
    # The cancels of the last orders may still be running: let them finish before the books are read.
    wait_for(lambda: all(s["state"] in TERMINAL for s in map(_stored, ids)), 30, what="terminal")
    report = [f"{acct.broker}: {len(ids)} orders, a cancel at each phase ({per_phase} per phase):"]
    report += [f"  {chosen}: seen at cancel {dict(collections.Counter(obs))}" for chosen, obs in at_cancel.items()]
    with _said(capsys, report) as out:
        out["checked"] = check_books(paper, acct, ids, cancelled, seen, states)


def _cancel_account(make_accounts: Any, slow_proxy: Any, paper: Any, broker: str) -> tuple[Account, Any]:
    # Through the slow proxy (off until a phase turns it on); a 2/s cap so a burst waits for slots.
    proxy = slow_proxy(paper.url)
    accts = make_accounts(**{"kite": 0, "angel": 0, broker: 1}, caps={"orders": ["2/s"]},
                          rest_url=proxy.url, extra={"read_timeout_s": 3})
    acct = next(a for a in accts.values() if a.broker == broker)
    return ready(acct), proxy


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_cancel_during_every_phase_of_a_place_short(make_accounts, slow_proxy, celery_workers, paper, seen,
                                                    capsys) -> None:
    """Given a Kite account behind the slow proxy at 2/s, When one order is cancelled at each phase
    of its place (queued, waiting for its slot, in flight, in flight then 503 and retried, in
    flight over a slow connect, OPEN, filled), Then every order is terminal, placed at most once,
    none of them live at the broker, and every fill was seen."""
    acct, proxy = _cancel_account(make_accounts, slow_proxy, paper, "kite")
    _cancel_in_every_phase(acct, paper, celery_workers, seen, capsys, slow_proxy, proxy, per_phase=1)


@pytest.mark.chaos
@pytest.mark.timeout(400)
@pytest.mark.parametrize("broker", E2E_BROKERS)
def test_cancel_during_every_phase_of_a_place(broker, make_accounts, slow_proxy, celery_workers, paper, seen,
                                              capsys) -> None:
    """The long version: every broker, three orders cancelled at each phase."""
    acct, proxy = _cancel_account(make_accounts, slow_proxy, paper, broker)
    _cancel_in_every_phase(acct, paper, celery_workers, seen, capsys, slow_proxy, proxy, per_phase=3)


# --- a slow connect ------------------------------------------------------------------------------------


def _slow_connect(make_accounts: Any, slow_proxy: Any, celery_workers: Any, paper: Any, seen_of: Any, capsys: Any,
                  broker: str, *, rounds: int, per_round: int, delays: list[float], seed: int) -> None:
    proxy = slow_proxy(paper.url)
    # 5/s, half the 2026 rule's 10/s: a request the proxy held past its client's read timeout
    # still reaches the broker, seconds late, bunched with later ones (the cap refusals counted
    # below); at 10/s one such arrival tripped the rule itself (shoonya, once in a make chaos).
    accts = make_accounts(**{"kite": 0, "angel": 0, broker: 1}, caps={"orders": ["5/s"]},
                          rest_url=proxy.url, extra={"read_timeout_s": 1})
    acct = ready(next(a for a in accts.values() if a.broker == broker))
    _workers(celery_workers, acct)
    seen = seen_of(acct.name)
    rng = random.Random(seed)
    ids: list[str] = []
    cancelled: set[str] = set()
    closed = 0
    for k in range(rounds):
        # Half under 0.5 s (under the 1 s read timeout: answered late), half over it (ambiguous).
        delay = delays[k % len(delays)]
        closed += proxy.set_delay(delay)
        # Half of them resting LIMIT orders, each cancelled while its place crawls through the proxy.
        hs = [(_order(acct, limit=(limit := rng.random() < 0.5), deadline_s=15), limit) for _ in range(per_round)]
        ids += [h.id for h, _ in hs]
        for h, limit in hs:
            if limit:
                h.cancel()
                cancelled.add(h.id)
        wait_for(lambda hs=hs: all(_stored(h.id).get("state") not in ("NEW", "SENDING") for h, _ in hs), 30,
                 interval_s=0.05, what="the round sent")
        proxy.set_delay(0)
    states = _settle(acct.name, ids, 90)
    user = paper_user_of(acct).user_id
    refused = sum(1 for e in paper.requests() if e["user_id"] == user and e["endpoint_class"] == "orders"
                  and e["status"] == 429)
    report = [f"{broker}: {len(ids)} orders through the slow proxy, delays {delays} s (read timeout 1 s), "
              f"{closed} idle keep-alive connections closed; proxy: {proxy.delayed} held, {proxy.abandoned} "
              f"abandoned by their client, {proxy.forwarded} forwarded",
              f"order requests the broker refused for its cap (arrived bunched after a slow connect): {refused}"]
    with _said(capsys, report) as out:
        out["checked"] = check_books(paper, acct, ids, cancelled, seen, states)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_slow_connect_short(make_accounts, slow_proxy, celery_workers, paper, seen, capsys) -> None:
    """Given a Kite account behind a proxy that holds every new connection, When orders are placed
    (some cancelled) while it holds for 0.5 s, then 1.5 s (past the 1 s read timeout), Then each is
    terminal, at most once at the broker, cancelled ones not live, every fill seen."""
    _slow_connect(make_accounts, slow_proxy, celery_workers, paper, seen, capsys, "kite",
                  rounds=2, per_round=5, delays=[0.5, 1.5], seed=5)


@pytest.mark.chaos
@pytest.mark.timeout(400)
@pytest.mark.parametrize("broker", E2E_BROKERS)
def test_slow_connect(broker, make_accounts, slow_proxy, celery_workers, paper, seen, capsys) -> None:
    _slow_connect(make_accounts, slow_proxy, celery_workers, paper, seen, capsys, broker,
                  rounds=6, per_round=20, delays=[0.3, 1.5, 0.8, 2.5], seed=int(os.environ.get("BG_CHAOS_SEED", "5")))


# --- 503 then success; a gateway's bare 502 --------------------------------------------------------------


def _unavailable(make_accounts: Any, celery_workers: Any, paper: Any, seen_of: Any, capsys: Any, broker: str, *,
                 n: int, bursts: int, gateway: bool, seed: int) -> None:
    # 20/s is above the 2026 rule's 10/s: a registered algo (common/algorules.py), for the load's sake.
    accts = make_accounts(**{"kite": 0, "angel": 0, broker: 1}, caps={"orders": ["20/s"]}, extra={"read_timeout_s": 2},
                          registered_algo=True)
    acct = ready(next(a for a in accts.values() if a.broker == broker))
    user = paper_user_of(acct).user_id
    _workers(celery_workers, acct)
    seen = seen_of(acct.name)
    rng = random.Random(seed)
    ids: list[str] = []
    injected: collections.Counter[str] = collections.Counter()
    for k in range(bursts):
        # The broker's own 503s (nothing placed: retried within the deadline), now and then a
        # gateway's bare 502 after the broker acted (ambiguous: reconciled, never resent blindly).
        if gateway and k % 3 == 2:
            # A fault takes the user's next request whatever it is: let the earlier places finish,
            # so the next request is this burst's first order POST.
            wait_for(lambda ids=ids: all(_stored(i).get("state") in TERMINAL | {"OPEN"} for i in ids), 30,
                     interval_s=0.05, what="earlier places answered")
            paper.fault(kind="error_5xx", broker=broker, user_id=user, count=1, status=502)
            injected["502 (gateway, after acting)"] += 1
        else:
            count = rng.randint(1, 3)
            paper.fault(kind="error_5xx", broker=broker, user_id=user, count=count)
            injected["503"] += count
        # MARKET orders: each fills once placed, so every one ends terminal without a cancel.
        ids += [_order(acct).id for _ in range(n // bursts)]
    states = _settle(acct.name, ids, 90)
    posts = [e for e in paper.requests() if e["user_id"] == user and e["endpoint_class"] == "orders"
             and e["method"] == "POST"]
    report = [f"{broker}: {len(ids)} orders, faults {dict(injected)}; order POST answers "
              f"{dict(collections.Counter(e['status'] for e in posts))}"]
    with _said(capsys, report) as out:
        out["checked"] = check_books(paper, acct, ids, set(), seen, states)
        # A 503 is certainly not placed and there was time: nothing may end unplaced.
        unplaced = [i for i in ids if states[i] in ("FAILED", "EXPIRED")]
        assert not unplaced, f"{len(unplaced)} orders given up after 503s although the deadline allowed a retry"


# make test keeps one broker per fault and one case per push path (each broker's own mapping of
# the same answers is a unit test); make chaos runs every broker and every path.
SHORT_BROKERS = E2E_BROKERS[:1]
SHORT_PUSH_CASES = list({path: (broker, path) for broker, path in reversed(PUSH_CASES)}.values())


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("broker", SHORT_BROKERS)
def test_503_then_success_short(broker, make_accounts, celery_workers, paper, seen, capsys) -> None:
    """Given the broker answers its own 503 one to three times before each few orders, When
    orders are placed, Then every one is placed exactly once (retried within its deadline)."""
    _unavailable(make_accounts, celery_workers, paper, seen, capsys, broker, n=6, bursts=3, gateway=False, seed=11)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_gateway_502_is_reconciled_not_resent_short(make_accounts, celery_workers, paper, seen, capsys) -> None:
    """Given a gateway's bare 502 after the broker placed the order, When the order is placed,
    Then it is at the broker exactly once (the 502 is ambiguous: reconciled, not resent)."""
    _unavailable(make_accounts, celery_workers, paper, seen, capsys, "kite", n=3, bursts=3, gateway=True, seed=12)


@pytest.mark.chaos
@pytest.mark.timeout(400)
@pytest.mark.parametrize("broker", E2E_BROKERS)
def test_503_then_success_and_gateway_502(broker, make_accounts, celery_workers, paper, seen, capsys) -> None:
    _unavailable(make_accounts, celery_workers, paper, seen, capsys, broker, n=150, bursts=15, gateway=True,
                 seed=int(os.environ.get("BG_CHAOS_SEED", "13")))


# --- duplicated and reordered pushed updates ---------------------------------------------------------------


def _push_faults(path: str) -> list[str]:
    return ["duplicate_postback", "reorder_postbacks"] if path == "postback" else ["duplicate_update", "reorder_updates"]


def _duplicated_and_reordered(broker: str, path: str, make_account: Any, celery_workers: Any, paper: Any,
                              seen_of: Any, capsys: Any, *, n: int, seed: int) -> None:
    r = get_redis()
    with pushing(path, broker, make_account, celery_workers, paper, r) as (acct, _source):
        user = paper_user_of(acct).user_id
        seen = seen_of(acct.name)
        rng = random.Random(seed)
        dup, reorder = _push_faults(path)
        # Every other update duplicated, every third held back behind the next one.
        paper.fault(kind=dup, broker=broker, user_id=user, count=n)
        paper.fault(kind=reorder, broker=broker, user_id=user, count=max(1, n // 2))
        handles = [_order(acct, limit=rng.random() < 0.5) for _ in range(n)]
        cancelled: set[str] = set()
        for h in handles:
            got = h.wait(20)
            if got["state"] == "OPEN":
                h.cancel()
                cancelled.add(h.id)
        ids = [h.id for h in handles]
        # Settled by the pushes alone (no reconcile): a strategy is told by push, not by polling.
        try:
            wait_for(lambda: all(_stored(i).get("state") in TERMINAL for i in ids), 30, interval_s=0.05,
                     what="every order settled by its pushed updates")
        finally:
            states = _settle(acct.name, ids, 30)
        report = [f"{broker} via {path}: {n} orders under {dup} and {reorder} "
                  f"({len(cancelled)} cancelled once OPEN)"]
        with _said(capsys, report) as out:
            out["checked"] = check_books(paper, acct, ids, cancelled, seen, states)
            book = {o["tag"]: o["status"] for o in paper.orders() if o.get("tag") in ids}
            differ = [(i, states[i], book.get(i)) for i in ids if book.get(i) and states[i] != book[i]]
            assert not differ, f"store and broker disagree: {differ[:5]}"
            backwards = no_regression(seen, ids)
            assert not backwards, f"the strategy was shown an order going backwards: {backwards[:3]}"


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize(("broker", "path"), SHORT_PUSH_CASES)
def test_duplicated_and_reordered_updates_short(broker, path, make_account, celery_workers, paper, seen,
                                                capsys) -> None:
    """Given every pushed update of the account duplicated and every other one reordered, When
    orders are placed, filled or cancelled, Then the store ends in the broker's state, the strategy
    saw every fill and never an order going backwards."""
    _duplicated_and_reordered(broker, path, make_account, celery_workers, paper, seen, capsys, n=4, seed=21)


@pytest.mark.chaos
@pytest.mark.timeout(400)
@pytest.mark.parametrize(("broker", "path"), PUSH_CASES)
def test_duplicated_and_reordered_updates(broker, path, make_account, celery_workers, paper, seen, capsys) -> None:
    _duplicated_and_reordered(broker, path, make_account, celery_workers, paper, seen, capsys, n=40,
                              seed=int(os.environ.get("BG_CHAOS_SEED", "22")))
