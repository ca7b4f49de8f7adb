"""What the paper broker's ticker sockets share: handshake logging and refusal, socket faults,
and an abrupt (no close frame) disconnect."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from paper.state import PaperState

__all__ = ["SocketFaults", "abort", "log_handshake", "refuse", "serve_socket"]


def log_handshake(
    state: PaperState, broker: str, user_id: str | None, path: str, status: int, arrival_ns: int
) -> None:
    """One request-log entry per handshake: 101 accepted, 4xx refused."""
    state.log.record(broker, user_id, "ws", "GET", path, status, arrival_ns=arrival_ns)


async def admit(
    state: PaperState, websocket: WebSocket, broker: str, user_id: str, path: str, arrival_ns: int,
    open_now: set[Any], limit: int, refusal: str,
) -> bool:
    """Accept an authenticated handshake unless ``open_now`` already holds ``limit`` sockets
    (then 429 with ``refusal``, as the brokers cap connections); either way it is logged."""
    if len(open_now) >= limit:
        log_handshake(state, broker, user_id, path, 429, arrival_ns)
        await refuse(websocket, 429, refusal)
        return False
    await websocket.accept()
    log_handshake(state, broker, user_id, path, 101, arrival_ns)
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
    # paper.gateway's server protocol puts its transport in the scope; else dig it out of send.
    transport = websocket.scope.get("paper.transport") or _find_transport(websocket._send)
    if transport is not None and callable(getattr(transport, "abort", None)):
        transport.abort()
        return
    with contextlib.suppress(Exception):
        await websocket.close(code=1011)


@dataclass
class SocketFaults:
    """Per-socket view of ``state.faults`` for the three socket kinds.

    ``poll()`` is called by the socket's sender loop; it consumes a matching fault and turns
    it into what the loop should do now.
    """

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


class TickSocket(Protocol):
    """A ticking socket as the fault helper sees it."""

    websocket: WebSocket
    faults: SocketFaults
    closing: asyncio.Event
    dropped: bool


async def drop_or_stall(sock: TickSocket, poll_s: float) -> str:
    """Apply the socket faults due now: ``"dropped"`` when the connection was just cut (the
    socket is marked dropped and closing; the caller stops sending), ``"stalled"`` after a silent
    pause of at most ``poll_s`` (the caller skips the steps that passed, as a frozen server
    would), ``""`` when neither is due."""
    faults = sock.faults
    if faults.take_drop():
        sock.dropped = True
        await abort(sock.websocket)
        sock.closing.set()
        return "dropped"
    if faults.stalled() or faults.take_stall():
        await asyncio.sleep(min(faults.stall_left_s(), poll_s))
        return "stalled"
    return ""


async def serve_socket(
    websocket: WebSocket,
    senders: list[asyncio.Task[None]],
    closing: asyncio.Event,
    on_text: Callable[[str], None],
    dropped: Callable[[], bool],
    on_bytes: Callable[[bytes], None] | None = None,
    after_message: Callable[[], None] | None = None,
) -> None:
    """Receive text messages into ``on_text`` until the client leaves, a sender task ends, or
    ``closing`` is set (then close cleanly, unless the socket was ``dropped`` on purpose).
    With ``on_bytes``, binary messages go there as they are (a binary protocol's commands).
    ``after_message`` runs after each message is handled (a tick socket's subscriptions may
    have changed: the tick clock is told)."""
    closing_task = asyncio.create_task(closing.wait())
    try:
        while True:
            receive = asyncio.create_task(websocket.receive())
            done, _ = await asyncio.wait({receive, closing_task, *senders}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                if closing_task in done and not dropped():
                    with contextlib.suppress(Exception):
                        await websocket.close(code=1000, reason="session expired")
                return
            message = receive.result()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None and on_bytes is not None and message.get("bytes") is not None:
                on_bytes(message["bytes"])
            else:
                if text is None and message.get("bytes") is not None:
                    text = message["bytes"].decode("utf-8", "replace")
                if text is not None:
                    on_text(text)
            if after_message is not None:
                after_message()
    except (WebSocketDisconnect, RuntimeError, OSError):
        return
    finally:
        for task in (*senders, closing_task):
            task.cancel()
        # Bounded: a sender stuck in a blocked write must not keep the socket registered.
        await asyncio.wait(senders, timeout=1.0)
        for task in senders:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: a send to a vanished client is the normal end
