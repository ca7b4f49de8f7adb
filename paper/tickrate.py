"""The tick clock shared by every ticker socket of one paper broker, and its control routes.

One clock per :class:`~paper.state.PaperState`: on each step it moves every instrument that
any socket subscribes to exactly once, so two sockets on the same instrument see the same
price path, and the path stays a pure function of (seed, instrument, step number). Sockets
wait for the next step and encode their share; a slow socket skips steps instead of
queueing them (as a real broker drops a slow consumer's backlog).

Knobs (HTTP, mounted by :func:`paper.kite.ws.routes`):

- ``GET /_paper/ticks`` → ``{"interval_ms", "paused", "step", "sockets"}``.
- ``POST /_paper/ticks`` JSON ``{"interval_ms": int, "paused": bool, "steps": int, "slices": int}``
  (all optional): change the rate, pause/resume, or run ``steps`` steps right now (handy while
  paused: a test then knows exactly which ticks were sent). ``slices`` N > 1 spreads the
  instruments over N consecutive steps (by a hash of the token), as a real exchange's ticks
  arrive spread over the second rather than all at once: 9,000 instruments at 1 tick/s each is
  ``interval_ms=50, slices=20``.
- ``GET /_paper/ticks/last?broker=kite|angel|fyers|shoonya&token=...[&user_id=...]`` → a JSON list, one item per
  open socket that has sent this token: ``{"socket", "broker", "user_id", "mode", "step", "values"}``
  where ``values`` are the integers handed to the encoder (prices in 1/price_divisor rupees).

The default interval is ``PAPER_TICK_INTERVAL_MS`` from the environment, else 250 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from paper.state import PaperState
from paper.universe import PaperInstrument

__all__ = ["Batch", "TickClock", "TickSubscriber", "control_routes", "tick_clock"]

DEFAULT_INTERVAL_MS = 250


class TickSubscriber(Protocol):
    """A socket as the clock sees it."""

    socket_id: int
    broker: str
    user_id: str

    def wanted(self) -> Iterable[tuple[PaperInstrument, bool]]:
        """(instrument, needs depth) for every instrument this socket streams."""
        ...

    def last_sent_for(self, token: str) -> dict[str, Any] | None:
        """What this socket last sent for ``token`` (Kite token or Angel "exchangeType:token")."""
        ...


@dataclass
class Batch:
    """The values of one clock step: ``values[kite_token]`` as from ``PriceSimulator.quote``
    (``depth`` present only when some socket asked for it). ``items`` caches encoded packets
    per (token, mode) so sockets sharing instruments encode each once."""

    step: int
    values: dict[int, dict[str, Any]]
    items: dict[tuple[int, str], bytes] = field(default_factory=dict)


class TickClock:
    def __init__(self, state: PaperState) -> None:
        self.state = state
        env_ms = os.environ.get("PAPER_TICK_INTERVAL_MS")
        self.interval_s = (int(env_ms) if env_ms else DEFAULT_INTERVAL_MS) / 1000
        self.paused = False
        self.slices = 1
        self.step_no = 0
        self.latest = Batch(0, {})
        self.subscribers: dict[int, TickSubscriber] = {}
        self._ids = itertools.count(1)
        # Set (and replaced) at every step; waiters hold the event of the step they wait for.
        # A plain Event with asyncio.timeout, not Condition + wait_for: on 3.11, wait_for can
        # swallow a cancellation that races a wake-up, which left sender tasks unkillable.
        self._stepped = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._by_slice: list[list[tuple[int, PaperInstrument, bool]]] | None = None

    def next_socket_id(self) -> int:
        return next(self._ids)

    def register(self, sub: TickSubscriber) -> None:
        self.subscribers[sub.socket_id] = sub
        self._by_slice = None
        self._ensure_running()

    def unregister(self, sub: TickSubscriber) -> None:
        self.subscribers.pop(sub.socket_id, None)
        self._by_slice = None

    def subscriptions_changed(self) -> None:
        """A socket may have changed what it wants (called after every message a client sends)."""
        self._by_slice = None

    def _wanted_by_slice(self) -> list[list[tuple[int, PaperInstrument, bool]]]:
        """Every subscribed instrument once (with depth if any socket wants it), grouped by slice.
        Kept until the subscriptions change: walking 9,000 subscriptions on every step, to use
        the 1/slices of them that step moves, was most of the paper broker's CPU at full load."""
        if self._by_slice is None:
            needs: dict[int, tuple[PaperInstrument, bool]] = {}
            for sub in list(self.subscribers.values()):
                for inst, depth in sub.wanted():
                    seen = needs.get(inst.kite_token)
                    if seen is None or (depth and not seen[1]):
                        needs[inst.kite_token] = (inst, depth)
            groups: list[list[tuple[int, PaperInstrument, bool]]] = [[] for _ in range(self.slices)]
            for token, (inst, depth) in needs.items():
                groups[_slice_of(token, self.slices) if self.slices > 1 else 0].append((token, inst, depth))
            self._by_slice = groups
        return self._by_slice

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            # Started lazily from the first socket, so the app's lifespan needs no hook.
            self._task = asyncio.get_running_loop().create_task(self._run(), name="paper-tick-clock")

    async def _run(self) -> None:
        next_at = time.monotonic()
        while True:
            if self.paused or not self.subscribers:
                self._wake.clear()
                await _wait_event(self._wake, 0.5)
                next_at = time.monotonic()
                continue
            await self.step()
            # Fixed-rate schedule; if a step overran, start the next one now rather than drift.
            next_at = max(next_at + self.interval_s, time.monotonic())
            self._wake.clear()
            await _wait_event(self._wake, next_at - time.monotonic())

    def configure(self, interval_ms: int | None = None, paused: bool | None = None, slices: int | None = None) -> None:
        if slices is not None:
            if slices < 1:
                raise ValueError("slices must be >= 1")
            self.slices = slices
            self._by_slice = None
        if interval_ms is not None:
            if interval_ms <= 0:
                raise ValueError("interval_ms must be positive")
            self.interval_s = interval_ms / 1000
        if paused is not None:
            self.paused = paused
        self._wake.set()

    async def step(self) -> Batch:
        """Move every subscribed instrument one step and wake the sockets."""
        values: dict[int, dict[str, Any]] = {}
        prices = self.state.prices
        for token, inst, depth in self._wanted_by_slice()[self.step_no % self.slices]:
            values[token] = prices.quote(inst, advance=True, depth=depth)
        self.step_no += 1
        batch = Batch(self.step_no, values)
        self.latest = batch
        stepped, self._stepped = self._stepped, asyncio.Event()
        stepped.set()
        return batch

    async def wait_after(self, step_no: int, timeout_s: float) -> Batch | None:
        """The first batch newer than ``step_no``, or None after ``timeout_s``."""
        if self.latest.step > step_no:
            return self.latest
        await _wait_event(self._stepped, timeout_s)
        return self.latest if self.latest.step > step_no else None

    def snapshot(self) -> dict[str, Any]:
        return {
            "interval_ms": round(self.interval_s * 1000, 3),
            "paused": self.paused,
            "slices": self.slices,
            "step": self.step_no,
            "sockets": [
                {"socket": s.socket_id, "broker": s.broker, "user_id": s.user_id}
                for s in self.subscribers.values()
            ],
        }


@functools.lru_cache(maxsize=65536)
def _slice_of(token: int, slices: int) -> int:
    # A hash, not token % slices: tokens share low bits (exchange token * 256 + segment).
    return zlib.crc32(token.to_bytes(8, "big")) % slices


async def _wait_event(event: asyncio.Event, timeout_s: float) -> None:
    """Wait for ``event`` at most ``timeout_s``. Always yields to the loop: the clock calls this
    after each step, and an overrunning clock must not starve the sockets."""
    if timeout_s <= 0:
        await asyncio.sleep(0)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()


def tick_clock(state: PaperState) -> TickClock:
    """The clock of ``state``, created on first use (kept as ``state.tick_clock``)."""
    if state.tick_clock is None:
        state.tick_clock = TickClock(state)
    return state.tick_clock


def control_routes(state: PaperState) -> list[Route]:
    """``/_paper/ticks`` (GET/POST) and ``/_paper/ticks/last`` (GET)."""

    async def get_ticks(request: Request) -> JSONResponse:
        return JSONResponse(tick_clock(state).snapshot())

    async def post_ticks(request: Request) -> JSONResponse:
        clock = tick_clock(state)
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            interval_ms = body.get("interval_ms")
            paused = body.get("paused")
            steps = int(body.get("steps") or 0)
            slices = body.get("slices")
            clock.configure(
                int(interval_ms) if interval_ms is not None else None,
                bool(paused) if paused is not None else None,
                int(slices) if slices is not None else None,
            )
        except (ValueError, TypeError) as exc:
            return JSONResponse({"status": "error", "message": str(exc)}, status_code=400)
        for _ in range(steps):
            await clock.step()
        return JSONResponse(clock.snapshot())

    async def get_last(request: Request) -> JSONResponse:
        clock = tick_clock(state)
        broker = request.query_params.get("broker", "kite")
        token = request.query_params.get("token", "")
        user_id = request.query_params.get("user_id")
        out: list[dict[str, Any]] = []
        for sub in list(clock.subscribers.values()):
            if sub.broker != broker or (user_id and sub.user_id != user_id):
                continue
            sent = sub.last_sent_for(token)
            if sent is not None:
                out.append({"socket": sub.socket_id, "broker": sub.broker, "user_id": sub.user_id, **sent})
        return JSONResponse(out)

    return [
        Route("/_paper/ticks", get_ticks, methods=["GET"]),
        Route("/_paper/ticks", post_ticks, methods=["POST"]),
        Route("/_paper/ticks/last", get_last, methods=["GET"]),
    ]
