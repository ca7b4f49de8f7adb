"""Task events (Flower) go out in batches (``workers/taskevents.py``): however many events the
worker buffers within ``FLUSH_EVERY_S``, one flush, so one ``task.multi`` PUBLISH; before, every
event asked the event loop for a flush of its own (three PUBLISHes an order one at a time)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from common import keys
from common.client import place_order
from common.redis import get_redis
from tests.brokers import marketable, ready
from workers import taskevents
from workers.taskevents import CoalescedEvents


class _Hub:
    def __init__(self) -> None:
        self.soon: list[Any] = []
        self.later: list[tuple[float, Any]] = []

    def call_soon(self, fn: Any) -> None:
        self.soon.append(fn)

    def call_later(self, delay: float, fn: Any) -> None:
        self.later.append((delay, fn))

    def run(self) -> None:
        """The loop's turn: callbacks, then the timers that fell due."""
        soon, self.soon = self.soon, []
        for fn in soon:
            fn()
        later, self.later = self.later, []
        for _, fn in later:
            fn()


class _Celery:
    def shutdown(self) -> None:
        self.shut = True


class _Consumer(CoalescedEvents, _Celery):
    def __init__(self) -> None:
        self.hub = _Hub()
        self.flushes = 0
        self.shut = False

    def _flush_events(self) -> None:
        self.flushes += 1


def test_many_events_are_one_flush_after_the_delay() -> None:
    """Given 30 events buffered one after another (an order's received, started, succeeded, ten
    times), Then one flush is scheduled, FLUSH_EVERY_S later; the next event after it schedules
    the next one."""
    c = _Consumer()
    for _ in range(30):
        c.on_send_event_buffered()
    assert len(c.hub.soon) == 1
    c.hub.soon.pop()()
    assert [d for d, _ in c.hub.later] == [taskevents.FLUSH_EVERY_S]
    for _ in range(5):
        c.on_send_event_buffered()  # a flush is pending: nothing more
    assert c.hub.soon == []
    c.hub.run()
    assert c.flushes == 1
    c.on_send_event_buffered()
    c.hub.run()
    c.hub.run()
    assert c.flushes == 2


def test_a_shutdown_publishes_the_buffered_events_first() -> None:
    """Events buffered when the worker stops go out before Celery closes the dispatcher (which
    does not flush), not with a timer that never fires."""
    c = _Consumer()
    c.on_send_event_buffered()
    c.shutdown()
    assert c.flushes == 1 and c.shut


def test_a_flush_lost_with_a_reset_hub_is_scheduled_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reconnect resets the hub, dropping its pending callbacks: an event after STALE_S
    schedules a flush again instead of waiting for the buffer's limit."""
    clock = [100.0]
    monkeypatch.setattr(taskevents.time, "monotonic", lambda: clock[0])
    c = _Consumer()
    c.on_send_event_buffered()
    c.hub.soon.clear()  # the reset
    c.on_send_event_buffered()
    assert c.hub.soon == []
    clock[0] += taskevents.STALE_S
    c.on_send_event_buffered()
    c.hub.run()
    c.hub.run()
    assert c.flushes == 1


def _events(raw: bytes) -> list[dict[str, Any]]:
    """The events of one message on the event exchange (kombu's envelope, JSON body in base64)."""
    envelope = json.loads(raw)
    body = json.loads(base64.b64decode(envelope["body"]))
    return body if isinstance(body, list) else [body]


ORDERS = 6


def test_a_real_worker_publishes_every_task_event_in_fewer_messages(make_account, celery_workers, paper) -> None:
    """Given a worker placing orders one at a time, Then Flower's subscription sees each
    order's task-received, -started and -succeeded, batched: fewer messages than events."""
    acct = make_account(caps={"orders": ["10/s"]})
    ready(acct)
    celery_workers.start([keys.urgent_queue(acct.name), keys.orders_queue(acct.name)])
    sub = get_redis().pubsub()
    sub.psubscribe("*celeryev*")
    assert sub.get_message(timeout=5)["type"] == "psubscribe"  # subscribed before the first event
    ids = []
    for _ in range(ORDERS):  # one at a time: nothing batches them but the flush's delay
        h = place_order(account=acct.name, exchange="NSE", symbol="INFY", side="BUY", quantity=1,
                        **marketable(acct.broker))
        h.wait(15)
        ids.append(h.id)
    wanted = {(t, c) for c in ids for t in ("task-received", "task-started", "task-succeeded")}
    seen: set[tuple[str, str]] = set()
    by_task: dict[str, str] = {}  # task id -> client order id (only task-received carries the args)
    messages = 0
    deadline = time.monotonic() + 20
    while not wanted <= seen and time.monotonic() < deadline:
        msg = sub.get_message(timeout=1)
        if not msg or msg["type"] != "pmessage":
            continue
        messages += 1
        for ev in _events(msg["data"]):
            if ev.get("type", "").startswith("task-"):
                # The task id is the message's; place_order's client ids ride in its args.
                coid = next((c for c in ids if c in str(ev.get("args", ""))), None) or by_task.get(ev["uuid"])
                if coid:
                    by_task[ev["uuid"]] = coid
                    seen.add((ev["type"], coid))
    sub.close()
    assert wanted <= seen, sorted(wanted - seen)
    print(f"{messages} messages for {len(wanted)} events")
    # Each event its own message before (3 an order); ~1 an order now, more only if an order
    # spans several flushes (a very busy machine).
    assert messages < 2 * ORDERS, f"{messages} messages for {len(wanted)} events"
