"""``brokergate positions|holdings|funds|trades ACCOUNT``: an account's state, as strategies read it.

From Redis (``common/accountstate.py``); ``--max-age-s N`` reads the broker first when the
snapshot is older than N seconds (0: now), through the account's limiter like every read.
``--json`` prints one document: the items and the snapshot's age.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_commands"]

EXIT_OK, EXIT_ERROR = 0, 1

_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "positions": (("instrument", ""), ("product", "product"), ("qty", "quantity"), ("avg", "average_price"),
                  ("last", "last_price"), ("realised", "realised_pnl"), ("unrealised", "unrealised_pnl")),
    "holdings": (("instrument", ""), ("qty", "quantity"), ("t1", "t1_quantity"), ("avg", "average_price"),
                 ("last", "last_price"), ("p&l", "pnl")),
    "trades": (("trade", "trade_id"), ("order", "broker_order_id"), ("instrument", ""), ("side", "side"),
               ("qty", "quantity"), ("price", "price"), ("time", "fill_time")),
}


def _cmd(args: argparse.Namespace) -> int:
    from common import accountstate
    from common.errors import BrokerGateError

    try:
        snap = accountstate.get(args.account, args.kind, args.max_age_s)
    except BrokerGateError as e:
        print(f"{args.kind} of {args.account}: {e}")
        return EXIT_ERROR
    doc = snap.to_dict()
    if args.json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    age = "never read from the broker" if snap.age_s is None else f"read from the broker {snap.age_s:.1f} s ago"
    if args.kind == "funds":
        _print_funds(args.account, doc["items"], age)
    else:
        _print_rows(args.kind, args.account, doc["items"] or [], age)
    return EXIT_OK


def _print_rows(kind: str, account: str, rows: list[dict[str, Any]], age: str) -> None:
    from brokergate.cli import print_table

    cols = _COLUMNS[kind]
    print_table(f"{kind.capitalize()} of {account} ({len(rows)}; {age})", [title for title, _ in cols],
                ([f"{row['exchange']}:{row['symbol']}" if not field else row.get(field, "")
                  for _, field in cols] for row in rows))  # fmt: skip


def _print_funds(account: str, funds: dict[str, Any] | None, age: str) -> None:
    if funds is None:
        print(f"Funds of {account}: none ({age})")
        return
    print(f"Funds of {account} ({age})")
    print(f"  available cash {funds['available_cash']}  used margin {funds['used_margin']}  "
          f"available margin {funds['available_margin']}")
    for name, seg in (funds.get("segments") or {}).items():
        print(f"  {name}: available cash {seg['available_cash']}  used {seg['used_margin']}  "
              f"available {seg['available_margin']}")


def add_commands(sub: Any) -> None:
    for kind in ("positions", "holdings", "funds", "trades"):
        s = sub.add_parser(kind, help=f"an account's {kind}, from Redis (--max-age-s reads the broker first)")
        s.add_argument("account")
        s.add_argument("--max-age-s", type=float, default=None,
                       help="read the broker first when the snapshot is older than this (0: always)")
        s.add_argument("--json", action="store_true")
        s.set_defaults(func=_cmd, kind=kind)
