"""Angel One SmartAPI defaults (docs/brokers.md § Angel One): real hosts and caps per endpoint class.

Limiter scope (docs/brokers.md § Angel One SmartAPI, **Caps (per client code; SmartAPI forum,
"Changes in API Rate Limit")**): counted per client code (``user_id``), whatever the API key
(``X-PrivateKey``), so two accounts tables of one client code share one limiter state. Each
endpoint group has its own caps (placeOrder/modifyOrder/cancelOrder 500/min, 1,000/hour; getOrderBook
1/s; ...): no budget shared across classes.

Orders per second: the forum's 20/s ("Changes in API Rate Limit") is above the exchanges' 2026
retail-algo rule of 10 orders per second per client (common/algorules.py), so the default is 10/s.
A reading of SmartAPI's current "Rate Limit" page (docs/brokers.md § Angel One) gave 9/s for the
three order calls together; not confirmed from a source we could cite, so not the default: an
account lowers it with ``caps = { orders = ["9/s", "500/min", "1000/hour"] }``.
"""

from common.brokers import COUNTED_PER_USER, BrokerSpec

SPEC = BrokerSpec(
    name="angel",
    rest_url="https://apiconnect.angelone.in",
    login_url="https://apiconnect.angelone.in",
    ws_url="wss://smartapisocket.angelone.in/smart-stream",
    order_ws_url="wss://tns.angelone.in/smart-order-update",
    caps={
        "orders": ["10/s", "500/min", "1000/hour"],
        "orderbook": ["1/s"],
        # getPosition, getTradeBook, getHolding, getAllHolding 1/s, getRMS 2/s (SmartAPI docs,
        # "Rate Limit", smartapi.angelone.in/docs): the account-state reads share the tightest.
        "portfolio": ["1/s"],
        # The margin calculator (margin/v1/batch) has its own: "Access Rate Limit: 10 request per
        # second" (SmartAPI forum, "Calculate Margin Requirements with SmartAPI's New Margin
        # Calculator API", smartapi.angelbroking.com/topic/4010).
        "margin": ["10/s"],
        "login": ["1/s"],
        "quote": ["10/s", "500/min", "5000/hour"],
        "historical": ["3/s", "500/min", "5000/hour"],
        "other": ["3/s"],
    },
    secrets=("password", "totp_secret"),
    caps_counted_per=COUNTED_PER_USER,
    read_classes={"margins": "margin"},
    extras={"client_local_ip": "str", "client_public_ip": "str", "mac_address": "str", "scrip_master_url": "str"},
    # "Market orders and IOC orders are now strictly prohibited for algorithmic trading" from
    # 1 April 2026 (Angel One, "What's Changing in Angel One's SmartAPI Access from April 1, 2026",
    # angelone.in, 25 Feb 2026). placeOrder has no market-protection field and Angel documents no
    # error for it: refused at the client (MARKET and STOPLOSS_MARKET); an account whose Angel
    # still takes them can say `extra.market_orders = "plain"`.
    market_orders="refused",
)
