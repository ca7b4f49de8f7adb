"""Test harness: a private redis-server per session (tests/fixtures/redis.py) and the paper broker."""

from __future__ import annotations

import os

# Tests never read the developer's .env or accounts file by accident.
os.environ.setdefault("BROKERGATE_ACCOUNTS", os.path.join(os.path.dirname(__file__), "data", "accounts.toml"))

pytest_plugins = ["tests.fixtures.redis"]
