"""Postback receiver benchmarks: postbacks accepted per second, and POST → ``orders:<account>`` latency.

The receiver runs as production runs it (``python -m feed.postback``, its own process, on a
private Redis, with the real order store); the load generator is an asyncio client on
pre-built keep-alive requests in this process, and a subscriber thread takes the time each
update appears on the account's channel.

- :func:`bench_throughput`: closed loop, ``connections`` keep-alive connections, every postback a
  COMPLETE for a distinct stored order: accepted/s. Anchor: a bare Starlette endpoint (read the
  body, answer 200) on the same uvicorn, same load generator: the HTTP ceiling of this machine.
- :func:`bench_latency`: open loop at a fixed rate (well under capacity: a broker sends a few
  postbacks a second per user), POST sent → message received on ``orders:<account>``, p50/p99.
  Also the keep-alive round trip with one connection (the Nagle check: ~1 ms, not ~40 ms).

    python -m bench.postback            # print the records
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from bench.report import Progress, Record, noop, percentile
from bench.stack import Listener, private_redis
from devtools.processes import stop_process
from devtools.redisserver import free_port
from devtools.waiting import until

REPO = Path(__file__).resolve().parents[1]
SECRET = "bench-api-secret-0123456789"
ACCOUNT = "kite1"
ACCOUNTS_TOML = f"""
[accounts.{ACCOUNT}]
broker = "kite"
user_id = "AB1234"
password = "env:BENCH_KITE_PASSWORD"
totp_secret = "env:BENCH_KITE_TOTP"
api_key = "benchkey"
api_secret = "env:BENCH_KITE_SECRET"
"""
ENV = {"BENCH_KITE_PASSWORD": "pw-bench", "BENCH_KITE_TOTP": "JBSWY3DPEHPK3PXP", "BENCH_KITE_SECRET": SECRET}

TARGET_RATE = 1000.0  # accepted/s; brokers send a few per second per user, so this is headroom
TARGET_P99_MS = 5.0


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise RuntimeError(f"server did not start: {out[-2000:]}") from None
            time.sleep(0.05)


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_listening(port, proc)
        yield
    finally:
        stop_process(proc, grace_s=10)


@contextlib.contextmanager
def receiver(redis_url: str) -> Iterator[int]:
    """``python -m feed.postback`` on a free port, against ``redis_url``; yields the port."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="bg-bench-pb-acc-"))
    (workdir / "accounts.toml").write_text(ACCOUNTS_TOML)
    env = {**ENV, "BROKERGATE_ACCOUNTS": str(workdir / "accounts.toml"), "BROKERGATE_REDIS_URL": redis_url,
           "BROKERGATE_LOG_LEVEL": "WARNING"}  # fmt: skip
    with _process(["-m", "feed.postback", "--host", "127.0.0.1", "--port", str(port)], env, port):
        yield port


@contextlib.contextmanager
def plain_server() -> Iterator[int]:
    """The anchor: a bare Starlette endpoint on the same uvicorn (body read, 200 answered)."""
    port = free_port()
    with _process(["-m", "bench.postback", "--serve-plain", str(port)], {}, port):
        yield port


def _serve_plain(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from feed.postback import listen_socket

    async def ok(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"status": "accepted"})

    app = Starlette(routes=[Route("/postback/{account}", ok, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[listen_socket("127.0.0.1", port)])


def _requests(r: redis.Redis, n: int, prefix: str) -> list[tuple[str, bytes]]:
    """``n`` stored orders and, for each, one signed COMPLETE postback as raw HTTP/1.1 bytes."""
    from common import orderstore
    from common.brokers.kite.updates import postback_checksum
    from common.models import Order

    # Zerodha's recorded postback: data the tests keep (tests/paths.py says where it comes from).
    fixture = json.loads((REPO / "tests" / "data" / "kite" / "postback.json").read_text())
    out: list[tuple[str, bytes]] = []
    pipe_orders = []
    for i in range(n):
        order = Order(
            account=ACCOUNT,
            exchange="NSE",
            symbol="SBIN",
            side="BUY",
            quantity=1,
            client_order_id=f"{prefix}{i:08d}",
        )
        pipe_orders.append(order)
        body = dict(
            fixture, tag=order.client_order_id, order_id=f"{prefix[:4]}{i:012d}", average_price=470.05
        )
        body["checksum"] = postback_checksum(body["order_id"], body["order_timestamp"], SECRET)
        raw = json.dumps(body).encode()
        head = (
            f"POST /postback/{ACCOUNT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n"
        ).encode()
        out.append((order.client_order_id, head + raw))
    for order in pipe_orders:
        orderstore.create(r, order)
    return out


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def _closed_loop(port: int, reqs: list[tuple[str, bytes]], connections: int) -> tuple[float, int]:
    """Send everything over ``connections`` keep-alive connections; (seconds, count of 200s)."""
    queue = list(reversed(reqs))
    ok = 0

    async def worker() -> None:
        nonlocal ok
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while queue:
            _, raw = queue.pop()
            writer.write(raw)
            if await _read_response(reader) == 200:
                ok += 1
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - t0, ok


async def _open_loop(
    port: int, reqs: list[tuple[str, bytes]], rate: float, connections: int
) -> dict[str, float]:
    """Send at ``rate``/s spread over ``connections``; returns the send time of each id."""
    sent: dict[str, float] = {}
    conns = []
    for _ in range(connections):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.append((reader, writer, asyncio.Lock()))
    start = time.perf_counter()

    async def one(i: int, coid: str, raw: bytes) -> None:
        reader, writer, lock = conns[i % connections]
        async with lock:  # one request in flight per connection (HTTP/1.1, no pipelining)
            sent[coid] = time.perf_counter()
            writer.write(raw)
            await _read_response(reader)

    tasks = []
    for i, (coid, raw) in enumerate(reqs):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, coid, raw)))
    await asyncio.gather(*tasks)
    for _, writer, _ in conns:
        writer.close()
    return sent


def _keepalive_rtt_ms(port: int, reqs: list[tuple[str, bytes]]) -> float:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")
        times = []
        for _, raw in reqs:
            t0 = time.perf_counter()
            s.sendall(raw)
            length = 0
            while (line := f.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            f.read(length)
            times.append(time.perf_counter() - t0)
    return percentile(times, 50) * 1000


def bench_throughput(n: int = 6000, connections: int = 16, progress: Progress = noop) -> Record:
    with private_redis() as url:
        r = redis.Redis.from_url(url)
        reqs = _requests(r, n, "tp")
        with receiver(url) as port:
            asyncio.run(_closed_loop(port, reqs[:300], connections))  # warm-up (those orders settle)
            seconds, ok = asyncio.run(_closed_loop(port, reqs[300:], connections))
        rate = ok / seconds
        progress(f"receiver: {rate:.0f} accepted/s ({ok} of {n - 300})")
        with plain_server() as port:
            asyncio.run(_closed_loop(port, reqs[:300], connections))
            a_seconds, a_ok = asyncio.run(_closed_loop(port, reqs[300:], connections))
        anchor = a_ok / a_seconds
        progress(f"bare endpoint: {anchor:.0f} req/s")
    return Record(
        name="postback receiver: accepted postbacks/s",
        value=round(rate, 1),
        unit="postbacks/s",
        target=f">= {TARGET_RATE:.0f}/s (checksum, replay guard, order store, publish)",
        passed=rate >= TARGET_RATE and ok == n - 300,
        anchor="bare Starlette endpoint, same uvicorn and load generator",
        anchor_value=round(anchor, 1),
        ratio=round(rate / anchor, 3),
        notes=f"{connections} keep-alive connections, {n - 300} postbacks, each a COMPLETE for a stored order",
    )


def bench_latency(
    n: int = 1000, rate: float = 100.0, connections: int = 4, progress: Progress = noop
) -> Record:
    with private_redis() as url:
        r = redis.Redis.from_url(url)
        reqs = _requests(r, n + 200, "lt")
        with receiver(url) as port:
            rtt_ms = _keepalive_rtt_ms(port, reqs[:200])
            seen: dict[str, float] = {}  # client_order_id -> perf_counter() when its update arrived
            sub = Listener(r, f"orders:{ACCOUNT}", time.perf_counter,
                           lambda at, data: seen.__setitem__(json.loads(data)["client_order_id"], at))
            sub.start()
            sent = asyncio.run(_open_loop(port, reqs[200:], rate, connections))
            until(lambda: len(seen) >= len(sent), 10, 0.05)
            sub.close()
    lat = [(seen[c] - t) * 1000 for c, t in sent.items() if c in seen]
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    progress(
        f"POST -> orders:<account>: p50 {p50:.2f} ms, p99 {p99:.2f} ms at {rate:.0f}/s; keep-alive rtt {rtt_ms:.2f} ms"
    )
    return Record(
        name="postback POST -> orders:<account> p99",
        value=round(p99, 3),
        unit="ms",
        target=f"<= {TARGET_P99_MS} ms at {rate:.0f} postbacks/s",
        passed=p99 <= TARGET_P99_MS and len(lat) == len(sent),
        anchor="keep-alive POST round trip, one connection (Nagle check: ~1 ms, not ~40 ms)",
        anchor_value=round(rtt_ms, 3),
        notes=f"p50 {p50:.2f} ms; {len(lat)}/{len(sent)} seen; open loop over {connections} connections",
        extra={"p50_ms": round(p50, 3), "rate_per_s": rate, "keepalive_rtt_ms": round(rtt_ms, 3)},
    )


def run(progress: Progress = noop) -> list[Record]:
    return [bench_throughput(progress=progress), bench_latency(progress=progress)]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-plain":
        _serve_plain(int(sys.argv[2]))
    else:
        for rec in run(progress=print):
            print(rec)
