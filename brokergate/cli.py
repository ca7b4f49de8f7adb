"""``brokergate``: the operator's command line.

    brokergate status [--json]            tokens, queues, limiter, feed, receiver, workers, Beat;
                                          exit 1 when unhealthy
    brokergate login ACCOUNT              log an account in now (forced), in this process
    brokergate orders [--account A]       recent orders from the order store
    brokergate feed subscribe NSE:INFY... ask the feed for instruments
    brokergate instruments refresh ACCOUNT download an account's instrument master now
    brokergate worker ACCOUNT | --auth    a Celery worker with the right queues and options
    brokergate beat                       Beat with RedBeat (brokergate/launch.py)
    brokergate metrics serve [--port 9108] Prometheus metrics from Redis (brokergate/metrics.py)

Secrets are never printed: a token hash is read for its times and version only, and
every message passes through the log redactor.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from common import keys

log = logging.getLogger("brokergate.cli")

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_ERROR = 2
# A status answers now (an operator before the open, a container's healthcheck within its
# timeout): Redis unreachable through a second of retries is the answer, not the 10 s a
# worker's client rides out a failover with.
STATUS_REDIS_RETRY_S = 1.0


class _LenientEnv(dict):  # type: ignore[type-arg]
    """An environment in which every secret reference resolves: ``status`` and ``orders``
    need account names and caps, not secrets, and a monitoring host need not hold them."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return dict.get(self, key) or "<unset>"


def load_accounts_for_reading() -> dict[str, Any]:
    from common.settings import load_accounts, load_dotenv_once, settings

    load_dotenv_once()
    return load_accounts(settings().accounts_path, environ=_LenientEnv(os.environ))


def celery_app() -> Any:
    """The project's Celery app.

    Importing it also builds Beat's schedule, which needs every secret; on a host that
    reads status without them, that complaint is noise, so it is muted here."""
    quiet = logging.getLogger("beat")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        from workers.app import app
    finally:
        quiet.setLevel(level)
    return app


def _known(account: str) -> bool:
    """Whether ``account`` is in the accounts file; when not, says so (with the known ones)."""
    from common.settings import accounts

    if account in accounts():
        return True
    print(f"unknown account {account!r}; known: {', '.join(sorted(accounts()))}", file=sys.stderr)
    return False


# ---------------------------------------------------------------------------------- status


def _fmt_age(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.1f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"


def _fmt_ms(ms: int | None) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def _fmt_usage(u: Any) -> str:
    if u is None:
        return "-"
    if isinstance(u, dict):
        return ", ".join(f"{k}: {_fmt_usage(v)}" for k, v in u.items())
    if isinstance(u, list):
        return ", ".join(_fmt_usage(v) for v in u)
    return str(u)


def _topology_text(t: dict[str, Any] | None) -> str:
    """The Redis line of ``brokergate status``: primary, replicas with their lag, sentinels."""
    if not t:
        return "[yellow]topology unknown[/yellow]"
    replicas = ", ".join(f"{x['address']} {x['state']} lag {x['lag_s']} s / {x['offset_lag']} B"
                         for x in t.get("replicas") or []) or "[yellow]none[/yellow]"  # fmt: skip
    text = f"primary {t.get('primary')} ({t.get('mode')}); replicas: {replicas}"
    if t.get("mode") == "sentinel":
        seen = [s for s in t.get("sentinels") or [] if s.get("up")]
        text += f"; sentinels {len(seen)}/{len(t.get('sentinels') or [])} answer for {t.get('master_name')}"
    if t.get("wait_short"):
        text += f"; {t['wait_short']} durable writes short of replicas"
    if t.get("wait_skipped"):
        text += f"; {t['wait_skipped']} durable writes without a replica online (WAIT skipped)"
    return text


def print_table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]], console: Any = None) -> None:
    """A rich table titled on the left, a row per item of ``rows``, every cell shown as text."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*map(str, row))
    (console or Console()).print(t)


def _account_row(name: str, a: dict[str, Any], now: int) -> tuple[str, ...]:
    tok = a["token"]
    if tok["present"]:
        exp = tok.get("expires_at_ms")
        expires = f"{_fmt_ms(exp)} (in {_fmt_age((exp - now) / 1000)})" if exp and exp > now else ("EXPIRED" if exp else "-")
        age = _fmt_age(tok.get("age_s"))
    else:
        expires, age = "[red]no token[/red]", "-"
    le = a.get("login_error")
    le_text = f"{_fmt_ms(le.get('at_ms'))} {le.get('type', '')}: {le.get('message', '')}" if le else "-"
    backoff = ", ".join(f"{k} {v:.1f}s" for k, v in a["backoff_s"].items()) or "-"
    limiter = "; ".join(f"{k}: {_fmt_usage(v)}" for k, v in a["limiter"].items()) or "-"
    if a.get("limiter_shared_with"):  # the same counts show on each: the broker counts them as one
        limiter += f" (shared with {', '.join(a['limiter_shared_with'])})"
    return name, a["broker"], age, expires, le_text, limiter, backoff, a.get("order_egress") or "default"


def render_status(snapshot: dict[str, Any], health: Any, console: Any = None) -> None:
    from rich.console import Console

    c = console or Console()
    print_table("Accounts", ("account", "broker", "token age", "expires", "last login error", "limiter", "backoff",
                             "order egress"),
                (_account_row(name, a, snapshot["now_ms"]) for name, a in snapshot["accounts"].items()), c)  # fmt: skip

    consumers: dict[str, list[str]] = {}
    for host, info in (snapshot.get("workers") or {}).items():
        for q in info.get("queues", []):
            consumers.setdefault(q, []).append(host)
    print_table(f"Queues (unacked: {snapshot.get('unacked', 0)})", ("queue", "depth", "consumers"),
                ((q, info["depth"], ", ".join(sorted(consumers.get(q, []))) or "[red]none[/red]")
                 for q, info in snapshot["queues"].items()), c)  # fmt: skip

    feeds = [(f.get("account"), f.get("socket"), f.get("connected", "-"), _fmt_age(f.get("last_frame_age_s")),
              f.get("tick_rate_per_s", "-"), f.get("ticks", "-"), f.get("reconnects", "-")) for f in snapshot["feed"]]
    print_table("Feed sockets", ("account", "socket", "connected", "last frame", "ticks/s", "ticks", "reconnects"),
                feeds or [("-",) * 7], c)  # fmt: skip

    rc, beat = snapshot["receiver"], snapshot["beat"]
    rc_text = (
        f"last postback {_fmt_age(rc.get('last_postback_age_s'))} ago, accepted {rc.get('accepted', 0)}, refused {rc.get('refused', 0)}"
        if rc.get("present")
        else "[yellow]not reporting[/yellow]"
    )
    beat_text = (
        f"heartbeat {_fmt_age(beat.get('heartbeat_age_s'))} ago, RedBeat lock {'held' if beat.get('lock_held') else 'free'}"
    )
    workers = snapshot.get("workers")
    for o in snapshot.get("order_sockets") or []:
        state = "connected" if o.get("connected") else "[red]disconnected[/red]"
        c.print(f"Order-update socket {o['account']}: {state}, last frame {_fmt_age(o.get('last_frame_age_s'))} ago, "
                f"{o.get('messages', 0)} messages, {o.get('reconnects', 0)} reconnects")  # fmt: skip
    c.print(f"Redis: {_topology_text(snapshot.get('redis', {}).get('topology'))}")
    c.print(f"Receiver: {rc_text}")
    c.print(f"Beat: {beat_text}")
    c.print(f"Workers: {', '.join(sorted(workers)) if workers else '[red]none answered[/red]'}")
    for name, a in snapshot["accounts"].items():  # pre-trade risk refusals (common/risk.py), from the counters
        refused = {k.split(":", 1)[1]: v for k, v in (a.get("stats") or {}).items() if k.startswith("risk_refused:")}
        if refused:
            c.print(f"Risk refusals {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(refused.items())))
    for p in health.problems:
        colour = "red" if p.level == "error" else "yellow"
        c.print(f"[{colour}]{p.level.upper()}[/{colour}] {p.component}: {p.message}", markup=True, highlight=False)
    c.print("[green]HEALTHY[/green]" if health.healthy else "[red]UNHEALTHY[/red]")


def cmd_status(args: argparse.Namespace) -> int:
    import redis as redis_lib

    from common.health import Thresholds, evaluate, gather
    from common.redis import connect, redis_conf

    accounts = load_accounts_for_reading()
    # A component check (a container's healthcheck) asks the workers only when it is about them.
    ask_workers = args.component is None or args.component.split(":")[0] in ("queue", "worker")
    app = celery_app() if ask_workers else None
    r = connect(replace(redis_conf(), retry_s=STATUS_REDIS_RETRY_S))
    try:
        snap = gather(r, accounts, app=app, inspect_timeout_s=args.timeout_s, ask_workers=ask_workers)
    except redis_lib.RedisError as e:
        doc = {"healthy": False, "problems": [{"level": "error", "component": "redis", "message": str(e)}]}
        if args.json:
            print(json.dumps(doc, indent=2))
        else:
            print(f"UNHEALTHY: Redis unreachable: {e}", file=sys.stderr)
        return EXIT_UNHEALTHY
    finally:
        r.close()
    health = evaluate(snap, Thresholds(feed_stall_s=args.feed_stall_s))
    if args.component:
        return component_status(health, args.component, as_json=args.json)
    if args.json:
        print(json.dumps({**health.to_dict(), "snapshot": snap}, indent=2, default=str))
    else:
        render_status(snap, health)
    return EXIT_OK if health.healthy else EXIT_UNHEALTHY


def component_status(health: Any, component: str, *, as_json: bool = False) -> int:
    """Exit 1 when any problem, error or warning, names ``component`` (``feed`` covers
    ``feed:<account>`` and ``feed:<account>:<socket>``), else 0: one part's healthcheck."""
    mine = [p for p in health.problems if p.component == component or p.component.startswith(component + ":")]
    if as_json:
        print(json.dumps({"component": component, "healthy": not mine,
                          "problems": [{"level": p.level, "component": p.component, "message": p.message} for p in mine]}))
    else:
        for p in mine:
            print(f"{p.level.upper()} {p.component}: {p.message}")
        print(f"{component}: {'UNHEALTHY' if mine else 'healthy'}")
    return EXIT_UNHEALTHY if mine else EXIT_OK


# ----------------------------------------------------------------------------------- login


def cmd_login(args: argparse.Namespace) -> int:
    from common.errors import ConfigError
    from workers.login import login_now

    if not _known(args.account):
        return EXIT_ERROR
    try:
        result = login_now(args.account, force=True, instruments_inline=True)
    except ConfigError:
        raise  # a secret missing from this environment: main() names it, exit 2
    except Exception as e:
        from common.logs import redact

        print(f"login {args.account} failed: {type(e).__name__}: {redact(str(e))}", file=sys.stderr)
        return EXIT_UNHEALTHY
    print(f"{args.account}: logged in (token version {result['version']}, expires {_fmt_ms(result['expires_at_ms'])})")
    # The feed and place_order need the instrument master: a login leaves it loaded for today.
    if result.get("instruments_error"):
        print(f"{args.account}: instruments: not loaded: {result['instruments_error']}", file=sys.stderr)
        return EXIT_UNHEALTHY
    n = int(result.get("instruments") or 0)
    print(f"{args.account}: instruments: {f'{n} loaded' if n else 'fresh (refreshed today)'}")
    return EXIT_OK


def cmd_instruments_refresh(args: argparse.Namespace) -> int:
    """Download the account's instrument master now (whatever its age), in this process."""
    from common import instruments
    from common.errors import BrokerGateError, ConfigError
    from common.logs import redact

    if not _known(args.account):
        return EXIT_ERROR

    try:
        n = instruments.refresh(args.account)
    except ConfigError:
        raise  # main() names it, exit 2
    except BrokerGateError as e:
        print(f"instruments {args.account} failed: {type(e).__name__}: {redact(str(e))}", file=sys.stderr)
        return EXIT_UNHEALTHY
    print(f"{args.account}: {n} instruments")
    return EXIT_OK


# ---------------------------------------------------------------------------------- orders


# A row's column -> the order-store hash field that fills it (common/orderstore.py; the Order's
# own fields, in its ``request`` JSON, where the hash has none).
_ORDER_COLUMNS = {
    "account": "account", "state": "state", "exchange": "exchange", "symbol": "symbol", "side": "side",
    "quantity": "quantity", "filled_quantity": "filled_quantity", "fill_price": "average_price",
    "broker_order_id": "broker_order_id",
}  # fmt: skip


def _order_row(oid: str, h: dict[str, str]) -> dict[str, Any]:
    req: dict[str, Any] = {}
    with contextlib.suppress(ValueError, TypeError):
        req = json.loads(h.get("request") or "{}")

    def pick(name: str) -> Any:
        return next((v for v in (h.get(name), req.get(name)) if v not in (None, "")), None)

    return {"id": oid, **{col: pick(f) for col, f in _ORDER_COLUMNS.items()},
            "updated_ms": _int_or_none(pick("updated_ms") or pick("created_ms")), "error": pick("error")}


def _int_or_none(v: Any) -> int | None:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return None


def recent_orders(r: Any, account: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The most recent orders in the store (SCAN of ``bg:order:*``), newest first."""
    prefix = keys.order("")
    rows = []
    for key in r.scan_iter(match=f"{prefix}*", count=1000):
        oid = key[len(prefix) :]
        if ":" in oid or r.type(key) != "hash":
            continue
        row = _order_row(oid, r.hgetall(key))
        if account and row["account"] != account:
            continue
        rows.append(row)
    rows.sort(key=lambda x: x["updated_ms"] or 0, reverse=True)
    return rows[:limit]


def cmd_orders(args: argparse.Namespace) -> int:
    from common.redis import get_redis

    rows = recent_orders(get_redis(), args.account, args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK

    def cells(o: dict[str, Any]) -> list[Any]:
        sym = f"{o['exchange']}:{o['symbol']}" if o["exchange"] else o["symbol"] or "-"
        return [o["id"], o["account"] or "-", o["state"] or "-", sym,
                *(o[k] or "-" for k in ("side", "quantity", "filled_quantity", "fill_price", "broker_order_id"))]

    print_table(f"Orders ({len(rows)} most recent)",
                ("id", "account", "state", "symbol", "side", "qty", "filled", "fill price", "broker id"),
                map(cells, rows))  # fmt: skip
    return EXIT_OK


# ------------------------------------------------------------------------------------ feed


def cmd_feed_subscribe(args: argparse.Namespace) -> int:
    from common.ticks import subscribe

    for inst in args.instruments:
        exch, sep, sym = inst.partition(":")
        if not sep or not exch or not sym:
            print(f"{inst!r} is not EXCHANGE:SYMBOL", file=sys.stderr)
            return EXIT_ERROR
    try:
        result = subscribe(list(args.instruments), mode=args.mode, account=args.account)
    except Exception as e:
        print(f"subscribe failed: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"subscribed {', '.join(args.instruments)} ({args.mode}){'' if result is None else f' on {result}'}")
    if result is not None:
        from common.redis import get_redis

        if not get_redis().exists(keys.instruments(result)):
            # Nothing could be checked, and the feed cannot map them yet: say so where it is seen.
            print(f"warning: the instrument master of {result} is not loaded; no tick comes until it is "
                  f"(brokergate instruments refresh {result})", file=sys.stderr)
    return EXIT_OK


# ------------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brokergate", description="Operate a brokergate deployment.")
    p.add_argument("--log-json", action="store_true", help="log as JSON lines (also BROKERGATE_LOG_JSON=1)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("status", help="health of tokens, queues, limiter, feed, receiver, workers and Beat")
    s.add_argument("--json", action="store_true", help="one JSON document: healthy, problems, snapshot")
    s.add_argument("--timeout-s", type=float, default=1.0, help="how long to wait for workers to answer")
    s.add_argument("--feed-stall-s", type=float, default=10.0, help="a feed socket silent this long is stalled")
    s.add_argument("--component", metavar="NAME",
                   help="judge one part only (feed, beat, receiver, token, queue, ...): exit 1 on any of its problems")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("login", help="log an account in now (forced)")
    s.add_argument("account")
    s.set_defaults(func=cmd_login)

    s = sub.add_parser("orders", help="recent orders")
    s.add_argument("--account")
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_orders)

    i = sub.add_parser("instruments", help="the instrument master")
    isub = i.add_subparsers(dest="instruments_command", required=True)
    s = isub.add_parser("refresh", help="download an account's instrument master now")
    s.add_argument("account")
    s.set_defaults(func=cmd_instruments_refresh)

    f = sub.add_parser("feed", help="feed control")
    fsub = f.add_subparsers(dest="feed_command", required=True)
    s = fsub.add_parser("subscribe", help="subscribe instruments (EXCHANGE:SYMBOL)")
    s.add_argument("instruments", nargs="+", metavar="EXCHANGE:SYMBOL")
    s.add_argument("--account", help="the account whose feed carries them (default: the feed's choice)")
    s.add_argument("--mode", choices=("ltp", "quote", "full"), default="quote")
    s.set_defaults(func=cmd_feed_subscribe)

    from brokergate import accountcli, launch, metrics, riskcli, safetycli

    accountcli.add_commands(sub)  # positions, holdings, funds, trades
    safetycli.add_commands(sub)  # halt, resume
    riskcli.add_commands(sub)  # risk show, set, clear
    launch.add_commands(sub)  # worker, beat: one command per process kind
    metrics.add_commands(sub)  # metrics serve
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from common.errors import ConfigError
    from common.logs import setup_logging
    from common.settings import load_settings

    args = build_parser().parse_args(argv)
    try:
        st = load_settings()
        setup_logging("WARNING" if st.log_level == "INFO" else st.log_level, st.log_json or args.log_json)
        return int(args.func(args))
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
