"""A strategy process holds no secrets: the Redis URL and the accounts' public fields suffice.

Secrets belong to the processes that log in and send (workers, Beat, feed, receiver); a
strategy places orders, waits for them and reads ticks through Redis only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from common import keys
from tests.fixtures.accounts import logged_in
from tests.fixtures.workers import REPO

pytestmark = pytest.mark.slow

# What a strategy does, in a fresh process: place an order with the client and wait for the broker.
STRATEGY = """
import json
from common.client import place_order
from common.models import Order

h = place_order(Order(account="kite1", exchange="NSE", symbol="INFY", side="BUY", quantity=1))
print(json.dumps(h.wait(15)))
"""


def test_a_strategy_places_and_waits_for_an_order_with_no_secret_in_its_environment(make_accounts,
                                                                                     celery_workers) -> None:
    """Given workers that hold the account's secrets, When a strategy process whose environment has
    the Redis URL and the accounts file but no secret places an order, Then it is placed and filled."""
    accts = make_accounts(kite=1, angel=1)
    logged_in(accts)
    celery_workers.start([keys.urgent_queue("kite1"), keys.orders_queue("kite1")])
    secret_vars = {v for v in os.environ if v.startswith("BG_TEST_")}
    assert secret_vars, "make_accounts sets the secret variables"
    env = {k: v for k, v in os.environ.items() if k not in secret_vars}
    done = subprocess.run([sys.executable, "-c", STRATEGY], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["state"] in ("OPEN", "COMPLETE"), got


def test_a_worker_without_a_secret_it_would_use_refuses_to_start_naming_it(make_accounts,
                                                                           celery_workers) -> None:
    """Given an environment without kite1's password, When a worker for kite1's queues starts,
    Then it exits at once naming the variable; a worker for angel1 alone does not need it."""
    make_accounts(kite=1, angel=1)
    without = {k: v for k, v in os.environ.items() if k != "BG_TEST_KITE1_PASSWORD"}
    w = celery_workers.prepare([keys.urgent_queue("kite1"), keys.orders_queue("kite1")])
    w.env = without
    w.spawn()
    assert w.proc is not None
    assert w.proc.wait(30) != 0
    assert "BG_TEST_KITE1_PASSWORD is not set" in w.log()
    ok = celery_workers.prepare([keys.urgent_queue("angel1"), keys.orders_queue("angel1")])
    ok.env = without
    ok.spawn()
    ok.wait_ready()
