"""What the liveness marks cost per order (``workers/liveness.py``): a place message's id is held
from its arrival until its task ends, arrivals are written as one SADD of the new ids, and the
whole held set is rewritten only at the periodic renewal. Before, ids stayed held for
``HELD_FOR_S`` (120 s) after their task ended and every arrival rewrote the whole set: a process
taking 1,000 orders/s rewrote ~120,000 ids per message."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import redis as redis_lib

from common import keys
from workers import liveness

NAME = "worker:test@host/abcd"


@pytest.fixture
def clean_marks() -> Iterator[None]:
    with liveness._lock:
        liveness._held.clear()
        liveness._arrived.clear()
    yield
    with liveness._lock:
        liveness._held.clear()
        liveness._arrived.clear()


def _receive(coid: str) -> None:
    liveness._on_received(request=SimpleNamespace(name=keys.PLACE_TASK, args=({"client_order_id": coid},),
                                                  kwargs={}, id="m-" + coid))


def _finish(coid: str) -> None:
    liveness._on_finished(sender=SimpleNamespace(name=keys.PLACE_TASK), task_id="m-" + coid,
                          args=({"client_order_id": coid},), kwargs={})


def test_a_finished_order_leaves_the_held_set_and_arrivals_are_added_not_rewritten(
        r: redis_lib.Redis, clean_marks: None) -> None:
    """Given two place messages received, When the writer runs, Then one SADD lists both (no
    rewrite of the set); When one's task ends, Then the next renewal lists only the other, and a
    later arrival is added beside it."""
    _receive("A1")
    _receive("B2")
    liveness.mark(r, NAME)
    assert r.smembers(keys.worker_held(NAME)) == {"A1", "B2"}
    _finish("A1")
    liveness.add_held(r, NAME)  # nothing arrived: no command
    liveness.mark(r, NAME)
    assert r.smembers(keys.worker_held(NAME)) == {"B2"}
    assert r.exists(keys.worker_alive(NAME))
    _receive("C3")
    sent: list[tuple[object, ...]] = []
    real = r.execute_command
    r.execute_command = lambda *a, **kw: (sent.append(a), real(*a, **kw))[1]  # type: ignore[method-assign]
    liveness.add_held(r, NAME)
    assert [a[0] for a in sent] == ["SADD"]
    assert r.smembers(keys.worker_held(NAME)) == {"B2", "C3"}


def test_an_order_enqueued_by_name_without_an_id_is_held_under_the_id_place_order_derives(
        r: redis_lib.Redis, clean_marks: None) -> None:
    """A message without a client_order_id: held under the message id's first 20 characters
    (what place_order uses), and released by the same when its task ends."""
    mid = "0123456789abcdef-0123-4567"
    derived = mid.replace("-", "")[:20]
    liveness._on_received(request=SimpleNamespace(name=keys.PLACE_TASK, args=({"account": "a"},), kwargs={}, id=mid))
    liveness.add_held(r, NAME)
    assert r.smembers(keys.worker_held(NAME)) == {derived}
    liveness._on_finished(sender=SimpleNamespace(name=keys.PLACE_TASK), task_id=mid, args=({"account": "a"},), kwargs={})
    assert derived not in liveness._held


def test_a_failed_renewal_is_tried_again_after_renew_s(monkeypatch: pytest.MonkeyPatch, clean_marks: None) -> None:
    """Redis unreachable: the writer waits RENEW_S before the next attempt (no busy loop)."""

    class Stop(Exception):
        pass

    class Unreachable:
        def pipeline(self, **_kw: object) -> None:
            raise redis_lib.ConnectionError("down")

    waits: list[float] = []

    class Changed:
        def clear(self) -> None:
            pass

        def wait(self, timeout: float) -> None:
            waits.append(timeout)
            raise Stop

    monkeypatch.setattr("common.redis.get_redis", lambda: Unreachable())
    monkeypatch.setattr(liveness, "_changed", Changed())
    with pytest.raises(Stop):
        liveness._renew(NAME)
    assert waits == [liveness.RENEW_S]
