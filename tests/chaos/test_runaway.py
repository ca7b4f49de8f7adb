"""The full runaway of issue #18 (``make chaos``): 3 strategy processes place 1,000 orders between
them in a loop, alternating market buys (they fill) and limit buys far under the market (they rest
OPEN), and ``brokergate halt --all --square-off`` stops them. The scenario and its checks are the
short runaway's (tests/safety/test_halt.py ``run_runaway``, tests/safety/runaway.py), at full size:
no entry reaches the paper broker after the halt's slot, every order open there is cancelled, the
position is flat there, nothing is lost or sent twice, and the paper broker refused nothing under
the 2026 retail-algo rules.

Real processes: the paper broker, ``celery`` worker subprocesses, the strategies and the CLI.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.test_chaos import _say
from tests.safety.test_halt import run_runaway


@pytest.mark.chaos
@pytest.mark.timeout(400)
def test_a_1000_order_runaway_across_3_processes_is_stopped_by_halt_all(make_accounts, celery_workers, paper,
                                                                        capsys) -> None:
    """Given 3 strategy processes placing 1,000 orders between them in a loop, When ``brokergate
    halt --all --square-off`` runs once the runaway is under way, Then no entry is sent after the
    halt, every order open at the broker is cancelled, the position is flat, nothing is lost or
    sent twice, no request broke a retail-algo rule."""
    started = time.monotonic()
    counts = run_runaway(make_accounts, celery_workers, paper, processes=3, orders_total=1000)
    rules = paper.rule_rejections()
    _say(capsys, "\n[chaos] ".join([
        f"runaway: 3 processes, 1,000 orders between them; halted and checked in {time.monotonic() - started:.1f} s",
        f"placed {counts['placed']} (the rest refused at the client: Halted; {counts['stopped_in_loop']} of 3 "
        f"processes stopped in their loop); sent {counts['sent']}, all before the halt; "
        f"refused after it {counts['refused_after_halt']} ({counts['dropped']} taken out of the queues, "
        f"{counts['halted_refused']} at the worker's claim or gate)",
        f"halt: {counts['cancels']} cancels, {counts['exits']} square-off exits; checked: every order settled, "
        f"none open at the broker, position flat, none lost, none at the broker twice; rule rejections {rules}",
    ]))
    assert rules == {}, f"the paper broker refused requests under the retail-algo rules: {rules}"
