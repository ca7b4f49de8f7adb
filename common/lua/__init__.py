"""Redis Lua scripts, one ``.lua`` file each; every file's header names its KEYS and ARGV.

:class:`LuaScript` runs a script by SHA and loads it again when the server does not know it
(a restarted or different Redis), so callers never see ``NOSCRIPT``.
"""

from __future__ import annotations

import hashlib
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
