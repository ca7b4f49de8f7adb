"""Where the golden data lives: a copy in the repo, so a fresh clone tests without ../shared.

``tests/data/kite/`` holds Zerodha's public mock payloads (zerodha/kiteconnect-mocks, commit
c7a8123) and ``tests/data/BROKERS.md`` the protocol facts the error-mapping tests walk.
"""

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
KITE_FIXTURES = DATA / "kite"
BROKERS_MD = DATA / "BROKERS.md"
