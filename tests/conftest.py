"""Test harness: every module in tests/fixtures/ is a pytest plugin (private Redis, paper broker,
accounts, Celery workers), and so is tests/brokers.py (end-to-end tests parametrized over the
registered brokers), so any test can ask for those fixtures by name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Fixture modules import each other; rewrite their asserts whichever loads first.
pytest.register_assert_rewrite("tests.fixtures")

# Tests never read the developer's .env or accounts file by accident.
os.environ.setdefault("BROKERGATE_ACCOUNTS", str(Path(__file__).parent / "data" / "accounts.toml"))

pytest_plugins = [
    *sorted(f"tests.fixtures.{p.stem}" for p in (Path(__file__).parent / "fixtures").glob("*.py") if p.stem != "__init__"),
    "tests.brokers",  # the `broker` fixture: end-to-end tests parametrized over every registered broker
]
