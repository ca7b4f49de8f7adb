"""Finvasia Shoonya defaults (docs/brokers.md § Finvasia Shoonya): real hosts and caps per endpoint class.

Finvasia publishes no per-endpoint request caps for the Noren API (its documentation and the
NorenRestApiPy README are silent), so the defaults are conservative: 10/s for orders, as at
Kite, and lower for the rest. Every cap is configuration: raise them per account when Finvasia
tells you more.

Limiter scope: docs/brokers.md § Finvasia Shoonya says nothing on caps, so nothing on who they are
counted for either. Counted per user (``uid``), the safe reading (a user's several vendor codes
never add capacity), and each class on its own, as the defaults above are set.
"""

from common.brokers import COUNTED_PER_USER, BrokerSpec

SPEC = BrokerSpec(
    name="shoonya",
    # The REST paths carry their /NorenWClientTP prefix (rest.py), so the root is the host alone
    # and a paper broker serves the same paths under its own root.
    rest_url="https://api.shoonya.com",
    login_url="https://api.shoonya.com",
    ws_url="wss://api.shoonya.com/NorenWSTP/",
    caps={
        "orders": ["10/s", "400/min"],
        "orderbook": ["5/s"],
        "login": ["1/s"],
        "quote": ["5/s"],
        "other": ["5/s"],
    },
    caps_counted_per=COUNTED_PER_USER,
    # api_key is the vendor code (vc); api_secret is the API key hashed into "appkey".
    secrets=("password", "totp_secret", "api_secret"),
    extras={"imei": "str", "symbols_url_root": "str", "symbol_exchanges": "list[str]"},
    # The trade book is a book like the order book (the same defaults as the order book's reads,
    # and the paper broker counts them together): a strategy reading both at full rate stays in it.
    read_classes={"trades": "orderbook"},
    # Shoonya refuses MKT (and, reportedly, SL-MKT) price types from API clients since April 2026:
    # {"stat": "Not_Ok", "emsg": "Rejected : ALGO_CHK: MKT Order type not allowed for API order"}
    # (reported live by several public integrations; Finvasia published no announcement we found,
    # nor that `mkt_protection` makes them acceptable): refused at the client; an account whose
    # Shoonya takes them can say `extra.market_orders = "plain"`.
    market_orders="refused",
)
