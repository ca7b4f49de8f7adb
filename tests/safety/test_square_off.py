"""Square-off where the broker refuses MARKET orders (Angel and Shoonya under the 2026 rules, an
account that did not choose brokergate's own protection): the halt closes the position with a LIMIT
through the fresh read's last price instead, and the position ends flat at the broker."""

from __future__ import annotations

from typing import Any

import pytest

from common import keys, safety
from common.client import place_order
from devtools.waiting import wait_for
from tests.brokers import marketable, ready
from tests.fixtures.accounts import paper_user_of

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("broker", ["angel", "shoonya"])
def test_square_off_closes_a_position_with_a_protected_limit(broker: str, make_accounts: Any, celery_workers: Any,
                                                            paper: Any) -> None:
    acct = ready(make_accounts(**{"kite": 0, "angel": 0, broker: 1})[f"{broker}1"])
    user = paper_user_of(acct).user_id
    celery_workers.start([keys.urgent_queue(acct.name), keys.orders_queue(acct.name)])
    h = place_order(account=acct.name, exchange="NSE", symbol="INFY", side="BUY", quantity=4, product="INTRADAY",
                    **marketable(broker))
    wait_for(lambda: [o for o in paper.orders() if o["tag"] == h.id and o["status"] == "COMPLETE"], 15,
             what="the entry filled at the broker")
    report = safety.halt([acct.name], "square-off test", square_off=True, by="test")
    try:
        assert report.exits and not report.errors, report
        exit_at_broker = wait_for(lambda: [o for o in paper.orders() if o["tag"] == report.exits[0]
                                           and o["status"] == "COMPLETE"], 15, what="the exit filled")[0]
        assert exit_at_broker["order_type"] in ("LIMIT", "LMT") and exit_at_broker["transaction_type"] in ("SELL", "S")
        wait_for(lambda: all(p["quantity"] == 0 for p in paper.portfolio(broker, user)["positions"]), 15,
                 what="flat at the broker")
    finally:
        safety.resume([acct.name], by="test")
