"""Prometheus metrics of a deployment: ``brokergate metrics serve [--host 127.0.0.1] [--port 9108]``.

Served by a process of its own, not by the feed, the receiver or a worker: every figure
already lives in Redis (heartbeats with TTLs, ``bg:stats:<account>`` counters, the limiter's
slot logs, the queues, the order index), written by every process on every host, so one
reader sees the whole deployment; it scrapes nothing from the processes themselves, needs no
secret (accounts are read for their names and caps only), survives any of them dying (a dead
feed is then a missing series and a failing ``brokergate status``), and can run as several
replicas. Flower's own ``/metrics`` covers Celery's task events; this covers brokergate's.

Each scrape is one :func:`common.health.gather` without asking the workers (that would wait
for their replies), plus the states of the orders still in flight (``bg:orders:active``).
The text is the Prometheus exposition format 0.0.4, written here (no client library in the
product; the tests parse it with ``prometheus_client``'s parser). Metric and label names:

=========================================================  =========================================
``brokergate_up``                                          1 when Redis answered the scrape
``brokergate_token_present{account,broker}``               1 when the account holds a token
``brokergate_token_age_seconds{account}``                  since the token was issued
``brokergate_token_expires_in_seconds{account}``           until it expires (negative: expired)
``brokergate_login_failing{account,type}``                 1 when the last login failed after the token
``brokergate_login_error_timestamp_seconds{account,type}`` when the last login failed
``brokergate_limiter_requests{account,class,window}``      requests in the sliding window now
``brokergate_limiter_cap{account,class,window}``           the cap of that window (use = requests / cap)
``brokergate_limiter_backoff_seconds{account,class}``      back-off left after a broker rate-limit answer
``brokergate_events_total{account,event}``                 ``bg:stats`` counters: placed, rejected,
                                                           expired, rate_limited, relogins, redriven,
                                                           duplicates_avoided, reconciled_* ...
``brokergate_orders_active{account,state}``                orders in flight (NEW, SENDING, OPEN, UNKNOWN)
``brokergate_queue_depth{queue}``                          messages waiting; ``brokergate_queue_unacked``
``brokergate_feed_connected{account,socket}``              and ``_last_frame_age_seconds``, ``_instruments``
``brokergate_feed_ticks_per_second{account,socket}``       the feed's own rate over its heartbeat interval
``brokergate_feed_publish_latency_p99_seconds{...}``       receive → published, p99 of the last 4,096 ticks
``brokergate_feed_{ticks,frames,reconnects,stalls,malformed,refused}_total{account,socket}``
``brokergate_order_socket_{connected,...}{account}``       order-update sockets
``brokergate_postbacks_total{result}``                     accepted, refused, duplicate (all receivers)
``brokergate_receiver_up``                                 a receiver reported within its TTL
``brokergate_beat_heartbeat_age_seconds``, ``brokergate_beat_lock_held``
=========================================================  =========================================

Counters come from heartbeats of long-lived processes and restart from 0 with them; Prometheus'
``rate()`` handles such resets. ``ops/grafana/brokergate.json`` charts them.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from common import keys

__all__ = ["CONTENT_TYPE", "Family", "MetricsServer", "active_order_states", "collect", "render", "scrape"]

log = logging.getLogger("brokergate.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_PORT = 9108  # next to node_exporter's 9100 family; free in Prometheus' port allocation list
_PIPELINE_CHUNK = 500  # order hashes read per round trip when counting the orders in flight


@dataclass
class Family:
    """One metric: its name (``_total`` included for counters), kind, help and samples."""

    name: str
    kind: str  # gauge or counter
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: Any, **labels: Any) -> None:
        """One sample; a value that is no number (None, "": not reported) is left out."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            return
        self.samples.append(({k: str(x) for k, x in labels.items()}, v))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(v: float) -> str:
    v = float(v)
    if v != v:  # NaN
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return repr(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def render(families: Iterable[Family]) -> str:
    """The exposition text of ``families`` (families without samples are left out)."""
    out: list[str] = []
    for f in families:
        if not f.samples:
            continue
        out.append(f"# HELP {f.name} {f.help}")
        out.append(f"# TYPE {f.name} {f.kind}")
        for labels, value in f.samples:
            lbl = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            out.append(f"{f.name}{{{lbl}}} {_number(value)}" if lbl else f"{f.name} {_number(value)}")
    return "\n".join(out) + "\n"


def _window(period_s: int) -> str:
    return {1: "1s", 60: "1m", 3600: "1h", 86400: "1d"}.get(period_s, f"{period_s}s")


def active_order_states(r: Any) -> dict[tuple[str, str], int]:
    """(account, state) -> how many orders in flight (the sweeper's index holds every
    non-terminal order, so this never walks the settled ones)."""
    from common.redis import as_text

    ids = [as_text(m) for m in r.zrange(keys.ORDERS_ACTIVE, 0, -1)]
    counts: Counter[tuple[str, str]] = Counter()
    for i in range(0, len(ids), _PIPELINE_CHUNK):
        pipe = r.pipeline(transaction=False)
        for oid in ids[i : i + _PIPELINE_CHUNK]:
            pipe.hmget(keys.order(oid), "account", "state")
        counts.update((as_text(account), as_text(state)) for account, state in pipe.execute() if account and state)
    return dict(counts)


class _Families(dict[str, Family]):
    """The families of one scrape by name, each made the first time it is named."""

    def __call__(self, name: str, kind: str, text: str) -> Family:
        if name not in self:
            self[name] = Family(name, kind, text)
        return self[name]


def _token_families(fam: _Families, name: str, a: Mapping[str, Any], now_ms: int) -> None:
    tok = a.get("token") or {}
    fam("brokergate_token_present", "gauge", "1 when the account holds a token").add(
        1 if tok.get("present") else 0, account=name, broker=a.get("broker", ""))
    if tok.get("present"):
        fam("brokergate_token_age_seconds", "gauge", "Seconds since the account's token was issued").add(
            tok.get("age_s"), account=name)
        exp = tok.get("expires_at_ms")
        if exp:
            fam("brokergate_token_expires_in_seconds", "gauge", "Seconds until the token expires (negative: expired)").add(
                (exp - now_ms) / 1000, account=name)
    le = a.get("login_error")
    if le:
        newer = not tok.get("present") or (le.get("at_ms") or 0) >= (tok.get("issued_at_ms") or 0)
        kind = le.get("type") or "error"
        fam("brokergate_login_failing", "gauge", "1 when the last login failed after the current token").add(
            1 if newer else 0, account=name, type=kind)
        if le.get("at_ms"):
            fam("brokergate_login_error_timestamp_seconds", "gauge", "When the last login failed (epoch s)").add(
                le["at_ms"] / 1000, account=name, type=kind)


def _limiter_families(fam: _Families, name: str, a: Mapping[str, Any], caps: Mapping[str, Any]) -> None:
    for cls, used in (a.get("limiter") or {}).items():
        for cap in caps.get(cls, ()):
            w = _window(cap.period_s)
            fam("brokergate_limiter_requests", "gauge", "Requests in the limiter's sliding window now").add(
                (used or {}).get(str(cap), 0), account=name, **{"class": cls}, window=w)
            fam("brokergate_limiter_cap", "gauge", "The cap of that window (requests)").add(
                cap.count, account=name, **{"class": cls}, window=w)
    for cls in sorted(caps):
        fam("brokergate_limiter_backoff_seconds", "gauge", "Back-off left after a broker rate-limit answer").add(
            (a.get("backoff_s") or {}).get(cls, 0), account=name, **{"class": cls})


def _account_families(fam: _Families, snapshot: Mapping[str, Any], accounts: Mapping[str, Any]) -> None:
    """Token, login, limiter and order-path counters of every account."""
    now_ms = int(snapshot.get("now_ms") or 0)
    for name, a in (snapshot.get("accounts") or {}).items():
        _token_families(fam, name, a, now_ms)
        _limiter_families(fam, name, a, getattr(accounts.get(name), "caps", None) or {})
        for event, n in sorted((a.get("stats") or {}).items()):
            fam("brokergate_events_total", "counter", "Order-path events counted in bg:stats:<account>").add(
                n, account=name, event=event)


def _queue_families(fam: _Families, snapshot: Mapping[str, Any]) -> None:
    for q, info in sorted((snapshot.get("queues") or {}).items()):
        fam("brokergate_queue_depth", "gauge", "Messages waiting in a Celery queue").add(info.get("depth"), queue=q)
    fam("brokergate_queue_unacked", "gauge", "Messages delivered to workers and not yet acknowledged").add(
        snapshot.get("unacked", 0))


def _feed_families(fam: _Families, feeds: Iterable[Mapping[str, Any]]) -> None:
    for f in feeds:
        lbl = {"account": f.get("account"), "socket": f.get("socket")}
        fam("brokergate_feed_connected", "gauge", "1 when the feed socket is connected").add(1 if f.get("connected") else 0, **lbl)
        fam("brokergate_feed_last_frame_age_seconds", "gauge", "Seconds since the socket's last frame").add(
            f.get("last_frame_age_s"), **lbl)
        fam("brokergate_feed_ticks_per_second", "gauge", "Ticks published per second (the feed's heartbeat interval)").add(
            f.get("tick_rate", f.get("tick_rate_per_s")), **lbl)
        if f.get("p99_us") not in (None, ""):
            fam("brokergate_feed_publish_latency_p99_seconds", "gauge", "Receive to published, p99 of recent ticks").add(
                float(f["p99_us"]) / 1e6, **lbl)
        fam("brokergate_feed_instruments", "gauge", "Instruments subscribed on the socket").add(f.get("instruments"), **lbl)
        for key in ("ticks", "frames", "reconnects", "stalls", "malformed", "refused"):
            fam(f"brokergate_feed_{key}_total", "counter", f"Feed socket {key} since the feed started").add(f.get(key), **lbl)


def _order_socket_families(fam: _Families, order_sockets: Iterable[Mapping[str, Any]]) -> None:
    for o in order_sockets:
        for name, kind, text, value in (
            ("connected", "gauge", "1 when the order-update socket is connected", 1 if o.get("connected") else 0),
            ("last_frame_age_seconds", "gauge", "Seconds since its last frame", o.get("last_frame_age_s")),
            ("messages_total", "counter", "Order updates received on the socket", o.get("messages")),
            ("reconnects_total", "counter", "Order-update socket reconnects", o.get("reconnects")),
        ):
            fam(f"brokergate_order_socket_{name}", kind, text).add(value, account=o.get("account"))


def _receiver_and_beat_families(fam: _Families, rc: Mapping[str, Any], beat: Mapping[str, Any]) -> None:
    fam("brokergate_receiver_up", "gauge", "1 when a postback receiver reported within its heartbeat TTL").add(
        1 if rc.get("present") else 0)
    if rc.get("present"):
        for result, key in (("accepted", "accepted"), ("refused", "refused"), ("duplicate", "duplicates")):
            fam("brokergate_postbacks_total", "counter", "Postbacks by result, every receiver summed").add(
                rc.get(key, 0), result=result)
        if rc.get("last_postback_age_s") is not None and rc.get("last_postback_ms"):
            fam("brokergate_receiver_last_postback_age_seconds", "gauge", "Seconds since the last postback").add(
                rc["last_postback_age_s"])
    fam("brokergate_beat_heartbeat_age_seconds", "gauge", "Seconds since Beat last ticked").add(beat.get("heartbeat_age_s"))
    fam("brokergate_beat_lock_held", "gauge", "1 when a Beat holds the RedBeat lock").add(1 if beat.get("lock_held") else 0)


def collect(snapshot: Mapping[str, Any], accounts: Mapping[str, Any], orders: Mapping[tuple[str, str], int]) -> list[Family]:
    """Every family from a :func:`common.health.gather` snapshot, the accounts (for caps) and
    :func:`active_order_states`. Pure: the unit of the tests and of :func:`scrape`."""
    fam = _Families()
    fam("brokergate_up", "gauge", "1 when Redis answered this scrape").add(1)
    _account_families(fam, snapshot, accounts)
    for (account, state), n in sorted(orders.items()):
        fam("brokergate_orders_active", "gauge", "Orders in flight by state").add(n, account=account, state=state)
    _queue_families(fam, snapshot)
    _feed_families(fam, snapshot.get("feed") or [])
    _order_socket_families(fam, snapshot.get("order_sockets") or [])
    _receiver_and_beat_families(fam, snapshot.get("receiver") or {}, snapshot.get("beat") or {})
    return list(fam.values())


def scrape(r: Any, accounts: Mapping[str, Any]) -> str:
    """One scrape: the exposition text, ``brokergate_up 0`` alone when Redis does not answer."""
    import redis as redis_lib

    from common.health import gather

    t0 = time.perf_counter()
    try:
        snap = gather(r, accounts, app=None, ask_workers=False)
        fams = collect(snap, accounts, active_order_states(r))
    except redis_lib.RedisError as e:
        log.warning("metrics: Redis did not answer: %s", e)
        fams = [Family("brokergate_up", "gauge", "1 when Redis answered this scrape", [({}, 0)])]
    took = Family("brokergate_scrape_duration_seconds", "gauge", "How long this scrape took")
    took.add(round(time.perf_counter() - t0, 6))
    return render([*fams, took])


class MetricsServer:
    """``GET /metrics`` (the text above) and ``GET /healthz`` on a threading HTTP server.
    Accounts are re-read on every scrape, so an account added to the file appears without a
    restart."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, r: Any = None,
                 accounts: Any = None) -> None:  # fmt: skip
        from brokergate.cli import load_accounts_for_reading

        self._r = r
        self._accounts = accounts or load_accounts_for_reading  # a callable returning the accounts
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    body, status, ctype = outer.metrics_text().encode(), 200, CONTENT_TYPE
                elif self.path == "/healthz":
                    body, status, ctype = b"ok\n", 200, "text/plain"
                else:
                    body, status, ctype = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:  # scrapes every 15 s would flood the log
                log.debug("metrics: " + fmt, *args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def metrics_text(self) -> str:
        from common.redis import get_redis

        return scrape(self._r if self._r is not None else get_redis(), self._accounts())

    def start(self) -> MetricsServer:
        """Serve on a background thread (tests, embedding)."""
        threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def cmd_serve(args: argparse.Namespace) -> int:
    import signal

    server = MetricsServer(args.host, args.port)

    def on_signal(signum: int, _frame: object) -> None:
        # shutdown() waits for serve_forever to notice, so not from the thread serving it
        threading.Thread(target=server.httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"metrics on http://{args.host}:{server.port}/metrics", flush=True)
    server.httpd.serve_forever()
    server.httpd.server_close()
    return 0


def add_commands(sub: Any) -> None:
    m = sub.add_parser("metrics", help="Prometheus metrics read from Redis")
    msub = m.add_subparsers(dest="metrics_command", required=True)
    s = msub.add_parser("serve", help="serve /metrics (Prometheus text) and /healthz")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.set_defaults(func=cmd_serve)
