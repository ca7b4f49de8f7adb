"""Where the golden data lives: a copy in the repo, so a fresh clone tests without anything beside it.

``tests/data/kite/`` holds Zerodha's public mock payloads (zerodha/kiteconnect-mocks, commit
c7a8123); ``docs/brokers.md``, the broker notes every adapter cites, holds the protocol facts
the error-mapping tests walk (so the notes and the error maps cannot drift apart).
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
KITE_FIXTURES = DATA / "kite"
BROKERS_MD = REPO / "docs" / "brokers.md"
