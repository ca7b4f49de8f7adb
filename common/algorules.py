"""The exchanges' 2026 retail-algo rules that brokergate's configuration keeps (docs/brokers.md § "The
2026 retail-algo rules"): at most ``ORDERS_PER_SECOND`` order requests per second per client unless
the strategy is registered with the exchange, and the exchange algo id a registered strategy carries.

**Orders per second.** The limiter already counts per client (``Account.limit_scope``: every account
of one client, and every strategy, shares one state), so the rule is a bound on the ``orders`` caps:
an account whose caps let more than ``ORDERS_PER_SECOND`` order requests through in some 1 s is
refused at load unless it says ``registered_algo = true``. A cap of ``n`` per ``w`` seconds lets
``n`` through in one second when ``w >= 1`` (a second lies inside one of its windows, and a burst
may come at once), and ``n * ceil(1 / w)`` when ``w < 1``; the caps of a class (and a shared
budget's, which orders count in too) all hold, so the most in any second is the smallest of those.
So "20/s" and a lone "1200/min" are refused, "10/s" with "1200/min" is not. Place, modify and cancel
all count: they are all order requests to the broker, and the brokers' own 10/s covers them together.

**Algo id.** ``[strategies.<name>]`` may carry ``algo_id``: the id the exchange issued for that
registered strategy. It goes out on orders where the broker's API takes one (each broker's
translate decides, on placement); elsewhere there is no field to carry it (docs/brokers.md).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Protocol

from common.brokers import SHARED_BUDGET
from common.errors import ConfigError

__all__ = ["ALGO_ID", "ORDERS_PER_SECOND", "algo_id_of", "check_clients", "most_in_one_second", "parse_algo_id", "read_algo_ids",
           "registered_algo"]

ORDERS_PER_SECOND: Final = 10
ALGO_ID: Final = "algo_id"  # the key of a [strategies.<name>] table
_ALGO_ID = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")  # no published format: printable, no spaces
RULE = ("the exchanges' 2026 retail-algo rules allow at most 10 orders per second per client per exchange "
        "unless the strategy is registered with the exchange")


class _Cap(Protocol):
    @property
    def count(self) -> int: ...
    @property
    def period_s(self) -> int: ...


def most_in_one_second(caps: Iterable[_Cap]) -> int | None:
    """The most requests these caps let through in any 1 s (None: no cap, no bound)."""
    bounds = [c.count * (1 if c.period_s >= 1 else math.ceil(1 / c.period_s)) for c in caps]
    return min(bounds) if bounds else None


def registered_algo(table: dict[str, Any], where: str, caps: Mapping[str, tuple[_Cap, ...]]) -> bool:
    """The account's ``registered_algo`` (default false: its orders come from no strategy registered
    with the exchange), after checking its caps (the parsed ``caps`` by class) against the rule:
    ConfigError naming the account, its order caps and the rule when they let more than
    ``ORDERS_PER_SECOND`` order requests through in one second and it is not a registered algo."""
    value = table.get("registered_algo", False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.registered_algo: must be true or false, got {value!r}")
    orders = caps.get("orders") or caps.get("other", ())
    most = most_in_one_second(orders + caps.get(SHARED_BUDGET, ()))
    if value or (most is not None and most <= ORDERS_PER_SECOND):
        return value
    shown = "[" + ", ".join(f'"{c}"' for c in orders) + "]" if orders else "no cap"
    let = f"let up to {most} order requests through in one second" if most is not None else "set no bound"
    raise ConfigError(f"{where}.caps.orders: {shown} {let}; {RULE}: cap the orders at \"10/s\" or less, "
                      "or, for a strategy registered with the exchange, set registered_algo = true on the account")


def check_clients(accounts: Iterable[Any]) -> None:
    """The rule counts per client, and so does the limiter, except at a broker that counts per app
    (``BrokerSpec.caps_counted_per``): there one client's accounts on several apps hold a limiter
    state each, so together they could send more than one account may. ConfigError naming them
    when the order caps of one client's unregistered accounts, one per limiter state, add up to
    more than ``ORDERS_PER_SECOND`` in one second."""
    clients: dict[tuple[str, str], dict[str, tuple[str, int | None]]] = {}
    for a in accounts:
        if not a.registered_algo:
            most = most_in_one_second(a.caps_for("orders") + a.shared_caps())
            clients.setdefault((a.broker, a.user_id), {}).setdefault(a.limit_scope(), (a.name, most))
    for (broker, user_id), scopes in clients.items():
        if len(scopes) < 2:
            continue
        names = ", ".join(f"accounts.{name}" for name, _ in scopes.values())
        bounds = [most for _, most in scopes.values()]
        total = None if None in bounds else sum(b for b in bounds if b is not None)
        if total is not None and total <= ORDERS_PER_SECOND:
            continue
        together = "with no bound" if total is None else f"up to {total} order requests"
        raise ConfigError(
            f"{names}: {broker} client {user_id!r} on {len(scopes)} apps, each limited on its own, sends "
            f"{together} in one second together; {RULE}: split 10/s between their caps.orders (e.g. \"5/s\" "
            "each), or set registered_algo = true for a registered strategy")


def parse_algo_id(value: Any, where: str) -> str:
    """A strategy's exchange algo id: 1 to 64 printable characters without spaces."""
    if not isinstance(value, str) or not _ALGO_ID.match(value):
        raise ConfigError(f"{where}.{ALGO_ID}: the exchange's algo id, 1 to 64 letters, digits or '_.:/-', "
                          f"got {value!r}")
    return value


def strategies_table(path: str | Path) -> Any:
    """The ``strategies`` table of the accounts file at ``path`` as written, read without a secret
    (None when the file is missing or not TOML: the accounts' own load reports that, naming it)."""
    try:
        return tomllib.loads(Path(path).read_text()).get("strategies")
    except (FileNotFoundError, tomllib.TOMLDecodeError):
        return None


def read_algo_ids(path: str | Path) -> dict[str, str]:
    """The ``algo_id`` of each strategy in the accounts file at ``path`` that has one."""
    table = strategies_table(path)
    if not isinstance(table, dict):
        return {}
    return {name: parse_algo_id(t[ALGO_ID], f"strategies.{name}")
            for name, t in table.items() if isinstance(t, dict) and ALGO_ID in t}


def algo_id_of(strategy: str) -> str:
    """The exchange algo id of ``strategy`` in the accounts file ("" when it has none), read again
    whenever the accounts are (``accountsfile.algo_ids``)."""
    if not strategy:
        return ""
    from common.accountsfile import algo_ids  # which imports this module

    return algo_ids().get(strategy, "")
