"""What the client's publish costs Redis: a place, cancel or modify is one LPUSH on the account's
queue, with no result channel subscribed and dropped around it (the client never reads a result:
task_ignore_result), for one order as for a group's children."""

from __future__ import annotations

from typing import Any

import brokergate
from common.redis import get_redis

LIMIT = {"exchange": "NSE", "symbol": "INFY", "side": "BUY", "order_type": "LIMIT", "price": "1400.00", "quantity": 1}


def _calls(r: Any) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in r.info("commandstats").items()}


def test_placing_cancelling_and_modifying_subscribe_to_no_result_channel(make_accounts) -> None:
    make_accounts(kite=1, angel=1)
    r = get_redis()
    brokergate.place_order(account="kite1", **LIMIT)  # connections and queue declarations made once
    r.config_resetstat()
    h = brokergate.place_order(account="kite1", **LIMIT)
    h.modify(price="1401.00")
    h.cancel()
    brokergate.place_order_group(["kite1", "angel1"], LIMIT)
    got = _calls(r)
    assert got.get("lpush") == 5, got  # place, modify, cancel, and the group's two children
    assert "subscribe" not in got and "unsubscribe" not in got, got
