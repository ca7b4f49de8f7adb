"""What the paper broker's sockets share: handshake logging, refusal and the connection cap
(:class:`Handshake`), socket faults, an abrupt (no close frame) disconnect, closing on the end of
the user's session (:class:`SessionBound`), the tick-clock sender loop (:class:`TickingSocket`),
and the hook-up to the state's registries and listeners while a socket is served
(:func:`serve_hooked`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from paper.orders import PaperOrder
from paper.state import PaperState
from paper.tickrate import Batch, tick_clock
from paper.users import User

__all__ = [
    "CLOSE",
    "POLL_S",
    "Handshake",
    "SessionBound",
    "SocketFaults",
    "TickingSocket",
    "abort",
    "refuse",
    "serve_hooked",
]


@dataclass
class Handshake:
    """A socket's handshake of ``broker`` at ``path``, logged once: 101 accepted, 4xx refused (by
    the route, or when the message that authenticates a socket comes)."""

    state: PaperState
    websocket: WebSocket
    broker: str
    path: str
    arrival_ns: int = field(default_factory=time.monotonic_ns)

    def log(self, user_id: str | None, status: int) -> None:
        self.state.log.record(self.broker, user_id, "ws", "GET", self.path, status, arrival_ns=self.arrival_ns)

    async def deny(self, user_id: str | None, status: int, body: str = "") -> None:
        """Refuse the handshake with ``status`` (bad or missing credentials: 401, 403)."""
        self.log(user_id, status)
        await refuse(self.websocket, status, body)

    async def admit(
        self, user_id: str, open_now: set[Any], limit: int, refusal: str = "Connection limit exceeded"
    ) -> bool:
        """Accept an authenticated handshake unless ``open_now`` already holds ``limit`` sockets
        (then 429 with ``refusal``, as the brokers cap connections)."""
        if len(open_now) >= limit:
            await self.deny(user_id, 429, refusal)
            return False
        await self.websocket.accept()
        self.log(user_id, 101)
        return True


async def refuse(websocket: WebSocket, status: int, body: str = "") -> None:
    """Refuse the handshake with an HTTP status.

    Closing before accept makes uvicorn answer 403; other statuses need the ASGI denial
    response extension, which uvicorn's websockets implementation offers.
    """
    if status != 403 and "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(PlainTextResponse(body or str(status), status_code=status))
    else:
        await websocket.close()


def _find_transport(send: Callable[..., Any]) -> asyncio.BaseTransport | None:
    """The server's transport behind an ASGI ``send``, looking through wrapper closures
    (Starlette's exception middleware wraps ``send`` in a closure)."""
    todo: list[Any] = [send]
    seen: set[int] = set()
    while todo:
        fn = todo.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        owner = getattr(fn, "__self__", None)
        transport = getattr(owner, "transport", None)
        # Duck-typed: uvloop's transports do not derive from asyncio.BaseTransport.
        if callable(getattr(transport, "abort", None)):
            return transport  # type: ignore[no-any-return]
        for cell in getattr(fn, "__closure__", None) or ():
            with contextlib.suppress(ValueError):  # empty cell
                if callable(cell.cell_contents):
                    todo.append(cell.cell_contents)
        wrapped = getattr(fn, "__wrapped__", None)
        if wrapped is not None:
            todo.append(wrapped)
    return None


def transport_of(websocket: WebSocket) -> Any:
    """The server transport of a socket (to pause its reading: a frozen server), or None."""
    return websocket.scope.get("paper.transport") or _find_transport(websocket._send)


async def abort(websocket: WebSocket) -> None:
    """Drop the TCP connection without a close frame, as a network failure would.

    Falls back to a 1011 close when the transport cannot be reached (another ASGI server).
    """
    transport = transport_of(websocket)
    if transport is not None and callable(getattr(transport, "abort", None)):
        transport.abort()
        return
    with contextlib.suppress(Exception):
        await websocket.close(code=1011)


@dataclass
class SocketFaults:
    """Per-socket view of ``state.faults``: the socket's sender loop takes the socket faults of
    its user (drop, stall, malformed frame) through it."""

    state: PaperState
    broker: str
    user_id: str
    stalled_until: float = 0.0

    def stalled(self) -> bool:
        return time.monotonic() < self.stalled_until

    def stall_left_s(self) -> float:
        return max(0.0, self.stalled_until - time.monotonic())

    def take_drop(self) -> bool:
        return self.state.faults.take("drop_socket", self.broker, self.user_id)

    def take_stall(self) -> bool:
        """Start a stall if one is pending: nothing is sent for its ``duration_s`` (default 5 s)."""
        fault = self.state.faults.take_fault("stall_socket", self.broker, self.user_id)
        if fault is None:
            return False
        duration_s = fault.duration_s if fault.duration_s is not None else 5.0
        if fault.count is None:
            # A duration-only fault stays active for its whole duration; consume it for this
            # socket's purposes by stalling until it ends rather than re-arming every loop.
            remaining = fault.added_at + duration_s - time.monotonic()
            duration_s = max(0.0, remaining)
        self.stalled_until = time.monotonic() + duration_s
        return True

    def take_malformed(self) -> bool:
        return self.state.faults.take("malformed_frame", self.broker, self.user_id)

    async def wait_stall(self) -> None:
        """Return once no stall is running (a stalled socket sends nothing, replies included)."""
        while self.stalled():
            await asyncio.sleep(min(self.stall_left_s(), POLL_S))


# How often a sender loop wakes without a tick, to check faults and heartbeats.
POLL_S = 0.1
# How long a reorder_updates fault holds an update when no later one comes to overtake it: the
# update arrives late, never lost (losing updates is what drop_socket is for).
REORDER_HOLD_S = 1.0
# Put on a socket's ``out`` to close it cleanly once what was queued before has gone (the answer
# to a refused connect).
CLOSE = ""


class SessionBound:
    """An accepted socket of a ``broker``'s user (None until a socket that authenticates by a
    message has been told who), which closes once the user's session ends (expire_tokens,
    logout, a new login, reset): ``session_valid`` says whether the credentials it connected
    with still hold. What goes on ``out`` is sent as text or binary messages (:meth:`send_out`)."""

    broker: str

    def __init__(self, state: PaperState, websocket: WebSocket, user: User | None = None) -> None:
        self.state = state
        self.websocket = websocket
        self.user = user
        self.user_id = user.user_id if user is not None else ""
        self.closing = asyncio.Event()
        self._hooked: tuple[set[Any], bool] | None = None  # (open_now, orders) of hook_up
        self.out: asyncio.Queue[str | bytes] = asyncio.Queue()
        self._held_update: str | None = None
        self._held_timer: asyncio.TimerHandle | None = None
        self._modify_counts: dict[str, int] = {}

    def was_modified(self, order: PaperOrder) -> bool:
        """Whether ``order`` was modified since this socket last saw it (an update names the event)."""
        seen = self._modify_counts.get(order.order_id, 0)
        self._modify_counts[order.order_id] = order.modify_count
        return order.modify_count > seen

    def push_update(self, text: str) -> None:
        """Put a pushed order update on ``out``, through the update faults of this user:
        ``duplicate_update`` sends it twice, ``reorder_updates`` holds it back until the next
        update has gone (or REORDER_HOLD_S has passed), as a broker's fan-out can."""
        faults = self.state.faults
        if self._held_update is None and faults.take("reorder_updates", self.broker, self.user_id):
            self._held_update = text
            self._held_timer = asyncio.get_running_loop().call_later(REORDER_HOLD_S, self._release_held)
            return
        self.out.put_nowait(text)
        if faults.take("duplicate_update", self.broker, self.user_id):
            self.out.put_nowait(text)
        self._release_held()

    def _release_held(self) -> None:
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        held, self._held_update = self._held_update, None
        if held is not None:
            self.out.put_nowait(held)

    async def send_out(self) -> None:
        """Send what comes into ``out`` until a CLOSE."""
        while True:
            message = await self.out.get()
            await self._wait_to_send()
            if message == CLOSE:
                await self.websocket.close(code=1000, reason="session refused")
                self.closing.set()
                return
            if isinstance(message, bytes):
                await self.websocket.send_bytes(message)
            else:
                await self.websocket.send_text(message)

    async def _wait_to_send(self) -> None:
        """Nothing holds a message back but on a ticking socket (a stall)."""

    def senders(self) -> list[Coroutine[Any, Any, None]]:
        """What :func:`serve_hooked` runs beside receiving."""
        return [self.send_out()]

    def handle_text(self, text: str) -> None:
        """A text message of the client: nothing to do unless the socket reads them."""

    def handle_bytes(self, data: bytes) -> None:
        """A binary message of the client: its text, unless the socket speaks a binary protocol."""
        self.handle_text(data.decode("utf-8", "replace"))

    def hook_up(self, open_now: set[Any], orders: bool = False) -> None:
        """Hook the socket of a known user up until :func:`serve_hooked` unhooks it: into
        ``open_now`` (the user's open sockets, which the connection cap counts), the user's order
        events (``orders``: :meth:`on_order`) and session changes (:meth:`on_session`)."""
        self._hooked = (open_now, orders)
        open_now.add(self)
        if orders:
            self.state.add_order_listener(self.broker, self.user_id, self.on_order)
        self.state.add_session_listener(self.on_session)

    def unhook(self) -> None:
        if self._hooked is None:
            return
        open_now, orders = self._hooked
        open_now.discard(self)
        if orders:
            self.state.remove_order_listener(self.broker, self.user_id, self.on_order)
        self.state.remove_session_listener(self.on_session)

    def on_order(self, order: PaperOrder) -> None:
        """An order event of the user, on a socket hooked up with ``orders``."""
        raise NotImplementedError

    def session_valid(self) -> bool:
        raise NotImplementedError

    def on_session(self, user: User) -> None:
        if user.broker == self.broker and user.user_id == self.user_id:
            # Listeners run before the change completes (add_user notifies, then replaces):
            # check the credentials once the event loop is back.
            asyncio.get_running_loop().call_soon(self._recheck_session)

    def _recheck_session(self) -> None:
        if not self.session_valid():
            self.closing.set()


class TickingSocket(SessionBound):
    """A socket on the tick clock, with socket faults (``dropped`` once cut on purpose)."""

    def __init__(self, state: PaperState, websocket: WebSocket, user: User | None = None) -> None:
        super().__init__(state, websocket, user)
        self.clock = tick_clock(state)
        self.socket_id = self.clock.next_socket_id()
        self.faults = SocketFaults(state, self.broker, self.user_id)
        self.dropped = False

    def hook_up(self, open_now: set[Any], orders: bool = False) -> None:
        """As :meth:`SessionBound.hook_up`, and onto the tick clock."""
        super().hook_up(open_now, orders)
        self.clock.register(self)

    def unhook(self) -> None:
        if self._hooked is not None:
            self.clock.unregister(self)
        super().unhook()

    async def _wait_to_send(self) -> None:
        await self.faults.wait_stall()

    def senders(self) -> list[Coroutine[Any, Any, None]]:
        return [self.send_ticks(), self.send_out()]

    async def send_ticks(self) -> None:
        raise NotImplementedError

    async def batches(
        self, ready: Callable[[], bool] | None = None, on_stall: Callable[[bool], None] | None = None
    ) -> AsyncIterator[Batch | None]:
        """The sender loop's wake-ups until the socket closes or is dropped (drop_socket): the
        clock's next step after the last one, or None when none came within POLL_S. Steps
        that pass during a stall (stall_socket) are skipped, as a frozen server would; ``on_stall``
        is told True before each pause of a stall, False when the loop goes on after one. While
        ``ready`` says False (no user yet), the loop only waits."""
        last_step = self.clock.latest.step
        stalled = False
        while not self.closing.is_set():
            if ready is not None and not ready():
                await asyncio.sleep(POLL_S)
                continue
            fault = await self._drop_or_stall((lambda: on_stall(True)) if on_stall else None)
            if fault == "dropped":
                return
            if fault == "stalled":
                stalled = True
                last_step = self.clock.latest.step
                continue
            if stalled and on_stall is not None:
                on_stall(False)
            stalled = False
            batch = await self.clock.wait_after(last_step, POLL_S)
            if batch is not None:
                last_step = batch.step
            yield batch

    async def _drop_or_stall(self, on_stall: Callable[[], None] | None) -> str:
        """Apply the socket faults due now: ``"dropped"`` when the connection was just cut (the
        socket is marked dropped and closing; the caller stops sending), ``"stalled"`` after a silent
        pause of at most POLL_S (the caller skips the steps that passed, as a frozen server
        would; ``on_stall`` runs before each pause), ``""`` when neither is due."""
        faults = self.faults
        if faults.take_drop():
            self.dropped = True
            await abort(self.websocket)
            self.closing.set()
            return "dropped"
        if faults.stalled() or faults.take_stall():
            if on_stall is not None:
                on_stall()
            await asyncio.sleep(min(faults.stall_left_s(), POLL_S))
            return "stalled"
        return ""


async def serve_hooked(sock: SessionBound) -> None:
    """Serve an accepted socket: run its ``senders()`` and hand what the client sends to its
    ``handle_text`` / ``handle_bytes`` until the client leaves, a sender ends, or ``sock.closing``
    is set (then close cleanly, unless a ticking socket was dropped on purpose); then unhook it if
    it was hooked up (by the route when the handshake named the user, else when a message did). A
    ticking socket tells its tick clock after each message (its subscriptions may have changed)."""
    websocket = sock.websocket
    ticking = sock if isinstance(sock, TickingSocket) else None
    tasks = [asyncio.create_task(coro, name=f"{sock.broker}-{coro.__name__}") for coro in sock.senders()]
    closing_task = asyncio.create_task(sock.closing.wait())
    try:
        while True:
            receive = asyncio.create_task(websocket.receive())
            done, _ = await asyncio.wait({receive, closing_task, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                if closing_task in done and not (ticking and ticking.dropped):
                    with contextlib.suppress(Exception):
                        await websocket.close(code=1000, reason="session expired")
                return
            message = receive.result()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                sock.handle_text(message["text"])
            elif message.get("bytes") is not None:
                sock.handle_bytes(message["bytes"])
            if ticking is not None:
                ticking.clock.subscriptions_changed()
    except (WebSocketDisconnect, RuntimeError, OSError):
        return
    finally:
        await _stop(tasks, closing_task)
        sock.unhook()


async def _stop(senders: list[asyncio.Task[None]], closing_task: asyncio.Task[Any]) -> None:
    for task in (*senders, closing_task):
        task.cancel()
    # Bounded: a sender stuck in a blocked write must not keep the socket registered.
    await asyncio.wait(senders, timeout=1.0)
    for task in senders:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a send to a vanished client is the normal end
