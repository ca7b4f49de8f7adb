"""This process's environment changed for a while (benchmarks, the demo): ``common`` caches its
settings, accounts and Redis clients for the process's life, so each change is followed by
:func:`reset_process_caches`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def reset_process_caches() -> None:
    """Make this process read its settings, its accounts file and its Redis address again."""
    from common import redis as bg_redis
    from common import settings as bg_settings

    bg_settings.settings.cache_clear()
    bg_settings.accounts.cache_clear()
    bg_redis.reset_clients()


def restore(saved: dict[str, str | None]) -> None:
    """Put back the variables ``saved`` holds (None: it was unset)."""
    for name, old in saved.items():
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` for the duration, then as it was; the caches follow it."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    reset_process_caches()
    try:
        yield
    finally:
        restore(saved)
        reset_process_caches()
