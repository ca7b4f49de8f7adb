"""Kite postbacks: on every order status change of a user with a postback_url, POST the order
body plus `checksum = sha256(order_id + order_timestamp + api_secret)` hex.

Delivery is asynchronous (a queue drained by one task), so an order response never waits for
the receiver. Extra fault kinds: `duplicate_postback` sends a body twice, `reorder_postbacks`
holds a body back and sends it after the next one, as Kite can.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.error
import urllib.request
from typing import Any

from paper.kite.payloads import checksum_hex, kite_order_payload
from paper.orders import PaperOrder
from paper.state import PaperState

log = logging.getLogger("paper.postbacks")


def postback_body(order: PaperOrder, api_secret: str) -> dict[str, Any]:
    body = kite_order_payload(order)
    body.pop("account_id", None)
    body.pop("tags", None)
    body["user_id"] = order.user_id
    body["unfilled_quantity"] = body["pending_quantity"]
    body["app_id"] = 1234
    body["checksum"] = checksum_hex(order.order_id, str(body["order_timestamp"]), api_secret)
    return body


class PostbackSender:
    def __init__(self, state: PaperState) -> None:
        self.state = state
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._held: tuple[str, dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0

    def on_order_change(self, order: PaperOrder) -> None:
        if order.broker != "kite":
            return
        user = self.state.find_user("kite", order.user_id)
        if user is None or not user.postback_url:
            return
        item = (user.postback_url, postback_body(order, user.api_secret))
        faults = self.state.faults
        if self._held is None and faults.take("reorder_postbacks", "kite", order.user_id):
            self._held = item  # goes out right after the next one
            return
        self._queue.put_nowait(item)
        if faults.take("duplicate_postback", "kite", order.user_id):
            self._queue.put_nowait(item)
        if self._held is not None:
            self._queue.put_nowait(self._held)
            self._held = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def clear(self) -> None:
        self._held = None
        while not self._queue.empty():
            self._queue.get_nowait()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            url, body = await self._queue.get()
            try:
                # One at a time, in order, off the event loop (stdlib client: cheap to import).
                await loop.run_in_executor(None, _post_json, url, body)
                self.sent += 1
            except (OSError, urllib.error.URLError) as exc:  # a receiver being down must not stop later ones
                self.failed += 1
                log.warning("postback to %s failed: %s", url, exc)


# Postbacks go straight to the receiver, never through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _post_json(url: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with _OPENER.open(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:  # a 4xx/5xx answer is still a delivery
        return int(exc.code)
