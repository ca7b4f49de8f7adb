"""Fyers API v3 defaults (docs/brokers.md § Fyers): real hosts and caps per endpoint class.

Fyers counts every API call of an app against one set of limits (10/s, 200/min, 100,000/day),
so each endpoint class gets the same caps; an account can narrow them. The login runs on the
``vagator`` auth host (``api-t2``), everything else on ``api-t1``.
"""

from common.brokers import BrokerSpec

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
    # password is the 4-digit PIN of the Fyers login; api_secret the app's secret (appIdHash)
    secrets=("password", "totp_secret", "api_secret"),
)
