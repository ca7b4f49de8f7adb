"""The postback receiver: ``POST /postback/<account>``, ``GET /openapi.json``, ``GET /healthz``.

    python -m feed.postback [--host 127.0.0.1] [--port 8701]

Its own process (not inside the feed) because it is the one component the internet calls:
it sits behind TLS and a reverse proxy, restarts and scales on its own, and a feed restart
(token refresh, resharding) must not drop postbacks, nor a burst of postbacks delay ticks.
:func:`serve_in_thread` runs it inside another process when that is wanted (tests, demo).
:class:`PostbackReceiver` holds the routes; the request checks are in :mod:`feed.postback_input`
and the OpenAPI document in :mod:`feed.postback_schema`.

A request, in order (each step's refusal is final):
  1. size: Content-Length over the cap → 413 without reading; the body is read with the cap
     whatever Content-Length says (it may lie, or be absent with chunked encoding) → 413;
  2. JSON object with the postback's fields, types checked → 400 naming the field;
  3. the account (by name in the URL) exists, its broker signs postbacks, and the checksum
     matches its api_secret in constant time → else 401, the same answer for an unknown
     account and a bad checksum, so the receiver does not reveal which accounts exist;
  4. replay guard: the same body again → 200 ``duplicate``, nothing applied;
  5. :func:`feed.orderupdates.handle_broker_message` → 200 ``accepted``.
Bad input never causes a 5xx: anything unexpected while reading or checking the input is a
400; a 503 means only that Redis is unreachable (try again).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from common import keys
from common.models import OrderUpdate
from common.settings import Account
from feed import orderupdates
from feed.postback_input import MAX_BODY_BYTES, Refused, digest, owner, parse, postback_modules, read_capped
from feed.postback_schema import openapi_schema

__all__ = [
    "MAX_BODY_BYTES",
    "PostbackReceiver",
    "ReceiverStats",
    "create_app",
    "listen_socket",
    "main",
    "serve_in_thread",
]

log = logging.getLogger("feed.postback")

REPLAY_TTL_S = 2 * 86400  # postbacks are per trading day; two days covers late redeliveries
HEARTBEAT_TTL_S = 15
HEARTBEAT_EVERY_S = 1.0


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message}, status_code=status)


class ReceiverStats:
    """Counters, flushed to ``keys.RECEIVER_HEARTBEAT`` as increments (so several receivers add up)."""

    COUNTERS = ("accepted", "refused", "duplicates")

    def __init__(self) -> None:
        self.accepted = 0
        self.refused = 0
        self.duplicates = 0
        self.last_postback_ms = 0
        self._flushed = dict.fromkeys(self.COUNTERS, 0)
        self.started_ms = int(time.time() * 1000)

    def flush(self, r: redis.Redis) -> None:
        counts = {name: getattr(self, name) for name in self.COUNTERS}
        pipe = r.pipeline(transaction=False)
        pipe.hset(
            keys.RECEIVER_HEARTBEAT,
            mapping={
                "started": self.started_ms,
                "pid": os.getpid(),
                "last_postback_ms": self.last_postback_ms,
            },
        )
        for name, n in counts.items():
            if n != self._flushed[name]:
                pipe.hincrby(keys.RECEIVER_HEARTBEAT, name, n - self._flushed[name])
        pipe.expire(keys.RECEIVER_HEARTBEAT, HEARTBEAT_TTL_S)
        pipe.execute()
        self._flushed = counts


class PostbackReceiver:
    """One receiver: its accounts and Redis (read when first needed), counters, and routes.

    :meth:`app` is the ASGI app; every route and the lifespan are methods, so each step of a
    request reads on its own (see the module docstring for the order)."""

    def __init__(
        self,
        *,
        accounts: Mapping[str, Account] | None = None,
        redis_client: redis.Redis | None = None,
        reconcile_on_start: bool = True,
        heartbeat: bool = True,
    ) -> None:
        self.mods = postback_modules()
        self.stats = ReceiverStats()
        self.reconcile_on_start = reconcile_on_start
        self.heartbeat = heartbeat
        self._accounts = accounts
        self._r = redis_client
        self._schema = openapi_schema()

    def accounts(self) -> Mapping[str, Account]:
        if self._accounts is None:
            from common.settings import accounts as load

            self._accounts = load()
        return self._accounts

    def redis(self) -> redis.Redis:
        if self._r is None:
            from common.redis import get_redis

            self._r = get_redis()
        return self._r

    def apply(self, account: Account, body: dict[str, Any], digest: str) -> tuple[str, OrderUpdate | None, bool]:
        """The Redis part, run in a worker thread so the event loop keeps reading requests."""
        r = self.redis()
        seen = keys.postback_seen(account.name, digest)
        if not r.set(seen, "1", nx=True, ex=REPLAY_TTL_S):
            return "duplicate", None, False
        try:
            update, changed = orderupdates.handle_broker_message(account, body, "postback", r=r)
        except BaseException:
            # Not applied: forget the body, so the same postback sent again is applied then.
            with contextlib.suppress(redis.RedisError):
                r.delete(seen)
            raise
        return ("accepted" if update is not None else "ignored"), update, changed

    async def _checked(self, request: Request, name: str) -> tuple[Account, dict[str, Any]]:
        """Steps 1 to 3: the body within the cap, a postback, signed for an account we have."""
        accounts = self.accounts()
        raw = await read_capped(request, MAX_BODY_BYTES)
        body = parse(raw, self.mods)
        account = accounts.get(name)
        mod = self.mods.get(account.broker) if account is not None else None
        if account is None or mod is None or not mod.verify_postback(body, account.api_secret.get()):
            raise Refused(401, "unauthorized")
        return owner(account, body, accounts), body

    async def postback(self, request: Request) -> Response:
        name = request.path_params["account"]
        self.accounts()  # a broken accounts file is the server's fault: not caught below
        try:
            account, body = await self._checked(request, name)
        except Refused as exc:
            self.stats.refused += 1
            log.info("postback for %r refused: %d %s", name, exc.status, exc.message)
            return _error(exc.status, exc.message)
        except ClientDisconnect:
            self.stats.refused += 1
            return _error(400, "client disconnected before the body was complete")
        except Exception:  # bad input must never become a 5xx; log it to find the gap
            self.stats.refused += 1
            log.exception("postback for %s: unexpected error while checking input", name)
            return _error(400, "malformed postback")
        try:
            status, update, changed = await run_in_threadpool(self.apply, account, body, digest(body))
        except redis.RedisError as exc:
            log.warning("postback for %s not applied: Redis: %s", name, exc)
            return _error(503, "temporarily unavailable: send again")
        if status == "duplicate":
            self.stats.duplicates += 1
        else:
            self.stats.accepted += 1
        self.stats.last_postback_ms = int(time.time() * 1000)
        state = update.state.value if update is not None else None
        return JSONResponse({"status": status, "applied": changed, "state": state})

    async def healthz(self, request: Request) -> Response:
        try:
            ok = bool(await run_in_threadpool(self.redis().ping))
        except redis.RedisError:
            ok = False
        return JSONResponse(
            {
                "status": "ok" if ok else "degraded",
                "redis": ok,
                "accepted": self.stats.accepted,
                "refused": self.stats.refused,
            },
            status_code=200 if ok else 503,
        )

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self._schema)

    async def _heartbeat_loop(self) -> None:
        while True:
            with contextlib.suppress(redis.RedisError):
                await run_in_threadpool(self.stats.flush, self.redis())
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    def _reconcile_all(self) -> None:
        for acct in self.accounts().values():
            if acct.broker in self.mods:
                orderupdates.request_reconcile(
                    acct.name,
                    "postback receiver started",
                    r=self.redis(),
                    debounce_ms=orderupdates.RECONCILE_DEBOUNCE_MS,
                )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(self._heartbeat_loop()) if self.heartbeat else None
        if self.reconcile_on_start:
            try:
                await run_in_threadpool(self._reconcile_all)
            except Exception:
                log.exception("reconcile on start failed")
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(redis.RedisError):
                await run_in_threadpool(self.stats.flush, self.redis())

    @staticmethod
    async def on_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal error")

    def app(self) -> Starlette:
        app = Starlette(
            routes=[
                Route("/postback/{account}", self.postback, methods=["POST"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/openapi.json", self.openapi, methods=["GET"]),
            ],
            lifespan=self.lifespan,
            exception_handlers={500: self.on_error},
        )
        app.state.stats = self.stats
        return app


def create_app(**kw: Any) -> Starlette:
    """The receiver as an ASGI app; the keywords are :class:`PostbackReceiver`'s.

    ``accounts`` defaults to the accounts file, ``redis_client`` to the settings' Redis. With
    ``reconcile_on_start`` it asks for one reconcile of every account whose broker sends
    postbacks when it starts: while it was down, postbacks were lost (a postback gap).
    """
    return PostbackReceiver(**kw).app()


def _uvicorn_config(app: Starlette, host: str, port: int, **kw: Any) -> Any:
    import uvicorn

    # httptools + uvloop where present; access logs off (one line per postback is noise
    # at volume; the heartbeat counts them).
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, **kw)


class _Server:
    """A uvicorn server running in a thread: ``.url``, ``.stop()``."""

    def __init__(self, server: Any, thread: threading.Thread, host: str, port: int) -> None:
        self.server, self.thread, self.host, self.port = server, thread, host, port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose accepted connections have TCP_NODELAY.

    Measured here: uvicorn on the stdlib asyncio loop, given a socket made as
    ``socket.socket(AF_INET, SOCK_STREAM)`` (proto 0, which is how uvicorn's own bind_socket
    makes them for --workers/--reload), answered a keep-alive POST in 44 ms instead of
    0.2 ms: asyncio sets TCP_NODELAY only when ``sock.proto == IPPROTO_TCP``, so Nagle met
    delayed ACK on every response. Creating the socket with IPPROTO_TCP and setting
    TCP_NODELAY on the listener (Linux copies it to accepted sockets) fixes it on every loop.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def serve_in_thread(app: Starlette, host: str = "127.0.0.1", port: int = 0, **kw: Any) -> _Server:
    """Run ``app`` on uvicorn in a daemon thread; returns once it listens (port 0 picks a free one)."""
    import uvicorn

    sock = listen_socket(host, port)
    port = sock.getsockname()[1]
    server = uvicorn.Server(_uvicorn_config(app, host, port, **kw))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="postback-receiver", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("postback receiver did not start")
        time.sleep(0.01)
    return _Server(server, thread, host, port)


def main(argv: list[str] | None = None) -> None:
    from common.logs import setup_logging
    from common.settings import accounts, require_secrets, settings

    s = settings()
    parser = argparse.ArgumentParser(
        prog="python -m feed.postback", description="brokergate postback receiver"
    )
    parser.add_argument("--host", default=s.postback_host)
    parser.add_argument("--port", type=int, default=s.postback_port)
    args = parser.parse_args(argv)
    setup_logging(s.log_level, s.log_json)
    accts = accounts()  # a bad accounts file fails here, at start, with a clear message
    # So does a missing secret this process uses: the API secret behind a postback's checksum.
    require_secrets([a for a in accts.values() if a.broker in postback_modules()], fields=["api_secret"])
    import uvicorn

    sock = listen_socket(args.host, args.port)
    log.info("postback receiver on http://%s:%d (%d accounts)", args.host, args.port, len(accts))
    uvicorn.Server(_uvicorn_config(create_app(accounts=accts), args.host, args.port)).run(sockets=[sock])


if __name__ == "__main__":
    main()
