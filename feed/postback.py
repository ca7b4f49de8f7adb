"""The postback receiver: ``POST /postback/<account>``, ``GET /openapi.json``, ``GET /healthz``.

    python -m feed.postback [--host 127.0.0.1] [--port 8701]

Its own process (not inside the feed) because it is the one component the internet calls:
it sits behind TLS and a reverse proxy, restarts and scales on its own, and a feed restart
(token refresh, resharding) must not drop postbacks, nor a burst of postbacks delay ticks.
:func:`serve_in_thread` runs it inside another process when that is wanted (tests, demo).

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
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from common import keys
from common.brokers import BROKER_NAMES, broker_module
from common.models import OrderUpdate
from common.settings import Account
from feed import orderupdates

__all__ = [
    "MAX_BODY_BYTES",
    "ReceiverStats",
    "create_app",
    "listen_socket",
    "main",
    "openapi_schema",
    "serve_in_thread",
]

log = logging.getLogger("feed.postback")

MAX_BODY_BYTES = 16 * 1024  # a real postback is ~1 KiB
REPLAY_TTL_S = 2 * 86400  # postbacks are per trading day; two days covers late redeliveries
HEARTBEAT_TTL_S = 15
HEARTBEAT_EVERY_S = 1.0

Handler = Callable[[Account, dict[str, Any], str], tuple[OrderUpdate | None, bool]]


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message}, status_code=status)


class ReceiverStats:
    """Counters, flushed to ``keys.RECEIVER_HEARTBEAT`` as increments (so several receivers add up)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.refused = 0
        self.duplicates = 0
        self.last_postback_ms = 0
        self._flushed = (0, 0, 0)
        self.started_ms = int(time.time() * 1000)

    def flush(self, r: redis.Redis) -> None:
        a, f, d = self.accepted, self.refused, self.duplicates
        da, df, dd = a - self._flushed[0], f - self._flushed[1], d - self._flushed[2]
        pipe = r.pipeline(transaction=False)
        pipe.hset(
            keys.RECEIVER_HEARTBEAT,
            mapping={
                "started": self.started_ms,
                "pid": os.getpid(),
                "last_postback_ms": self.last_postback_ms,
            },
        )
        if da:
            pipe.hincrby(keys.RECEIVER_HEARTBEAT, "accepted", da)
        if df:
            pipe.hincrby(keys.RECEIVER_HEARTBEAT, "refused", df)
        if dd:
            pipe.hincrby(keys.RECEIVER_HEARTBEAT, "duplicates", dd)
        pipe.expire(keys.RECEIVER_HEARTBEAT, HEARTBEAT_TTL_S)
        pipe.execute()
        self._flushed = (a, f, d)


def _postback_modules() -> dict[str, Any]:
    mods = {}
    for name in BROKER_NAMES:
        mod = broker_module(name, "updates")
        if getattr(mod, "HAS_POSTBACK", False):
            mods[name] = mod
    return mods


def openapi_schema() -> dict[str, Any]:
    """The receiver's OpenAPI 3.1 document; the body schema comes from the brokers' updates modules."""
    bodies = [m.POSTBACK_SCHEMA for m in _postback_modules().values()]
    body = bodies[0] if len(bodies) == 1 else {"anyOf": bodies}
    example = next(iter(_postback_modules().values())).POSTBACK_EXAMPLE
    err = {"$ref": "#/components/schemas/Error"}

    def resp(desc: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": desc, "content": {"application/json": {"schema": schema}}}

    return {
        "openapi": "3.1.0",
        "info": {"title": "brokergate postback receiver", "version": "1.0.0"},
        "paths": {
            "/postback/{account}": {
                "post": {
                    "operationId": "postback",
                    "summary": "Receive one broker postback (order update) for an account",
                    "parameters": [
                        {
                            "name": "account",
                            "in": "path",
                            "required": True,
                            "description": "The account's name in the accounts file",
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": body, "example": example}},
                    },
                    "responses": {
                        "200": resp(
                            "Accepted, or a duplicate of one already accepted",
                            {"$ref": "#/components/schemas/Accepted"},
                        ),
                        "400": resp("Not a postback: the message names the field", err),
                        "401": resp("Unknown account, or the checksum does not match", err),
                        "413": resp(f"Body larger than {MAX_BODY_BYTES} bytes", err),
                        "503": resp("Redis is unreachable: nothing was applied; send again", err),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness and Redis reachability",
                    "responses": {
                        "200": resp("Healthy", {"$ref": "#/components/schemas/Health"}),
                        "503": resp("Redis is unreachable", {"$ref": "#/components/schemas/Health"}),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["status", "message"],
                    "properties": {"status": {"const": "error"}, "message": {"type": "string"}},
                },
                "Accepted": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"enum": ["accepted", "duplicate", "ignored"]},
                        "applied": {"type": "boolean"},
                        "state": {"type": ["string", "null"]},
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"enum": ["ok", "degraded"]},
                        "redis": {"type": "boolean"},
                        "accepted": {"type": "integer"},
                        "refused": {"type": "integer"},
                    },
                },
            }
        },
    }


async def _read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise _Refused(400, "Content-Length is not a number")
        if int(declared) > cap:
            raise _Refused(413, f"body larger than {cap} bytes")
    chunks: list[bytes] = []
    size = 0
    # Count what actually arrives: Content-Length may be absent (chunked) or lie.
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise _Refused(413, f"body larger than {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse(raw: bytes, validators: Mapping[str, Any]) -> dict[str, Any]:
    if not raw:
        raise _Refused(400, "empty body: expected a JSON object")
    try:
        body = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # ValueError covers UnicodeDecodeError and digit limits
        raise _Refused(400, f"not valid JSON: {str(exc)[:120]}") from None
    errors: list[str] = []
    for mod in validators.values():
        try:
            return mod.validate_postback(body)  # type: ignore[no-any-return]
        except ValueError as exc:
            errors.append(str(exc))
    raise _Refused(400, "; ".join(errors) or "not a postback")


def _owner(account: Account, body: dict[str, Any], accounts: Mapping[str, Account]) -> Account:
    """The account the postback is about.

    A broker app (one api_key and secret) can serve several users, and its postback URL is
    set once per app, so every user's postbacks arrive at the URL of one account. The body
    names its user: an update for another account of the same app is applied to that
    account; a user that no account of this app has is refused (401), never applied to the
    wrong account's orders.
    """
    user = body.get("user_id")
    if not isinstance(user, str) or not user or user == account.user_id:
        return account
    for other in accounts.values():
        if other.user_id == user and other.broker == account.broker and other.api_key == account.api_key:
            return other
    raise _Refused(401, "unauthorized")


def _digest(body: dict[str, Any]) -> str:
    # Canonical form, so the same postback re-serialized differently is still a replay.
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canon.encode()).hexdigest()


def create_app(
    *,
    accounts: Mapping[str, Account] | None = None,
    redis_client: redis.Redis | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    handler: Handler | None = None,
    reconcile_on_start: bool = True,
    heartbeat: bool = True,
) -> Starlette:
    """The receiver as an ASGI app.

    ``accounts`` defaults to the accounts file, ``redis_client`` to the settings' Redis,
    ``handler`` to :func:`feed.orderupdates.handle_broker_message`. With
    ``reconcile_on_start`` it asks for one reconcile of every account whose broker sends
    postbacks when it starts: while it was down, postbacks were lost (a postback gap).
    """
    mods = _postback_modules()
    stats = ReceiverStats()
    state: dict[str, Any] = {"accounts": accounts, "r": redis_client}

    def get_accounts() -> Mapping[str, Account]:
        if state["accounts"] is None:
            from common.settings import accounts as load

            state["accounts"] = load()
        return state["accounts"]  # type: ignore[no-any-return]

    def get_r() -> redis.Redis:
        if state["r"] is None:
            from common.redis import get_redis

            state["r"] = get_redis()
        return state["r"]  # type: ignore[no-any-return]

    def apply(account: Account, body: dict[str, Any], digest: str) -> tuple[str, OrderUpdate | None, bool]:
        """The Redis part, run in a worker thread so the event loop keeps reading requests."""
        r = get_r()
        seen = keys.postback_seen(account.name, digest)
        if not r.set(seen, "1", nx=True, ex=REPLAY_TTL_S):
            return "duplicate", None, False
        try:
            if handler is not None:
                update, changed = handler(account, body, "postback")
            else:
                update, changed = orderupdates.handle_broker_message(account, body, "postback", r=r)
        except BaseException:
            # Not applied: forget the body, so the same postback sent again is applied then.
            with contextlib.suppress(redis.RedisError):
                r.delete(seen)
            raise
        return ("accepted" if update is not None else "ignored"), update, changed

    async def postback(request: Request) -> Response:
        name = request.path_params["account"]
        accounts = get_accounts()  # a broken accounts file is the server's fault: not caught below
        try:
            raw = await _read_capped(request, max_body_bytes)
            body = _parse(raw, mods)
            account = accounts.get(name)
            mod = mods.get(account.broker) if account is not None else None
            if account is None or mod is None or not mod.verify_postback(body, account.api_secret.get()):
                raise _Refused(401, "unauthorized")
            account = _owner(account, body, accounts)
        except _Refused as exc:
            stats.refused += 1
            log.info("postback for %r refused: %d %s", name, exc.status, exc.message)
            return _error(exc.status, exc.message)
        except ClientDisconnect:
            stats.refused += 1
            return _error(400, "client disconnected before the body was complete")
        except Exception:  # bad input must never become a 5xx; log it to find the gap
            stats.refused += 1
            log.exception("postback for %s: unexpected error while checking input", name)
            return _error(400, "malformed postback")
        try:
            status, update, changed = await run_in_threadpool(apply, account, body, _digest(body))
        except redis.RedisError as exc:
            log.warning("postback for %s not applied: Redis: %s", name, exc)
            return _error(503, "temporarily unavailable: send again")
        if status == "duplicate":
            stats.duplicates += 1
        else:
            stats.accepted += 1
        stats.last_postback_ms = int(time.time() * 1000)
        return JSONResponse(
            {
                "status": status,
                "applied": changed,
                "state": update.state.value if update is not None else None,
            }
        )

    async def healthz(request: Request) -> Response:
        try:
            ok = bool(await run_in_threadpool(get_r().ping))
        except redis.RedisError:
            ok = False
        return JSONResponse(
            {
                "status": "ok" if ok else "degraded",
                "redis": ok,
                "accepted": stats.accepted,
                "refused": stats.refused,
            },
            status_code=200 if ok else 503,
        )

    schema = openapi_schema()

    async def openapi(request: Request) -> Response:
        return JSONResponse(schema)

    async def _heartbeat_loop() -> None:
        while True:
            with contextlib.suppress(redis.RedisError):
                await run_in_threadpool(stats.flush, get_r())
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    def _reconcile_all() -> None:
        for acct in get_accounts().values():
            if acct.broker in mods:
                orderupdates.request_reconcile(
                    acct.name,
                    "postback receiver started",
                    r=get_r(),
                    debounce_ms=orderupdates.RECONCILE_DEBOUNCE_MS,
                )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(_heartbeat_loop()) if heartbeat else None
        if reconcile_on_start:
            try:
                await run_in_threadpool(_reconcile_all)
            except Exception:
                log.exception("reconcile on start failed")
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(redis.RedisError):
                await run_in_threadpool(stats.flush, get_r())

    async def on_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal error")

    app = Starlette(
        routes=[
            Route("/postback/{account}", postback, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers={500: on_error},
    )
    app.state.stats = stats
    return app


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
    require_secrets([a for a in accts.values() if a.broker in _postback_modules()], fields=["api_secret"])
    import uvicorn

    sock = listen_socket(args.host, args.port)
    log.info("postback receiver on http://%s:%d (%d accounts)", args.host, args.port, len(accts))
    uvicorn.Server(_uvicorn_config(create_app(accounts=accts), args.host, args.port)).run(sockets=[sock])


if __name__ == "__main__":
    main()
