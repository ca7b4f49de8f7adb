"""What else the accounts file holds (a strategy's limits and algo id, the groups), read without a
secret and again only when the process reads its accounts again (:func:`common.settings.accounts`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from common.algorules import read_algo_ids
from common.errors import ConfigError
from common.settings import accounts, settings

__all__ = ["algo_ids", "per_reading"]

T = TypeVar("T")


def per_reading(derive: Callable[[str], T]) -> Callable[[], T]:
    """``derive(the accounts file's path)``, derived again only when the process reads its accounts
    again (accounts that do not load count as a reading of their own)."""
    cached: list[tuple[object, T]] = []

    def get() -> T:
        try:
            reading: object = accounts()
        except ConfigError:
            reading = None
        if not cached or cached[0][0] is not reading:
            cached[:] = [(reading, derive(settings().accounts_path))]
        return cached[0][1]

    return get


algo_ids = per_reading(read_algo_ids)  # each strategy's exchange algo id (common/algorules.py)
