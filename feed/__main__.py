"""``python -m feed``: one process streams ticks for every account of the accounts file, and runs
the order-update sockets of the brokers that push order updates on a socket of their own.

SIGTERM and SIGINT stop it cleanly (sockets closed, heartbeat keys removed).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from common.logs import setup_logging
from common.redis import get_redis
from common.settings import accounts, settings
from feed.order_socket import start_order_sockets
from feed.supervisor import Feed

log = logging.getLogger("feed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feed", description=__doc__)
    parser.add_argument("--account", action="append", help="only these accounts (repeatable)")
    parser.add_argument("--watchdog-s", type=float, default=None, help="override the broker's watchdog timeout")
    args = parser.parse_args(argv)
    s = settings()
    setup_logging(s.log_level, s.log_json)
    accts = accounts()
    if args.account:
        missing = sorted(set(args.account) - set(accts))
        if missing:
            parser.error(f"unknown account(s): {', '.join(missing)}")
        accts = {k: v for k, v in accts.items() if k in args.account}
    kw = {"watchdog_s": args.watchdog_s} if args.watchdog_s else {}
    feed = Feed(accts, get_redis(), **kw)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("feed: %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    order_sockets = start_order_sockets(accts.values(), stop)
    feed.run(stop)
    for t in order_sockets:
        t.join(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
