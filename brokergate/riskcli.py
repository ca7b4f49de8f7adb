"""``brokergate risk show|set|clear``: the pre-trade risk limits (common/risk.py) at run time.

    brokergate risk show                              # every account and strategy
    brokergate risk show acct1                        # one account: limits, open orders, refusals
    brokergate risk show --strategy momentum
    brokergate risk set acct1 max_order_quantity=500 price_band_pct=5
    brokergate risk set --strategy momentum max_orders_per_minute=30
    brokergate risk set acct1 max_position=none       # lift a limit of the file until cleared
    brokergate risk clear acct1 max_position          # back to the file's (no limit named: all)

A change is one write to Redis: the next check of every client and worker meets it. Values are
checked as in the accounts file first; a bad one changes nothing and exits 2 naming it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_commands"]

EXIT_OK = 0


def _scope(args: argparse.Namespace) -> tuple[str, list[str]]:
    """The scope the command names and the words after it."""
    from common import risk
    from common.errors import ConfigError
    from common.risklimits import parse_strategies
    from common.settings import accounts

    words = list(args.words)
    if args.strategy:
        parse_strategies({args.strategy: {}}, "--strategy")  # the name as Order.strategy spells it
        return risk.strategy_scope(args.strategy), words
    if not words:
        raise ConfigError("give an ACCOUNT or --strategy NAME")
    name = words.pop(0)
    if name not in accounts():
        raise ConfigError(f"account {name!r} is not in the accounts file (known: {', '.join(sorted(accounts()))})")
    return risk.account_scope(name), words


def _all_scopes(r: Any) -> list[str]:
    from common import keys, risk
    from common.redis import as_text
    from common.settings import accounts

    found = [risk.account_scope(a) for a in sorted(accounts())]
    names = set(risk.strategies())
    prefix = keys.risk_limits(risk.strategy_scope(""))
    names |= {as_text(k)[len(prefix):] for k in r.scan_iter(match=f"{prefix}*", count=500)}
    return found + [risk.strategy_scope(s) for s in sorted(names)]


def _doc(scope: str, r: Any) -> dict[str, Any]:
    from common import keys, risk
    from common.redis import as_text

    sl = risk.scope_limits(scope, r)
    kind, _, name = scope.partition(":")
    now_ms = int(r.time()[0]) * 1000
    doc: dict[str, Any] = {"scope": scope, "file": sl.file.to_dict(), "run_time": sl.overrides,
                           "in_force": sl.in_force.to_dict(),
                           "orders_last_minute": r.zcount(keys.risk_rate(scope), now_ms - risk.RATE_WINDOW_MS, "+inf")}
    if kind == "account":
        stats = {as_text(k): int(v) for k, v in r.hgetall(keys.stats(name)).items()
                 if as_text(k).startswith("risk_")}
        doc.update(open_orders=r.scard(keys.risk_open(name)), refusals=stats)
    return doc


def _print(doc: dict[str, Any]) -> None:
    from brokergate.cli import print_table
    from common.risklimits import LIMITS, MEANING

    extra = f"; {doc['open_orders']} open orders" if "open_orders" in doc else ""
    print_table(f"Risk limits of {doc['scope']} ({doc['orders_last_minute']} orders in the last minute{extra})",
                ("limit", "file", "run time", "in force", "meaning"),
                ((k, doc["file"].get(k, "-"), doc["run_time"].get(k, ""), doc["in_force"].get(k, "-"), MEANING[k])
                 for k in LIMITS))  # fmt: skip
    if doc.get("refusals"):
        print("  refused: " + ", ".join(f"{k.removeprefix('risk_refused:')} {v}" for k, v in sorted(doc["refusals"].items())
                                        if k.startswith("risk_refused:")))


def _show(args: argparse.Namespace) -> int:
    from common.redis import get_redis

    r = get_redis()
    scopes = [_scope(args)[0]] if args.strategy or args.words else _all_scopes(r)
    docs = [_doc(s, r) for s in scopes]
    if args.json:
        print(json.dumps(docs, indent=2))
    else:
        for d in docs:
            _print(d)
    return EXIT_OK


def _set(args: argparse.Namespace) -> int:
    from common import risk
    from common.errors import ConfigError
    from common.redis import get_redis

    scope, words = _scope(args)
    pairs = {}
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key or not value:
            raise ConfigError(f"{w!r}: write LIMIT=VALUE, e.g. max_order_quantity=500 (or =none)")
        pairs[key.strip()] = value.strip()
    if not pairs:
        raise ConfigError("nothing to set: give LIMIT=VALUE ...")
    risk.set_limits(scope, pairs)
    _print(_doc(scope, get_redis()))
    return EXIT_OK


def _clear(args: argparse.Namespace) -> int:
    from common import risk
    from common.errors import ConfigError
    from common.redis import get_redis
    from common.risklimits import LIMITS

    scope, words = _scope(args)
    unknown = [w for w in words if w not in LIMITS]
    if unknown:
        raise ConfigError(f"{unknown[0]!r} is not a risk limit (known: {', '.join(LIMITS)})")
    risk.clear_limits(scope, words or None)
    _print(_doc(scope, get_redis()))
    return EXIT_OK


def add_commands(sub: Any) -> None:
    p = sub.add_parser("risk", help="pre-trade risk limits: show them, change them at run time")
    rs = p.add_subparsers(dest="risk_command", required=True)
    for name, func, words_help in (
        ("show", _show, "ACCOUNT (none: every account and strategy)"),
        ("set", _set, "ACCOUNT, then LIMIT=VALUE ... (VALUE none lifts the file's limit)"),
        ("clear", _clear, "ACCOUNT, then the limits whose run-time value to drop (none named: all)"),
    ):
        s = rs.add_parser(name, help=f"{name} risk limits")
        s.add_argument("words", nargs="*", help=words_help)
        s.add_argument("--strategy", default="", help="a strategy's limits instead of an account's")
        if name == "show":
            s.add_argument("--json", action="store_true")
        s.set_defaults(func=func)
