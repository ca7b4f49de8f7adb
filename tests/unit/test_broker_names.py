"""A strategy never knows which broker it trades on: broker names live only under
common/brokers/<broker>/, paper/ (the stand-in broker), configuration and tests."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BROKER_WORDS = re.compile(r"kite|zerodha|angel|smartapi|smart-stream|fyers|shoonya|finvasia|noren", re.I)
# Product code that must stay broker-neutral. bench/ is not product code: its anchors are the
# brokers' own official clients (a Kite decoder is measured against KiteTicker's), like tests.
NEUTRAL = ["brokergate", "common", "workers", "beat", "feed", "examples"]
ALLOWED = [ROOT / "common" / "brokers"]


def test_no_broker_name_outside_the_broker_packages() -> None:
    offenders = []
    for top in NEUTRAL:
        for path in (ROOT / top).rglob("*.py"):
            if any(path.is_relative_to(a) for a in ALLOWED):
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if BROKER_WORDS.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "broker names outside common/brokers/:\n" + "\n".join(offenders)
