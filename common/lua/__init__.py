"""Redis Lua scripts, one ``.lua`` file each; every file's header names its KEYS and ARGV.

:class:`LuaScript` runs a script by SHA and loads it again when the server does not know it
(a restarted or different Redis), so callers never see ``NOSCRIPT``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis

__all__ = ["LuaScript", "script_text"]


@cache
def script_text(name: str) -> str:
    """The source of ``common/lua/<name>.lua``."""
    return resources.files(__package__).joinpath(f"{name}.lua").read_text()


class LuaScript:
    """One script, run with EVALSHA; any client, any server."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, r: redis.Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            return r.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            r.script_load(self.source)
            return r.evalsha(self.sha, len(keys), *keys, *args)

    def batch(self, r: redis.Redis, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """The script once per ``(keys, args)``, in one non-transactional pipeline: one round trip
        for many independent calls, each atomic on its own as with a call. Returns each call's
        reply, or the error it met (the others still ran)."""
        got = self._pipelined(r, calls)
        missing = [i for i, g in enumerate(got) if isinstance(g, redis.exceptions.NoScriptError)]
        if missing:  # a NOSCRIPT call did not run: load the script and run those again
            r.script_load(self.source)
            for i, again in zip(missing, self._pipelined(r, [calls[i] for i in missing]), strict=True):
                got[i] = again
        return got

    def _pipelined(self, r: redis.Redis, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        with r.pipeline(transaction=False) as p:
            for keys, args in calls:
                p.evalsha(self.sha, len(keys), *keys, *args)
            return list(p.execute(raise_on_error=False))
