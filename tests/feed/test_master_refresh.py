"""A subscription made before the instrument master existed resolves when the master lands."""

from __future__ import annotations

import time

from common import keys
from common.instruments import store
from common.models import Instrument


def test_a_master_refresh_announces_itself_to_the_feed(r) -> None:
    # Given a listener on the feed's control channel (as the running feed has)
    pubsub = r.pubsub()
    pubsub.subscribe(keys.FEED_CONTROL)
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    # When the account's instrument master is stored
    store("acct1", [Instrument("NSE", "INFY", "408065")], r=r)
    # Then the feed is told to re-map that account's subscriptions
    deadline = time.monotonic() + 5
    msg = None
    while msg is None and time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.5)
    assert msg is not None and msg["data"] == "acct1"
    pubsub.close()
