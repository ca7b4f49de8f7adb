"""Celery's task events (``-E``, for Flower), published in batches instead of one Redis PUBLISH
per event.

A worker's event dispatcher buffers task events (``task-received``, ``-started``,
``-succeeded``, ...) and Celery asks its event loop to flush the buffer "soon" after each one, so
with orders arriving one at a time every event is a message of its own: three ``PUBLISH`` es an
order, each through kombu's whole publish path (measured: 14-19% of a worker's CPU an order, the
largest cost after the order's own work). :class:`CoalescedEvents` flushes at most once every
:data:`FLUSH_EVERY_S` instead; the dispatcher still flushes by itself when its buffer holds 24
events (Celery's ``buffer_limit``). Flower sees each event up to :data:`FLUSH_EVERY_S` later,
and in the same order: one ``task.multi`` message carries them.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

__all__ = ["FLUSH_EVERY_S", "CoalescedEvents"]

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 0.1  # Flower's delay, at most; ~10 orders' events in one message at 100 orders/s
# A flush scheduled longer ago than this was lost (a reconnect resets the hub, dropping its
# pending callbacks): schedule another rather than leave the events to the buffer's limit.
STALE_S = 1.0
_NEVER = float("-inf")


class CoalescedEvents:
    """Mixin for Celery's worker ``Consumer``: one flush of the task-event buffer per
    :data:`FLUSH_EVERY_S` (see the module docstring)."""

    hub: Any
    _flush_events: Any

    def on_send_event_buffered(self) -> None:
        hub = self.hub
        if not hub:
            return
        lock = self.__dict__.setdefault("_events_lock", threading.Lock())
        with lock:
            # Called from the pool's threads (task-started, -succeeded) and the hub's (-received):
            # one flush pending at a time. The timer is set from the hub's thread, whose timer
            # heap is not thread-safe; call_soon is.
            now = time.monotonic()
            if now - self.__dict__.get("_events_flush_pending", _NEVER) < STALE_S:
                return
            self.__dict__["_events_flush_pending"] = now
        hub.call_soon(self._schedule_events_flush)

    def _schedule_events_flush(self) -> None:
        self.hub.call_later(FLUSH_EVERY_S, self._flush_events_coalesced)

    def shutdown(self) -> None:
        """Celery's, after publishing what the buffer holds: the Events step closes the dispatcher
        without flushing, and a flush may still be waiting for its timer."""
        self._flush_events_coalesced()
        super().shutdown()  # type: ignore[misc]  # Celery's Consumer, next in the MRO

    def _flush_events_coalesced(self) -> None:
        with self.__dict__.setdefault("_events_lock", threading.Lock()):
            # Cleared before the flush: an event buffered during it schedules the next one.
            self.__dict__["_events_flush_pending"] = _NEVER
        try:
            self._flush_events()
        except Exception as e:  # events are for Flower: never a reason to stop the worker
            log.warning("task events not published (%r)", e)
