"""The feed's Fyers dialect on real sockets: the server's flow control (acknowledgements every
ACK_EVERY data frames) is answered, so ticks keep coming long past the unacknowledged limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis as redis_lib

from common import keys
from common.ticks import subscribe_ticks
from paper.fyers import ws as ws_fyers
from tests.brokers import only, ready
from tests.feed.conftest import wait_for


def test_ticks_keep_flowing_past_the_unacknowledged_limit(
    make_accounts: Callable[..., dict[str, Any]], start_feed: Callable[..., Any], ticker: Any, r: redis_lib.Redis
) -> None:
    # Given a Fyers account's feed streaming one instrument on a fast tick clock
    acct = ready(make_accounts(**only("fyers"))["fyers1"])
    ticker.set(interval_ms=10)
    start_feed({acct.name: acct})
    with subscribe_ticks(["NSE:INFY"], "quote", account=acct.name, r=r) as sub:
        # When far more data frames arrive than the server sends without an acknowledgement
        target = 4 * ws_fyers.MAX_UNACKED
        got = 0

        def enough() -> bool:
            nonlocal got
            while sub.get(0.01) is not None:
                got += 1
            return got >= target

        wait_for(enough, 15, f"{target} ticks")
    # Then the socket never stalled or reconnected: the feed acknowledged as asked
    beat = r.hgetall(keys.feed_heartbeat(acct.name, 0))
    assert beat and beat["stalls"] == "0" and beat["reconnects"] == "0", beat
