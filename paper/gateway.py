"""The request pipeline every broker endpoint goes through, in the order the brokers apply it:
authenticate, the static-IP rule (an order request from an address other than the user's registered
one), the orders-per-second rule (more than 10 order requests in a second from a user whose strategy
is not registered), faults (delay, error_5xx, rate_limit), caps, the handler, then the request log
(an error_5xx with a gateway status replaces the handler's answer: see paper.faults.Faults); plus the
ASGI wrapper that can drop a connection after the handler ran (accept_then_drop).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paper import portfolio
from paper.caps import CapLimiter
from paper.kite.postbacks import PostbackSender
from paper.matching import MatchingEngine, OrderError
from paper.orders import PaperOrder
from paper.rules import ORDERS_PER_SECOND, ORDERS_PER_SECOND_LIMIT, STATIC_IP
from paper.state import PaperState
from paper.users import User

T = TypeVar("T")

# Key in the ASGI scope for the server transport (set by paper.server's protocol) and for the
# per-request control flags; a dict so it survives shallow scope copies.
TRANSPORT_KEY = "paper.transport"
CONTROL_KEY = "paper.control"


class Reply(Exception):
    """Raised anywhere in a handler to answer at once with `response`."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


async def json_object(request: Request, invalid: Callable[[], Response]) -> dict[str, Any]:
    """The request's JSON body as a dict (``{}`` when it is empty or not an object); a body that
    is not JSON answers ``invalid()`` at once."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise Reply(invalid()) from None
    return body if isinstance(body, dict) else {}


@dataclass
class Paper:
    """The app's singletons, reachable from handlers as `request.app.state.paper`."""

    state: PaperState
    limiter: CapLimiter
    engine: MatchingEngine
    postbacks: PostbackSender
    cache: dict[str, Any] = field(default_factory=dict)

    def cached(self, key: str, build: Callable[[], T]) -> T:
        """``build()``, made once per process: the instrument masters (the universe never changes)."""
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]

    def reset(self) -> None:
        self.state.reset()
        self.limiter.clear()
        self.postbacks.clear()


@dataclass
class Call:
    request: Request
    paper: Paper
    broker: str
    endpoint_class: str
    arrival_ns: int
    user: User | None = None
    user_id: str | None = None  # for the log when the user is named but not authenticated
    tag: str | None = None
    accepted: bool = False  # set by order handlers once the broker has acted (accept_then_drop)

    @property
    def state(self) -> PaperState:
        return self.paper.state

    @property
    def authed(self) -> User:
        """The authenticated user, of a handler whose authenticator refuses a request without one."""
        assert self.user is not None
        return self.user

    def books(self, read: Callable[[PaperState, str, str], T]) -> T:
        """``read`` (a paper/portfolio.py book) of the authenticated user."""
        return read(self.state, self.broker, self.authed.user_id)

    def own_orders(self) -> list[PaperOrder]:
        """The authenticated user's orders, in placement order."""
        return self.books(portfolio.orders)

    def own_order(self, order_id: str, message: str = "Order not found") -> PaperOrder:
        """The authenticated user's order ``order_id``; OrderError("not_found", message) when it
        is unknown or another user's."""
        order = self.state.orders.get(order_id)
        if order is None or order.broker != self.broker or self.user is None or order.user_id != self.user.user_id:
            raise OrderError("not_found", message)
        return order


@dataclass
class Dialect:
    """How one broker phrases the pipeline's own answers."""

    broker: str
    unavailable: Callable[[], Response]
    rate_limited: Callable[[], Response]
    # An order request from a client address (the argument) other than the user's registered_ip.
    ip_refused: Callable[[str], Response]


Handler = Callable[[Call], Awaitable[Response]]
Authenticator = Callable[[Call], Awaitable[User | None]]


async def run_endpoint(
    request: Request,
    dialect: Dialect,
    endpoint_class: str,
    handler: Handler,
    authenticate: Authenticator,
) -> Response:
    arrival_ns = time.monotonic_ns()
    paper: Paper = request.app.state.paper
    call = Call(request, paper, dialect.broker, endpoint_class, arrival_ns)
    state = paper.state
    try:
        call.user = await authenticate(call)
        if call.user is not None:
            call.user_id = call.user.user_id
        gateway_status = await _before_handler(call, dialect)
        response = await handler(call)
        if call.accepted and state.faults.take("accept_then_drop", dialect.broker, call.user_id):
            control = request.scope.get(CONTROL_KEY)
            if control is not None:
                control["drop"] = True
        if gateway_status is not None:
            response = gateway_answer(gateway_status)
    except Reply as reply:
        response = reply.response
    state.log.record(
        dialect.broker,
        call.user_id,
        endpoint_class,
        request.method,
        request.url.path,
        response.status_code,
        tag=call.tag,
        arrival_ns=arrival_ns,
        client=request.client.host if request.client else None,
    )
    return response


async def _before_handler(call: Call, dialect: Dialect) -> int | None:
    """The faults and caps a request meets before the broker acts on it; raises Reply with the
    answer that stops it here, else returns the status of a gateway error that replaces the
    broker's answer afterwards (None: the broker's answer stands)."""
    state, uid = call.state, call.user_id
    _check_source_ip(call, dialect)
    _check_orders_per_second(call, dialect)
    delay = state.faults.take_fault("delay", dialect.broker, uid)
    if delay is not None:
        await asyncio.sleep(delay.delay_s or 0)
    error = state.faults.take_fault("error_5xx", dialect.broker, uid)
    if error is not None and error.status in (None, 503):
        raise Reply(dialect.unavailable())
    if state.faults.take("rate_limit", dialect.broker, uid):
        raise Reply(dialect.rate_limited())
    if uid is not None:
        user = call.user or state.find_user(dialect.broker, uid)
        caps = (user.effective_caps() if user else {}).get(call.endpoint_class, [])
        if caps and not call.paper.limiter.admit(dialect.broker, uid, call.endpoint_class, caps):
            raise Reply(dialect.rate_limited())
    # A gateway status: the broker acts first, and the gateway loses its answer.
    return error.status if error is not None else None


def _check_source_ip(call: Call, dialect: Dialect) -> None:
    """The 2026 static-IP rule: only order requests are checked (the brokers let books, positions,
    logins and sockets come from anywhere), and only for a user with a registered_ip."""
    registered = call.user.registered_ip if call.user is not None else None
    if call.endpoint_class != "orders" or not registered:
        return
    client = call.request.client.host if call.request.client else ""
    if client != registered:
        call.state.rule_rejections[STATIC_IP] += 1
        raise Reply(dialect.ip_refused(client))


# The rule's sliding window lives in the caps limiter under a class no endpoint has, so it is
# cleared with the caps at POST /_paper/reset.
_RULE_CLASS = "rule:" + ORDERS_PER_SECOND


def _check_orders_per_second(call: Call, dialect: Dialect) -> None:
    """The 2026 rule of at most 10 orders per second per client per exchange unless the strategy is
    registered with the exchange: a user who is not `registered_algo` gets at most
    ORDERS_PER_SECOND_LIMIT order requests (place, modify, cancel) in any sliding second, refused
    beyond in the dialect's rate-limit answer (Kite's 429 is what Zerodha announced). The gateway
    does not know the exchange before the handler reads the body, so it counts across a user's
    exchanges: stricter than the rule, never laxer. Before the caps, so a request over the rule is
    counted as a rule rejection even where the user's caps would refuse it too; a refused request
    takes no slot, as with the caps."""
    user = call.user
    if call.endpoint_class != "orders" or user is None or user.registered_algo:
        return
    if not call.paper.limiter.admit(dialect.broker, user.user_id, _RULE_CLASS, [f"{ORDERS_PER_SECOND_LIMIT}/s"]):
        call.state.rule_rejections[ORDERS_PER_SECOND] += 1
        raise Reply(dialect.rate_limited())


_GATEWAY_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 504: "Gateway Time-out"}


def gateway_answer(status: int) -> Response:
    """What a load balancer or proxy in front of a broker answers: a bare HTML page (nginx's
    shape), with nothing a broker's error reader would recognise as the broker's own."""
    reason = _GATEWAY_REASONS.get(status, "Server Error")
    body = f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
    return Response(body, status, media_type="text/html")


async def anonymous(call: Call) -> User | None:
    """For public endpoints (instruments, scrip master): no user, no caps."""
    return None


def make_endpoint(
    dialect: Dialect, endpoint_class: str, handler: Handler, authenticate: Authenticator
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint that runs `handler` through the pipeline."""

    async def endpoint(request: Request) -> Response:
        return await run_endpoint(request, dialect, endpoint_class, handler, authenticate)

    return endpoint


class DropConnectionMiddleware:
    """Outermost ASGI layer: when a handler asked to drop (accept_then_drop), swallow the response
    and abort the TCP connection, so the client sees a reset and no answer at all."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        control: dict[str, Any] = {"drop": False}
        scope[CONTROL_KEY] = control

        async def guarded_send(message: Message) -> None:
            if control["drop"]:
                return
            await send(message)

        await self.app(scope, receive, guarded_send)
        if control["drop"]:
            transport = scope.get(TRANSPORT_KEY)
            if transport is None:
                raise ConnectionAbortedError("accept_then_drop without a transport to abort")
            transport.abort()
            # Let the loop run connection_lost, so the server knows not to send a 500 instead.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
