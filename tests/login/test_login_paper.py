"""Real logins against the paper broker: tokens in Redis, wrong credentials, no secrets in logs."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import pyotp
import pytest

from common import keys, tokens
from common import settings as bg_settings
from common.brokers import broker as broker_record
from common.errors import LoginFailed
from tests.brokers import login_requests, token_works
from workers import login as login_tasks


def test_daily_login_lands_in_redis(
    broker: str, make_account: Any, r: Any, paper: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    acct = make_account()
    name = acct.name
    # (what the broker's login flow returned, to find every field of it in the store)
    flow = broker_record(broker).login
    real_login = flow.login
    returned: list[dict[str, Any]] = []

    def spy(*args: Any, **kw: Any) -> dict[str, Any]:
        fields = real_login(*args, **kw)
        returned.append(dict(fields))
        return fields  # type: ignore[no-any-return]

    monkeypatch.setattr(flow, "login", spy)
    # When the daily login task runs
    summary = login_tasks.login_now(name, force=False)
    # Then the token is in Redis, expiring with the token, and the broker accepts it
    h = r.hgetall(keys.token(name))
    assert summary["version"] == int(h["version"]) == 1 and not summary["skipped"]
    assert h["user_id"] == acct.user_id
    assert set(h) >= {"access_token", "feed_token", "version", "issued_at_ms", "expires_at_ms", "user_id"}
    # with every field the broker's login returned (its refresh or public token...)
    (fields,) = returned
    assert h["feed_token"] == str(fields.get("feed_token") or "")
    assert {k: str(v) for k, v in fields.items() if v is not None and k not in ("user_id", "feed_token")} == {
        k: h[k] for k, v in fields.items() if v is not None and k not in ("user_id", "feed_token")
    }
    ttl_ms = r.pttl(keys.token(name))
    assert abs((int(h["expires_at_ms"]) - int(h["issued_at_ms"])) - ttl_ms) < 2000
    tok = tokens.get_token(name)
    assert tok is not None and tok.version == 1 and token_works(acct, tok.access_token)
    assert "access_token" not in repr(tok) and tok.access_token not in repr(tok)
    # And a second daily run the same day is skipped: one login flow at the broker
    again = login_tasks.login_now(name, force=False)
    assert again["skipped"] and again["version"] == 1
    assert len(login_requests(paper, acct)) == 1
    # A forced login (the CLI) logs in again
    assert login_tasks.login_now(name)["version"] == 2
    assert len(login_requests(paper, acct, accepted_only=True)) == 2
    assert r.hgetall(keys.login_error(name)) == {}


def _break_totp_secret(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(f"BG_TEST_{name.upper()}_TOTP_SECRET", pyotp.random_base32())
    bg_settings.accounts.cache_clear()


def test_wrong_totp_secret_fails_once_clearly_without_a_retry_storm(
    make_account: Any,
    paper: Any,
    r: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: Any,
) -> None:
    # Given an account whose TOTP secret is wrong
    name = make_account().name
    _break_totp_secret(monkeypatch, name)
    acct = bg_settings.account(name)
    caplog.set_level(logging.DEBUG)
    # When the daily login runs, and then 10 workers meet an expired token at once
    with pytest.raises(LoginFailed, match=r"(?i)totp"):
        login_tasks.login(name)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            tokens.relogin(name, 0, timeout_s=5)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # Then every caller got LoginFailed, the broker saw one login, and the log one clear line
    assert len(errors) == 10 and all(isinstance(e, LoginFailed) for e in errors)
    assert len(login_requests(paper, acct)) == 1
    lines = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(lines) == 1, [x.getMessage() for x in lines]
    assert name in lines[0].getMessage() and "totp" in lines[0].getMessage().lower()
    err = r.hgetall(keys.login_error(name))
    assert err["type"] == "LoginFailed" and "totp" in err["message"].lower() and int(err["at_ms"]) > 0
    assert tokens.get_token(name) is None


def test_wrong_api_secret_fails_at_the_session_step(
    make_accounts: Any, paper: Any, r: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_accounts(kite=1, angel=0)
    monkeypatch.setenv("BG_TEST_KITE1_API_SECRET", "not-the-secret-at-all")
    bg_settings.accounts.cache_clear()
    with pytest.raises(LoginFailed, match="checksum"):
        login_tasks.login_now("kite1")
    assert r.hget(keys.login_error("kite1"), "type") == "LoginFailed"


def test_unreachable_broker_is_retried_within_the_deadline(
    make_account: Any, r: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.errors import BrokerUnavailable
    from tests.fixtures.redis import free_port

    # (every URL of the login flow: a broker may start it at either)
    nowhere = f"http://127.0.0.1:{free_port()}"
    acct = make_account(rest_url=nowhere, login_url=nowhere)
    t0 = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        tokens.login_and_store(acct, deadline_s=1.0)
    assert time.monotonic() - t0 < 3
    assert r.hget(keys.login_error(acct.name), "type") == "BrokerUnavailable"


def test_logs_of_a_full_login_hold_no_secret(make_account: Any, paper: Any, caplog: Any) -> None:
    from common import instruments

    acct = make_account()
    name = acct.name
    caplog.set_level(logging.DEBUG)
    t0 = time.time()
    login_tasks.login_now(name)
    instruments.refresh(name)
    t1 = time.time()
    text = "\n".join(f"{rec.getMessage()} {rec.exc_text or ''}" for rec in caplog.records)
    assert "login ok" in text
    tok = tokens.read_token(name)
    assert tok is not None
    values = [
        acct.password.get(),
        acct.totp_secret.get(),
        acct.api_secret.get(),
        tok.access_token,
        tok.feed_token,
    ]
    values += [v for k, v in tok.extra.items() if k.endswith("token")]
    for v in filter(None, values):
        assert v not in text
    totp = pyotp.TOTP(acct.totp_secret.get())
    codes = {totp.at(t) for t in (t0 - 30, t0, t0 + 30, t1, t1 + 30)}
    for code in codes:
        assert not re.search(rf"(?<!\d){code}(?!\d)", text), "a TOTP code reached the log"
