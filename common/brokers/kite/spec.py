"""Kite Connect defaults (docs/brokers.md § Zerodha): real hosts and caps per endpoint class."""

from common.brokers import BrokerSpec

SPEC = BrokerSpec(
    name="kite",
    rest_url="https://api.kite.trade",
    login_url="https://kite.zerodha.com",
    ws_url="wss://ws.kite.trade",
    # Orders are counted per user across all of the user's API keys, invalid ones too.
    caps={
        "orders": ["10/s", "400/min", "5000/day"],
        "quote": ["1/s"],
        "historical": ["3/s"],
        "orderbook": ["10/s"],
        "other": ["10/s"],
    },
)
