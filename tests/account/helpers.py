"""The paper broker in this process, for the account-state tests that read its books
(paper/portfolio.py) straight off its state, and accounts written for it as a real accounts file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools.paperbroker import PaperBroker
from paper.state import PaperState


@dataclass
class InProcessPaper:
    state: PaperState  # its books and prices, at hand
    url: str
    broker: PaperBroker  # the control client (users, request log)


@contextmanager
def in_process_paper(seed: int = 7) -> Iterator[InProcessPaper]:
    """The paper broker's app on uvicorn in a thread of this process, listening on a free port;
    its prices move only when something steps them (``state.prices``)."""
    from feed.postback import serve_in_thread
    from paper.app import create_app
    from paper.server import uvicorn_kwargs

    state = PaperState(seed=seed)
    kwargs = {k: v for k, v in uvicorn_kwargs().items() if k != "access_log"}  # serve_in_thread sets it
    server = serve_in_thread(create_app(state), **kwargs)
    broker = PaperBroker(server.url)
    try:
        yield InProcessPaper(state, server.url, broker)
    finally:
        broker.http.close()
        server.stop()


@contextmanager
def accounts_at(paper: InProcessPaper, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                **counts: Any) -> Iterator[dict[str, Any]]:
    """Accounts at ``paper`` (``AccountsWriter.make(**counts)``: users registered, the file and its
    variables written), as ``make_accounts`` makes them at the shared paper broker; brokergate's
    settings caches cleared after."""
    from common import settings as bg_settings
    from devtools.accounts import AccountsWriter

    try:
        yield AccountsWriter(paper.broker, tmp_path / "accounts.toml", monkeypatch.setenv).make(**counts)
    finally:
        bg_settings.settings.cache_clear()
        bg_settings.accounts.cache_clear()
