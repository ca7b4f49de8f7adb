"""``brokergate halt`` and ``brokergate resume``: the kill switch (common/safety.py).

    brokergate halt --all --reason "runaway strategy"              # every account, present and future
    brokergate halt --account acct1 --account acct2 --square-off --reason "daily loss"
    brokergate resume --all

``halt`` prints what it did (cancels and square-off orders enqueued) and exits 0; 1 when a cancel
or an exit could not be enqueued (listed), so a script can tell.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_commands"]

EXIT_OK, EXIT_ERROR = 0, 1


def _targets(args: argparse.Namespace) -> list[str] | None:
    if args.all == bool(args.account):
        raise SystemExit("give --all or at least one --account")
    return None if args.all else list(args.account)


def _cmd_halt(args: argparse.Namespace) -> int:
    from common.safety import halt

    report = halt(_targets(args), args.reason, square_off=args.square_off, by="cli")
    doc = {"accounts": report.accounts, "at_ms": report.at_ms, "dropped": report.dropped,
           "cancels": report.cancels, "exits": report.exits, "errors": report.errors}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"HALTED {', '.join(report.accounts) or '(no account configured)'}: {args.reason}")
        print(f"  queued entries refused: {report.dropped}")
        print(f"  cancels enqueued on the urgent lane: {len(report.cancels)}")
        if args.square_off:
            print(f"  square-off orders placed: {len(report.exits)}")
        for e in report.errors:
            print(f"  NOT DONE: {e}")
    return EXIT_ERROR if report.errors else EXIT_OK


def _cmd_resume(args: argparse.Namespace) -> int:
    from common.safety import resume

    lifted = resume(_targets(args), by="cli")
    print(f"RESUMED {', '.join('every account' if s == '*' else s for s in lifted)}")
    return EXIT_OK


def add_commands(sub: Any) -> None:
    s = sub.add_parser("halt", help="the kill switch: no entry is sent, open orders are cancelled")
    s.add_argument("--account", action="append", default=[], help="an account to halt (repeat)")
    s.add_argument("--all", action="store_true", help="every account, present and future")
    s.add_argument("--square-off", action="store_true", help="also close every open position at market")
    s.add_argument("--reason", required=True, help="why (shown by status, recorded on refused orders)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_cmd_halt)
    s = sub.add_parser("resume", help="lift a halt")
    s.add_argument("--account", action="append", default=[])
    s.add_argument("--all", action="store_true", help="lift every halt")
    s.set_defaults(func=_cmd_resume)
