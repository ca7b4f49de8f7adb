"""Order tests. Fixtures come from tests/fixtures/* (registered as plugins by tests/conftest.py):
redis, paper broker, accounts, and Celery workers (tests/fixtures/workers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.orders.helpers import KiteRecorder


@pytest.fixture
def kite_recorder(r: Any) -> Iterator[KiteRecorder]:
    """A Kite REST stand-in that answers every order and notes when each arrived."""
    recorder = KiteRecorder(r)
    yield recorder
    recorder.close()
