"""The request log behind `GET /_paper/requests`: every request and WebSocket handshake the
paper broker saw, in arrival order, stamped by one monotonic clock."""

from __future__ import annotations

import bisect
import time
from typing import Any


class RequestLog:
    def __init__(self) -> None:
        self._entries: list[dict[str, Any]] = []

    def record(
        self,
        broker: str | None,
        user_id: str | None,
        endpoint_class: str,
        method: str,
        path: str,
        status: int,
        tag: str | None = None,
        arrival_ns: int | None = None,
        client: str | None = None,
    ) -> None:
        """Log one request; `arrival_ns` (`time.monotonic_ns()`) defaults to now; `client`: the address
        it came from (what the static-IP rule checks). Handshakes are logged with status 101
        (accepted) or the refusal's 4xx."""
        entry = {
            "arrival_ns": arrival_ns if arrival_ns is not None else time.monotonic_ns(),
            "broker": broker,
            "user_id": user_id,
            "endpoint_class": endpoint_class,
            "method": method,
            "path": path,
            "status": status,
            "tag": tag,
            "client": client,
        }
        # Responses finish out of arrival order (a delayed one ends last); keep the list sorted.
        bisect.insort(self._entries, entry, key=lambda e: e["arrival_ns"])

    def entries(self) -> list[dict[str, Any]]:
        return list(self._entries)

    def clear(self) -> None:
        self._entries.clear()
