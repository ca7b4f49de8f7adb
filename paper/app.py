"""The paper broker's ASGI app: every dialect's REST and WebSocket routes at the broker's own
paths, the /_paper control API, and the background tasks (price walk + matching every 200 ms,
Kite postback delivery)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from paper import control
from paper.angel import rest as angel_rest
from paper.angel import ws as angel_ws
from paper.caps import CapLimiter
from paper.fyers import rest as fyers_rest
from paper.fyers import ws as fyers_ws
from paper.gateway import DropConnectionMiddleware, Paper
from paper.kite import rest as kite_rest
from paper.kite import ws as kite_ws
from paper.kite.postbacks import PostbackSender
from paper.matching import MatchingEngine
from paper.shoonya import rest as shoonya_rest
from paper.shoonya import ws as shoonya_ws
from paper.state import PaperState

log = logging.getLogger("paper")

MATCH_INTERVAL_S = 0.2


# Each dialect's REST and WebSocket modules, each with ``routes(state)``.
DIALECT_MODULES = (kite_rest, angel_rest, kite_ws, angel_ws, shoonya_rest, shoonya_ws, fyers_rest, fyers_ws)


def _dialect_routes(state: PaperState) -> list[BaseRoute]:
    return [route for module in DIALECT_MODULES for route in module.routes(state)]


async def _not_found(request: Request) -> Response:
    """Unknown paths answer in the dialect the path belongs to, and are logged like any request."""
    paper: Paper = request.app.state.paper
    path = request.url.path
    if path.startswith("/rest/"):
        broker, response = "angel", angel_rest.angel_error("AB1004", "Resource not found", 404)
    else:
        broker, response = "kite", kite_rest.kite_error(404, "GeneralException", "Route not found")
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
