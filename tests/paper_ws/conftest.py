"""Fixtures of the WebSocket tests, on the session's ``python -m paper`` (tests/fixtures/paper.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.paper import PaperBroker
from tests.paper_ws.helpers import WSBroker


@pytest.fixture
def broker(paper: PaperBroker) -> Iterator[WSBroker]:
    """The session's paper broker, reset, with the tick clock running fast."""
    ws = WSBroker(paper)
    ws.ticks(interval_ms=20, paused=False)
    yield ws
    ws.ticks(paused=False)

