"""The publisher on a real Redis: every tick on its channel, the last prices in bg:ltp, in one
round trip per frame, with and without CLIENT REPLY."""

from __future__ import annotations

import pytest
import redis as redis_lib

from common import keys
from common.models import Tick
from common.ticks import decode_tick
from devtools.waiting import wait_for
from feed.publisher import Publisher


def _tick(symbol: str, ltp: int, exchange: str = "NSE") -> Tick:
    return Tick(exchange, symbol, 1, "ltp", 100, ltp)


@pytest.mark.parametrize("client_reply", [True, False], ids=["reply-off", "every-reply-read"])
def test_every_tick_is_published_and_the_last_prices_stored(r: redis_lib.Redis, client_reply: bool,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pub = Publisher(r)
    if not client_reply:  # a server (or proxy) without CLIENT REPLY
        monkeypatch.setattr(pub, "_takes_client_reply", lambda: False)
    sub = r.pubsub()
    sub.psubscribe("ticks:*")
    wait_for(lambda: sub.get_message(timeout=0.1) is not None, 5, "psubscribe confirmed")
    frame = [_tick(f"S{i}", 10_000 + i) for i in range(50)] + [_tick("ZZ", 5, exchange="")]
    for _ in range(3):  # the connection goes back to the pool in a state fit for the next frame
        assert pub.publish(frame) == 50
    got: list[Tick] = []

    def drained() -> bool:
        while (m := sub.get_message(timeout=0.1)) is not None:
            if m["type"] == "pmessage":
                got.append(decode_tick(m["data"]))
        return len(got) >= 150

    wait_for(drained, 5, "150 ticks on pub/sub")
    assert got[:50] == frame[:50]
    assert pub.unknown == 3 and pub.errors == 0 and pub.published == 150
    assert r.hget(keys.LTP, "NSE:S7") == "100.07"
    assert r.ping()  # replies are on again on the shared client
    sub.close()


def test_a_failing_last_price_write_is_seen(r: redis_lib.Redis) -> None:
    r.set(keys.LTP, "not a hash")
    pub = Publisher(r)
    assert pub.publish([_tick("A", 1)]) == 0
    assert pub.errors == 1
