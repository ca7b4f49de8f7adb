"""The token store: versions, a reader in another process, single-flight re-login; the
instrument master's atomic swap."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from common import instruments, keys, tokens
from common.errors import TokenExpired
from common.models import Instrument
from tests.brokers import login_requests, token_works
from tests.fixtures.accounts import logged_in

REPO = Path(__file__).resolve().parents[2]


def _far_ms(r: Any) -> int:
    sec, _ = r.time()
    return (int(sec) + 3600) * 1000


def test_versions_only_grow_even_after_the_token_expired(redis_url: str, r: Any) -> None:
    t1 = tokens.store_token("acc", access_token="a" * 20, expires_at_ms=_far_ms(r))
    t2 = tokens.store_token(
        "acc", access_token="b" * 20, expires_at_ms=_far_ms(r), extra={"public_token": "p" * 10}
    )
    assert (t1.version, t2.version) == (1, 2)
    assert r.hget(keys.token("acc"), "public_token") == "p" * 10
    assert 3_590_000 < r.pttl(keys.token("acc")) <= 3_600_000
    # An expired token disappears from Redis and from readers
    sec, _ = r.time()
    tokens.store_token("acc", access_token="c" * 20, expires_at_ms=int(sec) * 1000 - 1)
    assert r.exists(keys.token("acc")) == 0 and tokens.read_token("acc") is None
    assert tokens.get_token("acc") is None
    t4 = tokens.store_token("acc", access_token="d" * 20, expires_at_ms=_far_ms(r))
    assert t4.version == 4


def test_store_publishes_account_and_version(redis_url: str, r: Any) -> None:
    ps = r.pubsub(ignore_subscribe_messages=True)
    ps.subscribe(keys.TOKEN_CHANGED)
    ps.get_message(timeout=1)
    tokens.store_token("acc", access_token="a" * 20, expires_at_ms=_far_ms(r))
    msg = ps.get_message(timeout=2)
    assert msg is not None and msg["data"] == "acc 1"
    ps.close()


READER = """
import sys, time
from common.redis import get_redis
from common.tokens import get_token
name = sys.argv[1]
r = get_redis()
seen = 0
r.rpush("test:reader:ready", "1")
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    tok = get_token(name)   # what a worker does before each request
    if tok is not None and tok.version > seen:
        seen = tok.version
        r.rpush("test:reader:seen", f"{seen} {time.time()}")
    time.sleep(0.002)
"""


def test_a_running_reader_process_sees_a_new_version_within_1s(redis_url: str, r: Any) -> None:
    # Given a separate process that reads the token before every "request", with its cache warm
    tokens.store_token("acc", access_token="v1" * 10, expires_at_ms=_far_ms(r))
    proc = subprocess.Popen([sys.executable, "-c", READER, "acc"], cwd=REPO, env=dict(os.environ))
    try:
        assert r.blpop("test:reader:ready", timeout=15)
        assert r.blpop("test:reader:seen", timeout=5)[1].startswith("1 ")
        lags = []
        for v in range(2, 7):
            # When a new token is stored
            t0 = time.time()
            tokens.store_token("acc", access_token=f"v{v}" * 10, expires_at_ms=_far_ms(r))
            # Then the reader sees it within 1 s (pub/sub: milliseconds)
            item = r.blpop("test:reader:seen", timeout=2)
            assert item is not None, f"version {v} not seen within 2 s"
            version, at = item[1].split()
            assert int(version) == v
            lags.append(float(at) - t0)
        print(f"reader lag: max {max(lags) * 1000:.1f} ms, all {[round(x * 1000, 1) for x in lags]}")
        assert max(lags) < 1.0
    finally:
        proc.kill()
        proc.wait(5)


RELOGIN = """
import sys
from common.redis import get_redis
from common.tokens import relogin
name, stale = sys.argv[1], int(sys.argv[2])
r = get_redis()
r.rpush("test:relogin:ready", "1")
r.blpop("test:relogin:go", timeout=20)
tok = relogin(name, stale)
r.rpush("test:relogin:done", str(tok.version))
"""


def test_expired_token_mid_run_one_login_for_all_threads_and_processes(
    make_account: Any, paper: Any, r: Any
) -> None:
    # Given a logged-in account whose token the broker has just expired
    acct = make_account()
    name = acct.name
    old = logged_in([acct])[name]
    assert token_works(acct, old.access_token)
    paper.fault(kind="expire_tokens", broker=acct.broker, user_id=acct.user_id)
    assert not token_works(acct, old.access_token)
    n_threads, n_procs = 8, 3
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RELOGIN, name, str(old.version)], cwd=REPO, env=dict(os.environ)
        )
        for _ in range(n_procs)
    ]
    try:
        for _ in procs:
            assert r.blpop("test:relogin:ready", timeout=15)
        # When every thread and process meets TokenExpired at once and asks for a new token
        barrier = threading.Barrier(n_threads + 1)
        got: list[Any] = []

        def worker() -> None:
            barrier.wait()
            got.append(tokens.relogin(name, old.version))

        threads = [threading.Thread(target=worker) for _ in range(n_threads)]
        for t in threads:
            t.start()
        r.rpush("test:relogin:go", *["go"] * n_procs)
        barrier.wait()
        for t in threads:
            t.join(20)
        done = [r.blpop("test:relogin:done", timeout=20) for _ in procs]
    finally:
        for p in procs:
            p.wait(20)
    # Then exactly one login reached the broker and everyone continues with its token
    assert len(login_requests(paper, acct)) == 2  # the first login, and the one re-login
    versions = {t.version for t in got} | {int(d[1]) for d in done if d}
    assert versions == {old.version + 1} and len(got) == n_threads and all(done)
    new = tokens.get_token(name)
    assert new is not None and new.version == old.version + 1 and token_works(acct, new.access_token)
    # And a late caller holding the old version gets the new token without a login
    assert tokens.relogin(name, old.version).version == new.version
    assert len(login_requests(paper, acct)) == 2


def test_relogin_is_what_a_worker_does_on_token_expired(make_account: Any, paper: Any) -> None:
    acct = make_account()
    tok = logged_in([acct])[acct.name]
    paper.fault(kind="expire_tokens", broker=acct.broker, user_id=acct.user_id)

    def call_broker() -> str:
        t = tokens.get_token(acct.name)
        assert t is not None
        if not token_works(acct, t.access_token):
            raise TokenExpired("token refused")
        return "ok"

    with pytest.raises(TokenExpired):
        call_broker()
    tokens.relogin(acct.name, tok.version)
    assert call_broker() == "ok"  # get_token saw the new version at once (same process)


def test_instrument_master_swaps_atomically_and_means_the_same_on_both_brokers(
    paper_accounts: dict[str, Any], r: Any
) -> None:
    logged_in(paper_accounts)
    old = [Instrument("NSE", f"OLD{i}", str(i), 1, Decimal("0.05")) for i in range(3)]
    instruments.store("kite1", old)
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.add(r.hlen(keys.instruments("kite1")))

    t = threading.Thread(target=reader)
    t.start()
    try:
        n = instruments.refresh("kite1")
    finally:
        stop.set()
        t.join(5)
    assert seen <= {3, n}, f"a reader saw a half-written master: {sorted(seen)[:5]}"
    assert r.hlen(keys.instrument_tokens("kite1")) == n
    assert instruments.lookup("kite1", "NSE:OLD1") is None
    assert instruments.refresh("angel1") > 0
    assert r.keys("*:tmp:*") == []
    kite_infy, angel_infy = instruments.lookup("kite1", "NSE:INFY"), instruments.lookup("angel1", "NSE:INFY")
    assert kite_infy is not None and angel_infy is not None
    assert (kite_infy.token, angel_infy.token) == ("408065", "1594")
    assert angel_infy.broker_symbol == "INFY-EQ" and angel_infy.tick_size == kite_infy.tick_size == Decimal(
        "0.05"
    )
    assert instruments.by_token("angel1", "1594") == angel_infy
    assert instruments.by_token("kite1", 408065) == kite_infy
    assert "NSE:SBIN" in instruments.all_for("angel1")
    assert instruments.lookup("kite1", "NSE:NOSUCH") is None and instruments.by_token("kite1", "0") is None


def test_an_empty_download_keeps_the_old_master(redis_url: str, r: Any) -> None:
    instruments.store("acc", [Instrument("NSE", "A", "1")])
    with pytest.raises(Exception, match="empty"):
        instruments.store("acc", [])
    assert instruments.lookup("acc", "NSE:A") is not None


def test_a_token_written_without_an_announcement_is_still_seen_within_the_cache_ttl(
    redis_url: str, r: Any
) -> None:
    # Given a warm cache
    tokens.store_token("acc", access_token="a" * 20, expires_at_ms=_far_ms(r))
    assert tokens.get_token("acc").version == 1  # type: ignore[union-attr]
    # When the hash changes and the pub/sub message is lost (a Redis reconnect)
    r.hset(keys.token("acc"), mapping={"version": "9", "access_token": "z" * 20})
    # Then readers see it within CACHE_TTL_S anyway
    deadline = time.monotonic() + tokens.CACHE_TTL_S + 0.5
    while (tok := tokens.get_token("acc")) is None or tok.version != 9:
        assert time.monotonic() < deadline, "the cache never re-read Redis"
        time.sleep(0.01)


def test_a_recent_master_is_not_downloaded_again(paper_accounts: dict[str, Any], paper: Any, r: Any) -> None:
    logged_in(paper_accounts)
    assert instruments.refresh("angel1") > 0
    age = instruments.age_s("angel1")
    assert age is not None and age < 5
    assert instruments.refresh("angel1", max_age_s=3600) == 0
    downloads = [q for q in paper.requests() if q["path"].endswith("OpenAPIScripMaster.json")]
    assert len(downloads) == 1


def test_a_token_read_from_redis_is_redacted_from_this_processs_logs(redis_url: str, r: Any) -> None:
    """Given a token stored by another process (written straight into Redis), When this process
    reads it (a worker sending, the feed connecting), Then its values are redacted from its logs."""
    from common.logs import redact

    access, feed, extra = "acc-" + os.urandom(12).hex(), "feed-" + os.urandom(12).hex(), "pub-" + os.urandom(12).hex()
    r.hset(keys.token("other"), mapping={"access_token": access, "feed_token": feed, "public_token": extra,
                                         "version": 1, "issued_at_ms": 0, "expires_at_ms": _far_ms(r)})
    assert tokens.read_token("other") is not None
    assert redact(f"GET /x?access_token={access}&f={feed}&p={extra}") == "GET /x?access_token=***&f=***&p=***"
