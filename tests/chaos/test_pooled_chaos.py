"""Chaos with a pooled worker (issue #21): SIGKILLed mid-burst across 20 accounts, it loses and
duplicates nothing. The short version (3 accounts, one kill) is in tests/orders/test_pooled.py."""

from __future__ import annotations

import pytest

from tests.orders.test_pooled import kill_mid_burst


@pytest.mark.chaos
@pytest.mark.timeout(400)
def test_a_pooled_worker_sigkilled_across_20_accounts(make_accounts, celery_workers, paper, capsys) -> None:
    """Given one pooled worker for 20 accounts (17 Kite, 3 Angel) at 10/s, When 50 orders each are
    placed and the worker is SIGKILLed three times mid-burst and restarted, Then every order ends
    terminal, each client_order_id at its broker at most once (exactly once unless it is
    EXPIRED/FAILED/CANCELLED and absent there), none lost."""
    at_broker, states = kill_mid_burst(make_accounts, celery_workers, paper, kites=17, angels=3, per_account=50,
                                       cap="10/s", kills=3)
    with capsys.disabled():
        print(f"\n[chaos] pooled worker, 20 accounts x 50 orders, 3 SIGKILLs: {at_broker} at the broker exactly "
              f"once, states {states}", flush=True)
    assert at_broker > 0
