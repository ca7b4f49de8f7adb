"""The one counter of what the paper broker refused under the retail-algo rules of 2026 (docs/brokers.md
§ "The 2026 retail-algo rules"), by rule name: ``PaperState.rule_rejections``, served by
``GET /_paper/health`` as ``rule_rejections`` and read by ``PaperBroker.rule_rejections()``.

Each rule refuses in its broker's own answer shape, as the brokers do, and counts here once per refused
request, so a test (or ``make chaos``) can assert that brokergate never trips a rule: every count 0.
A new rule adds its name below and counts ``state.rule_rejections[NAME] += 1`` where it refuses.
"""

from __future__ import annotations

__all__ = ["MARKET_PROTECTION", "ORDERS_PER_SECOND", "ORDERS_PER_SECOND_LIMIT", "STATIC_IP"]

# An order request (endpoint class "orders") from a client address other than the user's registered_ip.
STATIC_IP = "static_ip"
# A MARKET or SL-M order (placed, or modified into one) without the broker's market protection, or
# at a broker that refuses them from API clients (each dialect's place and modify).
MARKET_PROTECTION = "market_protection"
# More than ORDERS_PER_SECOND_LIMIT order requests (endpoint class "orders": place, modify, cancel) in
# a sliding second from a user who is not a registered_algo (paper.gateway).
ORDERS_PER_SECOND = "orders_per_second"
ORDERS_PER_SECOND_LIMIT = 10

