"""One command per process kind, so nobody hand-types Celery's options.

    brokergate worker ACCOUNT                  orders.<A>.urgent,orders.<A>, the account's concurrency
    brokergate worker ACCOUNT --urgent-only    orders.<A>.urgent alone, one thread: exits never wait
    brokergate worker --auth                   auth,default: logins, instrument refresh, sweeper, reconciliation
    brokergate worker --queues Q1,Q2           any other queue the app declares
    brokergate beat                            the RedBeat scheduler (one runs at a time: a Redis lock)

Each prints the Celery command with ``--print`` and otherwise *becomes* it (``exec``): the
process keeps its pid, so docker's and the demo's signals reach Celery itself.

Every worker runs with the options ``workers/app.py`` argues for: urgent queue first in
``-Q`` (the transport reads queues in that order), ``--prefetch-multiplier 1`` (a prefetched
order would wait hostage in one worker), the threads pool (order tasks wait on I/O and on
the limiter, not on CPU), no mingle or gossip (state lives in Redis, not in peers; a faster
start), task events on (Flower). The node name is ``<kind>-<account>@<host>`` so
``celery inspect ping -d`` and Flower name each worker by its job.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common import keys
from common.errors import ConfigError

__all__ = ["WorkerLayout", "add_commands", "beat_argv", "worker_argv", "worker_layout"]

AUTH_CONCURRENCY = 2  # logins of several accounts at 08:45 run side by side; refreshes are rare
BEAT_SCHEDULER = "redbeat.RedBeatScheduler"


@dataclass(frozen=True)
class WorkerLayout:
    """What one worker consumes: its node name (before ``@host``), queues in -Q order, threads."""

    node: str
    queues: tuple[str, ...]
    concurrency: int


def worker_layout(
    account: str | None = None,
    *,
    accounts: Mapping[str, Any],
    urgent_only: bool = False,
    auth: bool = False,
    queues: Sequence[str] = (),
    concurrency: int | None = None,
    name: str | None = None,
) -> WorkerLayout:
    """The layout for one ``brokergate worker`` command line. ``accounts`` maps names to
    accounts (only ``concurrency`` is read). Raises ConfigError for an unknown account or a
    command that names no kind, or more than one."""
    kinds = sum((account is not None, auth, bool(queues)))
    if kinds != 1:
        raise ConfigError("say which worker: an ACCOUNT, --auth or --queues (exactly one)")
    if urgent_only and account is None:
        raise ConfigError("--urgent-only needs an ACCOUNT")
    if auth:
        layout = WorkerLayout("auth", (keys.AUTH_QUEUE, keys.DEFAULT_QUEUE), AUTH_CONCURRENCY)
    elif queues:
        layout = WorkerLayout("extra", tuple(queues), 1)
    else:
        assert account is not None
        if account not in accounts:
            known = ", ".join(sorted(accounts)) or "none"
            raise ConfigError(f"unknown account {account!r} (known: {known})")
        if urgent_only:
            layout = WorkerLayout(f"urgent-{account}", (keys.urgent_queue(account),), 1)
        else:
            acct = accounts[account]
            conc = getattr(acct, "concurrency", None)
            if conc is None and isinstance(acct, Mapping):
                conc = acct.get("concurrency")
            layout = WorkerLayout(f"orders-{account}", (keys.urgent_queue(account), keys.orders_queue(account)),
                                  int(conc or 2))  # fmt: skip
    if concurrency is not None:
        if concurrency < 1:
            raise ConfigError(f"--concurrency must be >= 1, got {concurrency}")
        layout = WorkerLayout(layout.node, layout.queues, concurrency)
    if name:
        layout = WorkerLayout(name, layout.queues, layout.concurrency)
    return layout


def worker_argv(layout: WorkerLayout, *, loglevel: str = "INFO", python: str | None = None) -> list[str]:
    """The Celery command of a worker (see the module docstring for each option)."""
    return [
        python or sys.executable, "-m", "celery", "-A", "workers.app", "worker",
        "-Q", ",".join(layout.queues), "-n", f"{layout.node}@%h",
        "-c", str(layout.concurrency), "-P", "threads",
        "--prefetch-multiplier", "1", "--without-mingle", "--without-gossip", "-E", "--loglevel", loglevel,
    ]  # fmt: skip


def beat_argv(*, loglevel: str = "INFO", python: str | None = None) -> list[str]:
    """The Celery command of Beat with RedBeat (its lock in Redis lets one Beat run at a time)."""
    return [python or sys.executable, "-m", "celery", "-A", "workers.app", "beat", "-S", BEAT_SCHEDULER,
            "--loglevel", loglevel]  # fmt: skip


def _run(argv: list[str], print_only: bool) -> int:
    if print_only:
        print(" ".join(argv))
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # never returns
    return 0  # pragma: no cover


def cmd_worker(args: argparse.Namespace) -> int:
    from brokergate.cli import load_accounts_for_reading

    # Secrets are not needed to choose the queues; the worker itself loads them strictly.
    accts = load_accounts_for_reading() if args.account else {}
    queues = [q for q in (args.queues or "").split(",") if q]
    layout = worker_layout(args.account, accounts=accts, urgent_only=args.urgent_only, auth=args.auth,
                           queues=queues, concurrency=args.concurrency, name=args.name)  # fmt: skip
    return _run(worker_argv(layout, loglevel=args.loglevel), args.print)


def cmd_beat(args: argparse.Namespace) -> int:
    return _run(beat_argv(loglevel=args.loglevel), args.print)


def add_commands(sub: Any) -> None:
    """Add ``worker`` and ``beat`` to the ``brokergate`` parser's subcommands."""
    s = sub.add_parser("worker", help="run a Celery worker for an account's order queues, or --auth",
                       description=__doc__.split("\n\n")[1])  # fmt: skip
    s.add_argument("account", nargs="?", metavar="ACCOUNT", help="consume orders.ACCOUNT.urgent,orders.ACCOUNT")
    s.add_argument("--urgent-only", action="store_true", help="consume orders.ACCOUNT.urgent alone (one thread)")
    s.add_argument("--auth", action="store_true", help="consume auth,default (logins, refreshes, sweeper)")
    s.add_argument("--queues", metavar="Q1,Q2", help="consume these queues (any other the app declares)")
    s.add_argument("-c", "--concurrency", type=int, help="threads (default: the account's concurrency, 1 urgent, 2 auth)")
    s.add_argument("-n", "--name", help="node name before @host (default: orders-A, urgent-A, auth)")
    s.add_argument("--loglevel", default="INFO")
    s.add_argument("--print", action="store_true", help="print the Celery command instead of running it")
    s.set_defaults(func=cmd_worker)

    s = sub.add_parser("beat", help="run Beat (RedBeat: daily logins, sweeper; one at a time)")
    s.add_argument("--loglevel", default="INFO")
    s.add_argument("--print", action="store_true", help="print the Celery command instead of running it")
    s.set_defaults(func=cmd_beat)
