"""The instrument master is there after every login, on demand from the CLI, and a symbol it does
not know is refused at once (a subscription that never ticks, an order the broker refuses)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import redis

from brokergate import cli
from common import instruments, keys, tokens
from common.errors import InvalidOrder
from common.models import Instrument
from common.redis import server_time_ms
from tests.fixtures.accounts import logged_in

pytestmark = pytest.mark.slow


def _queued_tasks(r: redis.Redis, queue: str) -> list[tuple[str, dict[str, Any]]]:
    """(task name, kwargs) of each message waiting on ``queue`` (Celery's Redis transport)."""
    out = []
    for raw in r.lrange(queue, 0, -1):
        msg = json.loads(raw)
        _args, kwargs, _embed = json.loads(base64.b64decode(msg["body"]))
        out.append((msg["headers"]["task"], kwargs))
    return out


def test_cli_login_loads_a_missing_master_and_a_second_login_keeps_todays(make_accounts, r: redis.Redis,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    # Given a fresh account: no token, no instrument master
    make_accounts(kite=1, angel=0)
    assert not r.exists(keys.instruments("kite1"))
    # When `brokergate login kite1`
    assert cli.main(["login", "kite1"]) == 0
    # Then the master is loaded before the command returns, and it says so
    count = r.hlen(keys.instruments("kite1"))
    assert count > 1000
    assert f"instruments: {count} loaded" in capsys.readouterr().out
    # And a second login the same day finds it fresh: nothing is downloaded again
    at = r.hget(keys.instruments_meta("kite1"), "refreshed_at_ms")
    assert cli.main(["login", "kite1"]) == 0
    assert r.hget(keys.instruments_meta("kite1"), "refreshed_at_ms") == at
    assert "instruments: fresh" in capsys.readouterr().out


def test_a_master_from_an_earlier_day_is_stale(make_accounts, r: redis.Redis) -> None:
    make_accounts(kite=1, angel=0)
    assert instruments.is_stale("kite1", r)  # missing
    instruments.store("kite1", [Instrument("NSE", "INFY", "408065")], r)
    assert not instruments.is_stale("kite1", r)
    r.hset(keys.instruments_meta("kite1"), "refreshed_at_ms", server_time_ms(r) - 25 * 3600 * 1000)
    assert instruments.is_stale("kite1", r)


def test_a_relogin_asks_the_auth_queue_for_a_missing_master_once(make_accounts, r: redis.Redis) -> None:
    """Given an account without a master, When a worker logs it in again (a token refused
    mid-session), Then an instrument refresh is enqueued on ``auth``; with the master loaded, none."""
    make_accounts(kite=1, angel=0)
    tokens.relogin("kite1", 0)
    assert _queued_tasks(r, keys.AUTH_QUEUE) == [("brokergate.refresh_instruments", {"if_stale": True})]
    r.delete(keys.AUTH_QUEUE)
    instruments.store("kite1", [Instrument("NSE", "INFY", "408065")], r)
    tok = tokens.read_token("kite1", r)
    assert tok is not None
    tokens.relogin("kite1", tok.version)
    assert _queued_tasks(r, keys.AUTH_QUEUE) == []


def test_the_daily_login_task_loads_a_missing_master_even_when_already_logged_in(make_accounts, celery_workers,
                                                                                 r: redis.Redis) -> None:
    from celery import Celery

    from common.settings import settings
    from devtools.waiting import wait_for

    app = Celery("test-producer", broker=settings().redis_url, set_as_current=False)
    make_accounts(kite=1, angel=0)
    celery_workers.start([keys.AUTH_QUEUE])
    app.send_task("brokergate.login", args=["kite1"], queue=keys.AUTH_QUEUE)
    wait_for(lambda: r.hlen(keys.instruments("kite1")) > 1000, 30, interval_s=0.05, what="the master after the login")
    # The master goes missing (a flushed key, a failed refresh); today's login is already done
    r.delete(keys.instruments("kite1"), keys.instrument_tokens("kite1"), keys.instruments_meta("kite1"))
    app.send_task("brokergate.login", args=["kite1"], queue=keys.AUTH_QUEUE)
    wait_for(lambda: r.hlen(keys.instruments("kite1")) > 1000, 30, interval_s=0.05, what="the master again")
    assert r.get(keys.token_version("kite1")) == "1"  # the second login was skipped, not repeated


def test_instruments_refresh_command_loads_the_master(make_accounts, r: redis.Redis,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    accts = make_accounts(kite=1, angel=1)
    logged_in(accts)
    assert cli.main(["instruments", "refresh", "angel1"]) == 0
    count = r.hlen(keys.instruments("angel1"))
    assert count > 1000 and f"angel1: {count} instruments" in capsys.readouterr().out
    assert cli.main(["instruments", "refresh", "nobody"]) == 2
    assert "unknown account 'nobody'" in capsys.readouterr().err


def test_an_unknown_symbol_is_refused_at_once_once_the_master_is_loaded(make_accounts, r: redis.Redis,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from common.client import place_order
    from common.ticks import subscribe, subscribe_ticks

    make_accounts(kite=1, angel=0)
    # Without a master nothing can be judged: the subscription is kept for the feed to map later
    assert cli.main(["feed", "subscribe", "NSE:NOSUCH", "--account", "kite1"]) == 0
    assert "not loaded" in capsys.readouterr().err
    r.delete(keys.feed_subs("kite1"))
    # With the master loaded, an unknown symbol is refused naming the field, and nothing is stored
    instruments.store("kite1", [Instrument("NSE", "INFY", "408065")], r)
    assert cli.main(["feed", "subscribe", "NSE:INFY", "NSE:NOSUCH", "--account", "kite1"]) == 2
    err = capsys.readouterr().err
    assert "symbol" in err and "NSE:NOSUCH" in err and "kite1" in err
    assert not r.exists(keys.feed_subs("kite1"))
    for call in (lambda: subscribe("NSE:NOSUCH", account="kite1"),
                 lambda: subscribe_ticks(["NSE:INFY", "NSE:NOSUCH"], account="kite1"),
                 lambda: place_order(account="kite1", exchange="NSE", symbol="NOSUCH", side="BUY", quantity=1)):
        with pytest.raises(InvalidOrder) as e:
            call()
        assert e.value.field == "symbol" and "NSE:NOSUCH" in str(e.value)
    assert not r.exists(keys.feed_subs("kite1"))
    assert cli.main(["feed", "subscribe", "NSE:INFY", "--account", "kite1"]) == 0
    assert r.hgetall(keys.feed_subs("kite1")) == {"NSE:INFY": "quote"}
