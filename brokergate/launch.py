"""One command per process kind, so nobody hand-types Celery's options.

    brokergate worker ACCOUNT                  orders.<A>.urgent,orders.<A>, the account's concurrency
    brokergate worker ACCOUNT --urgent-only    orders.<A>.urgent alone, one thread: exits never wait
    brokergate worker --auth                   auth,default: logins, instrument refresh, sweeper, reconciliation
    brokergate worker --queues Q1,Q2           any other queue the app declares
    brokergate worker --pooled [ACCOUNT ...]   many accounts' lanes in one process (all without ACCOUNT);
                                               --shard I/N takes every Nth of them (sorted), from the Ith
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
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from common import keys
from common.errors import ConfigError

__all__ = [
    "ACCOUNTS_PER_POOL",
    "POOLED_ENV",
    "WorkerLayout",
    "add_commands",
    "beat_argv",
    "parse_shard",
    "pooled_layout",
    "worker_argv",
    "worker_env",
    "worker_layout",
    "worker_plan",
]

ACCOUNTS_PER_POOL = 25  # worker_plan: accounts per pooled shard by default
AUTH_CONCURRENCY = 2  # logins of several accounts at 08:45 run side by side; refreshes are rare
BEAT_SCHEDULER = "redbeat.RedBeatScheduler"
POOLED_ENV = "BROKERGATE_WORKER_POOLED"  # workers/pooled.py's name for it (a unit test holds them equal)


@dataclass(frozen=True)
class WorkerLayout:
    """What one worker consumes: its node name (before ``@host``), queues in -Q order, threads;
    whether it is pooled, and the ``brokergate worker`` arguments that run it."""

    node: str
    queues: tuple[str, ...]
    concurrency: int
    pooled: bool = False
    # How to ask for it, not what it is: two layouts that consume alike are equal however named.
    args: tuple[str, ...] = field(default=(), compare=False)


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
        raise ConfigError("say which worker: an ACCOUNT, --auth, --queues or --pooled (exactly one)")
    if urgent_only and account is None:
        raise ConfigError("--urgent-only needs an ACCOUNT")
    if auth:
        layout = WorkerLayout("auth", (keys.AUTH_QUEUE, keys.DEFAULT_QUEUE), AUTH_CONCURRENCY, args=("--auth",))
    elif queues:
        layout = WorkerLayout("extra", tuple(queues), 1, args=("--queues", ",".join(queues)))
    else:
        assert account is not None
        _check_known([account], accounts)
        if urgent_only:
            layout = WorkerLayout(f"urgent-{account}", (keys.urgent_queue(account),), 1,
                                  args=(account, "--urgent-only"))  # fmt: skip
        else:
            from workers.pooled import account_concurrency  # the lanes' own reading of it

            layout = WorkerLayout(f"orders-{account}", (keys.urgent_queue(account), keys.orders_queue(account)),
                                  account_concurrency(accounts[account]), args=(account,))  # fmt: skip
    if concurrency is not None:
        if concurrency < 1:
            raise ConfigError(f"--concurrency must be >= 1, got {concurrency}")
        layout = replace(layout, concurrency=concurrency, args=(*layout.args, "-c", str(concurrency)))
    if name:
        layout = replace(layout, node=name, args=(*layout.args, "-n", name))
    return layout


def _check_known(names: Sequence[str], accounts: Mapping[str, Any]) -> None:
    for account in names:
        if account not in accounts:
            known = ", ".join(sorted(accounts)) or "none"
            raise ConfigError(f"unknown account {account!r} (known: {known})")


def parse_shard(shard: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N), 0 <= I < N; ConfigError naming ``--shard`` otherwise."""
    i, sep, n = shard.partition("/")
    try:
        index, count = int(i), int(n)
    except ValueError:
        index, count = -1, 0
    if not sep or count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard must be I/N with 0 <= I < N (e.g. 0/2), got {shard!r}")
    return index, count


def pooled_layout(
    names: Sequence[str] = (), *, accounts: Mapping[str, Any], shard: str | None = None, name: str | None = None
) -> WorkerLayout:
    """One pooled worker (``brokergate worker --pooled [ACCOUNT ...] [--shard I/N]``): the accounts
    ``names`` (every account of ``accounts`` when empty), sorted, those whose index % N == I with
    a shard; node ``pool-<I>of<N>`` (``pool`` unsharded); each account's urgent then orders queue;
    one thread per lane's prefetch (workers/pooled.py). ConfigError for an unknown account, a bad
    shard or one that takes no account."""
    from workers.pooled import lanes

    _check_known(names, accounts)
    chosen = sorted(set(names or accounts))
    node, args = "pool", ["--pooled", *names]
    if shard is not None:
        index, count = parse_shard(shard)
        chosen = [a for k, a in enumerate(chosen) if k % count == index]
        node, args = f"pool-{index}of{count}", [*args, "--shard", shard]
    if not chosen:
        raise ConfigError(f"--pooled: no account to serve (accounts: {len(accounts)}, --shard {shard})")
    if name:
        node, args = name, [*args, "-n", name]
    table = lanes(accounts, chosen)
    return WorkerLayout(node, tuple(q for q, _ in table), sum(p for _, p in table), pooled=True, args=tuple(args))


def worker_plan(accounts: Mapping[str, Any], *, pooled_above: int = 4, accounts_per_pool: int = ACCOUNTS_PER_POOL) -> list[WorkerLayout]:
    """The default workers for ``accounts``: up to ``pooled_above`` accounts, each its own order
    worker and urgent-only worker; more, ceil(n / ``accounts_per_pool``) pooled shards (a process
    costs ~70 MB: two per account do not scale); and the auth worker. A shard is one interpreter,
    so at most one core: 25 accounts a shard (100 accounts: 4 processes) let a burst use every
    core of a small host (make bench, scale: 4 shards cut a 100-account fan-out's p50 from 473 to
    314 ms beside 2 on 2 cores)."""
    if accounts_per_pool < 1:
        raise ConfigError(f"accounts_per_pool must be >= 1, got {accounts_per_pool}")
    names = sorted(accounts)
    plan: list[WorkerLayout] = []
    if len(names) <= pooled_above:
        for a in names:
            plan += [worker_layout(a, accounts=accounts), worker_layout(a, accounts=accounts, urgent_only=True)]
    else:
        count = math.ceil(len(names) / accounts_per_pool)
        shards = [None] if count == 1 else [f"{i}/{count}" for i in range(count)]
        plan += [pooled_layout(accounts=accounts, shard=s) for s in shards]
    return [*plan, worker_layout(auth=True, accounts=accounts)]


def worker_env(layout: WorkerLayout) -> dict[str, str]:
    """The environment a worker of ``layout`` needs besides the deployment's: the pooled mark."""
    return {POOLED_ENV: "1"} if layout.pooled else {}


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


def _run(argv: list[str], print_only: bool, env: Mapping[str, str] | None = None) -> int:
    env = dict(env or {})
    if print_only:
        print(" ".join([*(f"{k}={v}" for k, v in env.items()), *argv]))
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, {**os.environ, **env})  # never returns
    return 0  # pragma: no cover


def layout_from_args(args: argparse.Namespace, accts: Mapping[str, Any]) -> WorkerLayout:
    """The layout a parsed ``brokergate worker`` command line asks for."""
    queues = [q for q in (args.queues or "").split(",") if q]
    if args.pooled is None:
        if args.shard:
            raise ConfigError("--shard needs --pooled")
        return worker_layout(args.account, accounts=accts, urgent_only=args.urgent_only, auth=args.auth,
                             queues=queues, concurrency=args.concurrency, name=args.name)  # fmt: skip
    if args.urgent_only or args.auth or queues:
        raise ConfigError("--pooled takes accounts only (no --urgent-only, --auth or --queues)")
    if args.concurrency is not None:
        raise ConfigError("--concurrency does not apply to --pooled: its threads are the sum of its lanes' prefetch")
    names = [*([args.account] if args.account else []), *args.pooled]
    return pooled_layout(names, accounts=accts, shard=args.shard, name=args.name)


def cmd_worker(args: argparse.Namespace) -> int:
    from brokergate.cli import load_accounts_for_reading

    # Secrets are not needed to choose the queues; the worker itself loads them strictly.
    accts = load_accounts_for_reading() if args.account or args.pooled is not None else {}
    layout = layout_from_args(args, accts)
    return _run(worker_argv(layout, loglevel=args.loglevel), args.print, worker_env(layout))


def cmd_beat(args: argparse.Namespace) -> int:
    return _run(beat_argv(loglevel=args.loglevel), args.print)


def add_commands(sub: Any) -> None:
    s = sub.add_parser("worker", help="run a Celery worker for an account's order queues, or --auth",
                       description=__doc__.split("\n\n")[1])  # fmt: skip
    s.add_argument("account", nargs="?", metavar="ACCOUNT", help="consume orders.ACCOUNT.urgent,orders.ACCOUNT")
    s.add_argument("--urgent-only", action="store_true", help="consume orders.ACCOUNT.urgent alone (one thread)")
    s.add_argument("--auth", action="store_true", help="consume auth,default (logins, refreshes, sweeper)")
    s.add_argument("--queues", metavar="Q1,Q2", help="consume these queues (any other the app declares)")
    s.add_argument("--pooled", nargs="*", metavar="ACCOUNT",
                   help="one pooled worker for these accounts' lanes (default: every account)")
    s.add_argument("--shard", metavar="I/N", help="with --pooled: the accounts whose sorted index %% N == I")
    s.add_argument("-c", "--concurrency", type=int, help="threads (default: the account's concurrency, 1 urgent, 2 auth; pooled: its lanes' prefetch)")
    s.add_argument("-n", "--name", help="node name before @host (default: orders-A, urgent-A, auth, pool, pool-IofN)")
    s.set_defaults(func=cmd_worker)
    beat = sub.add_parser("beat", help="run Beat (RedBeat: daily logins, sweeper; one at a time)")
    beat.set_defaults(func=cmd_beat)
    for p in (s, beat):  # each prints or becomes its Celery command
        p.add_argument("--loglevel", default="INFO")
        p.add_argument("--print", action="store_true", help="print the Celery command instead of running it")
