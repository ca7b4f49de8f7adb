"""brokergate's own market protection (common/marketprotection.py): an account whose broker refuses
market orders from API clients may choose ``extra.market_orders = "limit"``, and its MARKET orders
go out as LIMIT orders at the last price plus (or minus) ``market_protection_pct``: the strategy
keeps writing MARKET on every broker, and the broker never sees one."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from common import keys, orderstore
from common.client import place_order
from common.marketprotection import limit_price, protect
from common.models import Order, OrderType, Side
from common.redis import get_redis
from devtools.waiting import wait_for
from tests.brokers import ready
from tests.fixtures.accounts import paper_user_of
from tests.orders.helpers import order_requests

D = Decimal


def test_the_limit_is_the_band_beyond_the_reference_on_the_tick_grid() -> None:
    assert limit_price(Side.BUY, D("1570.00"), D("1.0"), D("0.05")) == D("1585.70")
    assert limit_price(Side.BUY, D("100.02"), D("1.0"), D("0.05")) == D("101.05")  # never under the band
    assert limit_price(Side.SELL, D("100.02"), D("1.0"), D("0.05")) == D("99.00")  # never over it
    assert limit_price(Side.SELL, D("0.05"), D("50"), D("0.05")) == D("0.05")  # never below a tick


def test_an_sl_m_goes_out_as_an_sl_beyond_its_trigger(r: Any) -> None:
    o = Order(account="a", exchange="NSE", symbol="INFY", side="SELL", quantity=1, order_type="SL-M",
              trigger_price="1500")
    wire = protect(r, o, None, D("2"))
    assert (wire.order_type, wire.trigger_price, wire.price) == (OrderType.SL, D(1500), D("1470.00"))


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["angel", "shoonya"])
def test_a_market_order_reaches_a_refusing_broker_as_a_protected_limit(broker: str, make_accounts: Any,
                                                                      celery_workers: Any, paper: Any) -> None:
    """Given an account of a broker that refuses market orders, set to brokergate's protection, and
    the real feed streaming INFY, When the strategy places a MARKET buy, Then the broker gets a LIMIT
    1% over the feed's last price, it fills, and the order records what it went out as; with no last
    price (TCS, not streamed) the order is refused (REJECTED, naming the missing price), never sent."""
    from common.ticks import subscribe
    from feed.supervisor import Feed

    accts = make_accounts(**{"kite": 0, "angel": 0, broker: 1}, extra={"market_orders": "limit"})
    acct = ready(accts[f"{broker}1"])
    user = paper_user_of(acct).user_id
    celery_workers.start([keys.urgent_queue(acct.name), keys.orders_queue(acct.name)])
    r = get_redis()
    feed = Feed({acct.name: acct}, r, heartbeat_s=0.1, backoff_base_s=0.05, token_poll_s=0.5)
    feed.start()
    try:
        subscribe(["NSE:INFY"], "ltp", account=acct.name, r=r)
        wait_for(lambda: r.hget(keys.LTP, "NSE:INFY"), 20, what="a live INFY price")
        h = place_order(account=acct.name, exchange="NSE", symbol="INFY", side="BUY", quantity=1)
        got = h.wait(15)
        assert got["state"] in ("OPEN", "COMPLETE"), got  # Shoonya's fills come on the feed's socket
        kind, price = got["sent_as"].split()
        assert got["request"]["order_type"] == "MARKET" and kind == "LIMIT"
        at_broker = wait_for(lambda: [o for o in paper.orders() if o["tag"] == h.id and o["status"] == "COMPLETE"],
                             10, what="the protected order filled at the broker")[0]
        assert at_broker["order_type"] in ("LIMIT", "LMT") and D(str(at_broker["price"])) == D(price)
        assert at_broker["average_price"] < at_broker["price"]
    finally:
        feed.stop()
    assert paper.rule_rejections() == {}
    blind = place_order(account=acct.name, exchange="NSE", symbol="TCS", side="BUY", quantity=1)
    wait_for(lambda: (blind.get() or {}).get("state") == "REJECTED", 15, what="the blind market order refused")
    assert "last price" in orderstore.get(r, blind.id)["error"]
    assert not [e for e in order_requests(paper.requests(), user) if e["tag"] == blind.id]
