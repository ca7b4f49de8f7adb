"""The daily login on RedBeat, with a frozen clock (the app's ``now``), real Redis."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from redbeat.schedulers import RedBeatScheduler, acquire_distributed_beat_lock, get_redis

from beat import schedule as beat_schedule
from common import keys
from common import settings as bg_settings

IST = ZoneInfo("Asia/Kolkata")
DAY = datetime(2026, 11, 25, tzinfo=IST)


def at(h: int, m: int, s: int = 0) -> datetime:
    return DAY.replace(hour=h, minute=m, second=s)


@pytest.fixture
def accounts_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> dict[str, Any]:
    """Two accounts (no broker needed: nothing here logs in)."""
    text = ""
    for name, broker in (("kite1", "kite"), ("angel1", "angel")):
        for field in ("PASSWORD", "TOTP_SECRET", "API_SECRET"):
            monkeypatch.setenv(f"SCHED_{name.upper()}_{field}", f"value-{name}-{field}")
        text += (
            f'[accounts.{name}]\nbroker = "{broker}"\nuser_id = "U{name}"\napi_key = "k{name}"\n'
            f'password = "env:SCHED_{name.upper()}_PASSWORD"\ntotp_secret = "env:SCHED_{name.upper()}_TOTP_SECRET"\n'
            f'api_secret = "env:SCHED_{name.upper()}_API_SECRET"\n\n'
        )
    path = tmp_path / "accounts.toml"
    path.write_text(text)
    monkeypatch.setenv("BROKERGATE_ACCOUNTS", str(path))
    bg_settings.settings.cache_clear()
    bg_settings.accounts.cache_clear()
    yield bg_settings.accounts()
    bg_settings.accounts.cache_clear()


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
def app(accounts_file: dict[str, Any], redis_url: str) -> Celery:
    app = Celery("beat-test", broker=redis_url, set_as_current=True)
    beat_schedule.configure(app)
    app.clock = Clock(at(8, 40))  # type: ignore[attr-defined]
    app.now = app.clock  # type: ignore[method-assign]
    return app


def make_scheduler(app: Celery, sent: list[tuple[str, str, datetime]], who: str) -> RedBeatScheduler:
    class Recording(RedBeatScheduler):
        def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kw: Any) -> None:
            entry = self.reserve(entry) if advance else entry
            sent.append((who, f"{entry.task}({', '.join(map(str, entry.args or []))})", app.now()))

    # A short max_interval only makes a waiting Beat poll the lock often (RedBeat sleeps that long).
    return Recording(app=app, max_interval=0.1)


def tick_until(app: Celery, sched: RedBeatScheduler, until: datetime, step_s: float = 1.0) -> None:
    while app.now() < until:
        app.clock.t += timedelta(seconds=step_s)  # type: ignore[attr-defined]
        sched.tick()


def logins(sent: list[tuple[str, str, datetime]]) -> list[tuple[str, str, datetime]]:
    return [s for s in sent if s[1].startswith("brokergate.login")]


def test_schedule_has_a_login_and_a_refresh_per_account_and_the_sweeper(app: Celery) -> None:
    sched = app.conf.beat_schedule
    assert sched["login:kite1"]["task"] == "brokergate.login"
    assert sched["login:kite1"]["args"] == ["kite1"]
    assert sched["login:kite1"]["options"]["queue"] == keys.AUTH_QUEUE
    assert sched["login:angel1"]["schedule"].hour == {8} and sched["login:angel1"]["schedule"].minute == {45}
    assert sched["instruments:kite1"]["schedule"].minute == {47}
    assert sched["instruments:kite1"]["kwargs"] == {"max_age_s": 3600.0}
    assert sched["sweep_orders"]["task"] == "brokergate.sweep_orders"
    assert app.conf.beat_scheduler == "redbeat.RedBeatScheduler"
    assert app.conf.redbeat_key_prefix == keys.REDBEAT_PREFIX
    assert app.conf.redbeat_lock_timeout == 3 * app.conf.beat_max_loop_interval == 15


def test_login_time_in_another_time_zone_is_converted_to_the_app_zone(accounts_file: dict[str, Any]) -> None:
    from dataclasses import replace

    acct = replace(accounts_file["kite1"], timezone="UTC", login_time=datetime(2000, 1, 1, 3, 15).time())
    sched = beat_schedule.build_schedule({"kite1": acct})
    assert (sched["login:kite1"]["schedule"].hour, sched["login:kite1"]["schedule"].minute) == ({8}, {45})


def test_login_fires_at_0845_once_per_account_even_with_two_beats(app: Celery, r: Any) -> None:
    # Given two Beats against one Redis: A takes RedBeat's lock, B waits on it
    sent: list[tuple[str, str, datetime]] = []
    a = make_scheduler(app, sent, "A")
    acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=a))
    b = make_scheduler(app, sent, "B")
    b_locked, go, b_done = threading.Event(), threading.Event(), threading.Event()

    def run_b() -> None:
        # redis-py locks are thread-local: B acquires and ticks on its own thread, like a process
        acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=b))
        b_locked.set()
        go.wait(10)
        tick_until(app, b, at(8, 48))
        app.clock.t = at(8, 44, 50) + timedelta(days=1)  # type: ignore[attr-defined]
        tick_until(app, b, at(8, 45, 20) + timedelta(days=1))
        b.close()
        b_done.set()

    threading.Thread(target=run_b, daemon=True).start()
    assert not b_locked.wait(0.3), "the second Beat must block on the lock"
    assert 0 < r.pttl(a.lock_key) <= 15_000  # a dead Beat's successor takes over within 15 s

    # When A ticks through 08:45
    tick_until(app, a, at(8, 44, 59))
    assert logins(sent) == []
    tick_until(app, a, at(8, 45, 30))

    # Then each account's login was sent once, at 08:45
    assert sorted(s[1] for s in logins(sent)) == ["brokergate.login(angel1)", "brokergate.login(kite1)"]
    assert all(s[0] == "A" and s[2] - at(8, 45) < timedelta(seconds=2) for s in logins(sent))

    # When A stops and B takes over, B does not run the 08:45 slot again (it runs to 08:48)
    a.close()
    assert b_locked.wait(10)
    n_before = len(logins(sent))
    go.set()
    assert b_done.wait(20)
    day1 = [s for s in logins(sent) if s[2] < at(23, 59)]
    assert len(day1) == n_before == 2
    refreshes = [s for s in sent if s[1].startswith("brokergate.refresh_instruments")]
    assert sorted((s[0], s[1]) for s in refreshes) == [
        ("B", "brokergate.refresh_instruments(angel1)"),
        ("B", "brokergate.refresh_instruments(kite1)"),
    ]
    # And the next day's 08:45 fires again, once per account
    day2 = [s for s in logins(sent) if s[2] > at(23, 59)]
    assert sorted(s[1] for s in day2) == ["brokergate.login(angel1)", "brokergate.login(kite1)"]


def test_beat_started_at_0900_logs_in_at_once(app: Celery, r: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a Beat that starts at 09:00 with a fresh RedBeat and no login today
    app.clock.t = at(9, 0)  # type: ignore[attr-defined]
    sent: list[tuple[str, str, datetime]] = []
    a = make_scheduler(app, sent, "A")
    acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=a))
    enqueued: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(app, "send_task", lambda name, args=None, **kw: enqueued.append((name, args)))
    # RedBeat alone would wait for tomorrow's 08:45
    tick_until(app, a, at(9, 0, 10))
    assert logins(sent) == []
    # When the catch-up runs (beat_init, after RedBeat took its lock)
    beat_schedule._on_beat_init(sender=SimpleNamespace(scheduler=a, app=app))
    # (it uses Redis server time; check it with the frozen clock too)
    enqueued.clear()
    r.set(keys.login_done("angel1", "2026-11-25"), "1")  # angel1 already logged in today
    assert beat_schedule.catch_up(app, now=at(9, 0)) == ["kite1"]
    # Then the missed login is enqueued at once, for the account that needs it only
    assert enqueued == [("brokergate.login", ["kite1"])]
    # Before the slot nothing is caught up
    assert beat_schedule.catch_up(app, now=at(8, 30)) == []
    a.close()


def test_catch_up_is_skipped_without_the_lock(app: Celery, monkeypatch: pytest.MonkeyPatch) -> None:
    enqueued: list[Any] = []
    monkeypatch.setattr(beat_schedule, "catch_up", lambda *a, **k: enqueued.append(a))
    sched = SimpleNamespace(lock_key="x", lock=None, app=app, max_interval=5, tick=lambda: 5)
    beat_schedule._on_beat_init(sender=SimpleNamespace(scheduler=sched, app=app))
    assert enqueued == []


def test_a_beat_whose_lock_was_lost_fires_nothing_until_it_takes_it_again(
        app: Celery, r: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A failover can lose RedBeat's lock (the promoted replica without its last extend) or
    outlast it (another Beat took it): Beat goes on, standby, instead of exiting."""
    caught_up: list[Any] = []
    monkeypatch.setattr(beat_schedule, "catch_up", lambda *a, **k: caught_up.append(a))
    sent: list[tuple[str, str, datetime]] = []
    a = make_scheduler(app, sent, "A")
    acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=a))
    beat_schedule._on_beat_init(sender=SimpleNamespace(scheduler=a, app=app))
    assert len(caught_up) == 1
    tick_until(app, a, at(8, 45, 5))
    assert len(logins(sent)) == 2
    # When the lock is lost and another Beat holds it
    r.set(a.lock_key, "another beat's token", px=15_000)
    n = len(sent)
    tick_until(app, a, at(8, 47, 10))  # the 08:47 refreshes are due
    # Then this Beat fires nothing, and does not exit
    assert len(sent) == n and r.get(a.lock_key) == "another beat's token"
    # When the other Beat's lock lapses, this one takes it at its next tick, catches up and fires
    r.delete(a.lock_key)
    a.tick()
    assert r.get(a.lock_key) and r.get(a.lock_key) != "another beat's token"
    assert len(caught_up) == 2
    assert {"brokergate.refresh_instruments(angel1)", "brokergate.refresh_instruments(kite1)"} <= {s[1] for s in sent[n:]}
    a.close()


def test_redbeat_client_is_our_redis(app: Celery, redis_url: str) -> None:
    assert get_redis(app).ping()
    assert app.redbeat_conf.key_prefix == keys.REDBEAT_PREFIX
