"""What configuration needs before talking to the broker: real hosts, caps, limiter scope.

Every value with its source in docs/brokers.md (a cap the broker does not publish is a guess:
say so). ``caps`` maps an endpoint class (``orders``, ``orderbook``, ``login``, ...) to caps like
``"10/s"``; ``caps_counted_per`` says whose requests the broker counts together.
"""

from common.brokers import COUNTED_PER_USER, BrokerSpec

SPEC = BrokerSpec(
    name="template",
    rest_url="https://api.example.invalid",
    login_url="https://login.example.invalid",
    ws_url="wss://feed.example.invalid",
    order_ws_url="",  # a socket of its own for order updates, if the broker has one
    caps={"orders": ["10/s"], "orderbook": ["1/s"], "login": ["1/s"]},
    caps_counted_per=COUNTED_PER_USER,
)
