"""Kite Connect defaults (docs/brokers.md § Zerodha): real hosts and caps per endpoint class.

Limiter scope (docs/brokers.md § Zerodha Kite Connect v3, **Caps**): "Orders 10/s, 400/min,
5,000/day, counted per user (client id) across all of that user's API keys" (Zerodha's answers
on the Kite forum, 2024-2025): counted per user, so two accounts tables of one client id (two
API keys) share one limiter state. Quote 1/s, historical 3/s and every other endpoint 10/s are
caps of their own endpoints; nothing says they share a budget with orders, so no shared budget.
"""

from common.brokers import COUNTED_PER_USER, BrokerSpec

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
    caps_counted_per=COUNTED_PER_USER,
    # The trade book (/trades) is read with the order book's reads (its "orderbook" budget), as
    # the paper broker counts it: reading both at full rate must not add up to twice the cap.
    read_classes={"trades": "orderbook"},
    # Since 1 April 2026 MARKET and SL-M orders need `market_protection` (-1 or 0 < p <= 100); without
    # it Kite answers InputException "Market orders without market protection are not allowed via
    # API. ..." (kite.trade forum, "Preparing to comply with SEBI's retail algo rules", and comment
    # 52991); translate.py sends -1, Kite's automatic band, on place and modify.
    market_orders="protected",
)
