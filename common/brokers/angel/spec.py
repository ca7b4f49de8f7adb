"""Angel One SmartAPI defaults (docs/brokers.md § Angel One): real hosts and caps per endpoint class."""

from common.brokers import BrokerSpec

SPEC = BrokerSpec(
    name="angel",
    rest_url="https://apiconnect.angelone.in",
    login_url="https://apiconnect.angelone.in",
    ws_url="wss://smartapisocket.angelone.in/smart-stream",
    order_ws_url="wss://tns.angelone.in/smart-order-update",
    caps={
        "orders": ["20/s", "500/min", "1000/hour"],
        "orderbook": ["1/s"],
        "login": ["1/s"],
        "quote": ["10/s", "500/min", "5000/hour"],
        "historical": ["3/s", "500/min", "5000/hour"],
        "other": ["3/s"],
    },
    secrets=("password", "totp_secret"),
)
