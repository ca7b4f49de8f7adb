"""The paper broker's ASGI app: Kite and Angel REST at their own paths, the WebSocket routes of
paper.ws_kite / paper.ws_angel when present, the /_paper control API, and the background tasks
(price walk + matching every 200 ms, postback delivery)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from paper import control
from paper.caps import CapLimiter
from paper.gateway import DropConnectionMiddleware, Paper
from paper.matching import MatchingEngine
from paper.postbacks import PostbackSender
from paper.state import PaperState

log = logging.getLogger("paper")

MATCH_INTERVAL_S = 0.2


# Each dialect's REST and WebSocket modules, each with ``routes(state)``.
DIALECT_MODULES = ("paper.kite_rest", "paper.angel_rest", "paper.ws_kite", "paper.ws_angel")
DIALECT_MODULES += ("paper.shoonya_rest", "paper.ws_shoonya")
DIALECT_MODULES += ("paper.fyers_rest", "paper.ws_fyers")


def _dialect_routes(state: PaperState) -> list[BaseRoute]:
    out: list[BaseRoute] = []
    for name in DIALECT_MODULES:
        out.extend(importlib.import_module(name).routes(state))
    return out


async def _not_found(request: Request) -> Response:
    """Unknown paths answer in the dialect the path belongs to, and are logged like any request."""
    paper: Paper = request.app.state.paper
    path = request.url.path
    if path.startswith("/rest/"):
        broker = "angel"
        response: Response = JSONResponse(
            {"status": False, "message": "Resource not found", "errorcode": "AB1004", "data": None}, 404
        )
    else:
        broker = "kite"
        response = JSONResponse(
            {"status": "error", "message": "Route not found", "data": None, "error_type": "GeneralException"}, 404
        )
    paper.state.log.record(broker, None, "other", request.method, path, 404)
    return response


def build_paper(state: PaperState) -> Paper:
    postbacks = PostbackSender(state)
    engine = MatchingEngine(state, on_change=postbacks.on_order_change)
    return Paper(state=state, limiter=CapLimiter(), engine=engine, postbacks=postbacks)


async def _match_loop(paper: Paper) -> None:
    while True:
        await asyncio.sleep(MATCH_INTERVAL_S)
        try:
            paper.engine.tick()
        except Exception:  # one bad tick must not stop matching for the rest of the session
            log.exception("matching tick failed")


def create_app(state: PaperState) -> Any:
    """The ASGI callable (Starlette wrapped in the connection-drop layer)."""
    paper = build_paper(state)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        paper.postbacks.start()
        matcher = asyncio.get_running_loop().create_task(_match_loop(paper))
        try:
            yield
        finally:
            matcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await matcher
            await paper.postbacks.stop()

    routes: list[BaseRoute] = [
        *control.routes(),
        *_dialect_routes(state),
        # Last: HTTP only, so WebSocket routes are unaffected.
        Route("/{path:path}", _not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.paper = paper
    wrapped = DropConnectionMiddleware(app)
    wrapped.paper = paper  # type: ignore[attr-defined]
    return wrapped
