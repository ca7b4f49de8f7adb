"""Account groups of the accounts file: one signal placed on every account of a group
(``common/fanout.py``).

```toml
[groups.family]
accounts = ["alice", "bob", "carol"]
multipliers = { bob = 2 }             # optional, default 1 (what Multiplier sizing scales by)
```

A group names accounts of the same file; its name may not be an account's (``place_order_group``
takes either a group name or account names, so the two must never mean different things). A
multiplier is a number > 0 (fractions too: a smaller account trades half). Every mistake is a
:class:`ConfigError` naming the field (``groups.family.accounts``, ``groups.family.multipliers.x``).

The table sits beside ``[accounts.*]`` and ``[strategies.*]``: the accounts parser
(``common/settings.py``) reads only ``accounts`` and ``strategies``, so it neither chokes on nor
mistakes a group for an account. Groups are read, like a strategy's limits (``common/risk.py``),
from the file the process's accounts came from, with no secret: a strategy loads them with the
accounts' public fields alone, on first use, and again whenever the accounts are re-read.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from common.accountsfile import per_reading
from common.errors import ConfigError
from common.settings import accounts

__all__ = ["Group", "group", "groups", "load_groups", "parse_groups"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")  # as an account's name: the two share one namespace
_FIELDS = frozenset({"accounts", "multipliers"})


@dataclass(frozen=True)
class Group:
    """A named list of accounts (file order) and their multipliers (1 unless the file says)."""

    name: str
    accounts: tuple[str, ...]
    multipliers: Mapping[str, Decimal] = field(default_factory=dict)

    def multiplier(self, account: str) -> Decimal:
        return self.multipliers.get(account, Decimal(1))


def _multiplier(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: must be a number > 0, got {value!r}")
    try:
        m = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{where}: must be a number > 0, got {value!r}") from None
    if not m.is_finite() or m <= 0:
        raise ConfigError(f"{where}: must be a number > 0, got {value!r}")
    return m


def _parse_group(name: str, t: Any, account_names: Collection[str], where: str) -> Group:
    if not _NAME.match(name):
        raise ConfigError(f"{where}: group names are 1-40 letters, digits, '_' or '-'")
    if name in account_names:
        raise ConfigError(f"{where}: {name!r} is also an account's name; a group needs a name of its own")
    if not isinstance(t, dict):
        raise ConfigError(f"{where}: must be a table like {{ accounts = [\"alice\", \"bob\"] }}")
    for key in t:
        if key not in _FIELDS:
            raise ConfigError(f"{where}.{key}: unknown field (a group has accounts and multipliers)")
    members = t.get("accounts")
    if not isinstance(members, list) or not all(isinstance(a, str) for a in members):
        raise ConfigError(f"{where}.accounts: required, a list of account names like [\"alice\", \"bob\"]")
    if not members:
        raise ConfigError(f"{where}.accounts: empty; a group has at least one account")
    for a in members:
        if a not in account_names:
            raise ConfigError(f"{where}.accounts: {a!r} is not an account of the accounts file")
    dup = sorted({a for a in members if members.count(a) > 1})
    if dup:
        raise ConfigError(f"{where}.accounts: {dup[0]!r} is listed twice (it would get the order twice)")
    raw = t.get("multipliers", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}.multipliers: must be a table like {{ bob = 2 }}")
    multipliers = {}
    for a, v in raw.items():
        if a not in members:
            raise ConfigError(f"{where}.multipliers.{a}: {a!r} is not an account of the group")
        multipliers[a] = _multiplier(v, f"{where}.multipliers.{a}")
    return Group(name, tuple(members), multipliers)


def parse_groups(table: Any, account_names: Collection[str]) -> dict[str, Group]:
    """The accounts file's ``[groups.<name>]`` tables, checked against its account names."""
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError("groups: must be tables [groups.<name>]")
    return {name: _parse_group(name, t, account_names, f"groups.{name}") for name, t in table.items()}


def load_groups(path: str | Path, account_names: Collection[str]) -> dict[str, Group]:
    """The groups of the accounts file at ``path`` (no secret is read)."""
    try:
        doc = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"BROKERGATE_ACCOUNTS: accounts file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_groups(doc.get("groups"), account_names)


# The process's groups, read from its accounts file the first time and again whenever the accounts
# are (accounts that do not load raise their ConfigError here).
groups = per_reading(lambda path: load_groups(path, accounts()))


def group(name: str) -> Group:
    """The group ``name``; ConfigError naming it when the accounts file has no such group."""
    try:
        return groups()[name]
    except KeyError:
        raise ConfigError(f"group {name!r} is not in the accounts file (no [groups.{name}] table)") from None
