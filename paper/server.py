"""Uvicorn wiring: an HTTP protocol that hands the ASGI app its transport (so accept_then_drop
can abort a connection) and sets TCP_NODELAY explicitly (Nagle against delayed ACK would add
~40 ms to every keep-alive request)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from paper.gateway import TRANSPORT_KEY


class PaperHttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[TRANSPORT_KEY] = self.transport  # type: ignore[literal-required]


def uvicorn_kwargs() -> dict[str, Any]:
    return {"http": PaperHttpProtocol, "ws": "auto", "lifespan": "on", "access_log": False}
