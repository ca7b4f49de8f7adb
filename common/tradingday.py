"""An account's trading day: its local date (the account's time zone) at a moment of Redis's clock.
What a daily login belongs to, when yesterday's orders and instrument master go stale, and
whether a contract has expired."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from common.settings import Account

__all__ = ["day_start_ms", "local_date"]


def local_date(acct: Account, now_ms: int) -> date:
    """The account's local date at ``now_ms`` (epoch ms)."""
    return datetime.fromtimestamp(now_ms / 1000, ZoneInfo(acct.timezone)).date()


def day_start_ms(acct: Account, now_ms: int) -> int:
    """Epoch ms of the local midnight that began the account's day of ``now_ms``."""
    tz = ZoneInfo(acct.timezone)
    return int(datetime.combine(local_date(acct, now_ms), time(0), tzinfo=tz).timestamp() * 1000)
