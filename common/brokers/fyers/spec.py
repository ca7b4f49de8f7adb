"""Fyers API v3 defaults (docs/brokers.md § Fyers): real hosts and caps per endpoint class.

Limiter scope (docs/brokers.md § Fyers API v3: "Caps 10/s, 200/min, 100,000/day", one set of
limits, not per endpoint; issue 15 item 5: "per app across every endpoint"): every API call of
an app counts against one budget. So the limits are a shared budget (``shared_caps``) that a
request of ANY class also counts in (orders at their cap plus order-book reads would exceed it
otherwise), counted per app (``api_key``, the app id ``XXXX-100``): two accounts tables on one
app share one limiter state. docs/brokers.md does not say whether one user's several apps also share
it; an account can lower the ``all`` caps if they do. Each class keeps the same caps as its own
(an account can narrow one class without touching the rest). The login runs on the ``vagator``
auth host (``api-t2``), everything else on ``api-t1``; the login's 1/s is ours, and it counts in
the shared budget too, which is the safe side.
"""

from common.brokers import COUNTED_PER_APP, BrokerSpec

_APP_LIMITS = ["10/s", "200/min", "100000/day"]

SPEC = BrokerSpec(
    name="fyers",
    rest_url="https://api-t1.fyers.in",
    login_url="https://api-t2.fyers.in",
    ws_url="wss://socket.fyers.in/hsm/v1-5/prod",
    order_ws_url="wss://socket.fyers.in/trade/v3",
    caps={
        "orders": list(_APP_LIMITS),
        "orderbook": list(_APP_LIMITS),
        "quote": list(_APP_LIMITS),
        "historical": list(_APP_LIMITS),
        "login": ["1/s"],
        "other": list(_APP_LIMITS),
    },
    caps_counted_per=COUNTED_PER_APP,
    shared_caps=list(_APP_LIMITS),
    # password is the 4-digit PIN of the Fyers login; api_secret the app's secret (appIdHash)
    secrets=("password", "totp_secret", "api_secret"),
    extras={"redirect_uri": "str", "symbol_masters": "list[str]"},
    # "Market orders will be converted to MPP (Market Price Protection) orders" from 1 April 2026
    # (support.fyers.in, "What are the new SEBI rules for retail algo trading from April 01, 2026?"):
    # Fyers protects them itself; the place request has no protection field (fyers-apiv3 3.2.0 has
    # `mpp` on smart orders only), so MARKET and SL-M are sent as they are.
    market_orders="plain",
)
