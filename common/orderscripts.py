"""The Lua side of the order store: the constants every ``common/lua/order_*.lua`` script starts
with, generated from the state machine in ``common/orderstate.py`` (so Lua and Python cannot
disagree), and how an order script is loaded and keyed. Shared by :mod:`common.orderstore` (the
moves), :mod:`common.orderrecords` (the reads) and :mod:`common.ordermodifies`.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from common import keys
from common.lua import LuaScript, script_text
from common.models import Order
from common.orderstate import (
    BROKER_STATES,
    OUR_VERDICTS,
    RANK,
    TERMINAL_STATES,
    TRANSITIONS,
    WAKE_STATES,
    OrderState,
)
from common.settings import settings

__all__ = [
    "CANCEL_RECHECK_S",
    "DONE_TTL_S",
    "HISTORY_MAX",
    "NOT_DURABLE",
    "NOT_SENT_CANCEL",
    "OPEN_RECHECK_S",
    "create_keys",
    "order_keys",
    "prelude",
    "retention_ms",
    "script",
    "text",
]

DONE_TTL_S = 3600  # a wake-up list outlives any handle that may still read it
OPEN_RECHECK_S = 3600  # an OPEN order that hears nothing for this long is reconciled by the sweeper
CANCEL_RECHECK_S = 2  # an order whose cancel is pending is looked at by the sweeper this soon
NOT_SENT_CANCEL = "cancelled before it was sent"  # the message of a cancel that never reached the broker
# History entries kept per order: the first and the latest HISTORY_MAX - 1. Enough for a normal
# life (NEW, SENDING, OPEN, a few modifies, the end) and the last fills of a busy one; bounded,
# because an order filled in hundreds of parts would otherwise grow without end.
HISTORY_MAX = 50


def retention_ms() -> int:
    """How long a settled order stays in Redis (``BROKERGATE_ORDER_RETENTION_DAYS``)."""
    return int(settings().order_retention_days * 86_400_000)


def _lua_set(states: frozenset[OrderState] | set[OrderState]) -> str:
    return "{" + ", ".join(f"[{json.dumps(s.value)}] = true" for s in sorted(states)) + "}"


def prelude() -> str:
    """Lua constants generated from the Python tables, so Lua and Python cannot disagree."""
    transitions = ", ".join(f"[{json.dumps(k.value)}] = {_lua_set(v)}" for k, v in TRANSITIONS.items())
    rank = ", ".join(f"[{json.dumps(k.value)}] = {v}" for k, v in RANK.items())
    return (
        f"local TRANSITIONS = {{{transitions}}}\n"
        f"local RANK = {{{rank}}}\n"
        f"local TERMINAL = {_lua_set(TERMINAL_STATES)}\n"
        f"local WAKE = {_lua_set(WAKE_STATES)}\n"
        f"local OURS = {_lua_set(OUR_VERDICTS)}\n"
        f"local BROKER_SEEN = {_lua_set(BROKER_STATES)}\n"
        f"local CANCEL_RECHECK_MS = {CANCEL_RECHECK_S * 1000}\n"
        f"local NOT_SENT_CANCEL = {json.dumps(NOT_SENT_CANCEL)}\n"
        f"local CHANNEL_PREFIX = {json.dumps(keys.orders_channel(''))}\n"
        f"local DONE_TTL_S = {DONE_TTL_S}\n"
        f"local OPEN_RECHECK_MS = {OPEN_RECHECK_S * 1000}\n"
        f"local HISTORY_MAX = {HISTORY_MAX}\n"
        f"local RETENTION_MS = {retention_ms()}\n"
        f"local RISK_OPEN_PREFIX = {json.dumps(keys.risk_open(''))}\n"
    )


# Order scripts whose writes a failover may lose: a modify's lock (PX, fenced by its token,
# expiring anyway) and annotations (bookkeeping a later move rewrites). Every other one creates
# the order or moves it, and waits for a replica (LuaScript durable: docs/architecture.md § Redis).
NOT_DURABLE = frozenset({"order_modify_lock", "order_annotate"})


@cache
def script(name: str) -> LuaScript:
    """The order script ``common/lua/<name>.lua``, after the prelude and ``order_lib.lua``."""
    return LuaScript(prelude() + script_text("order_lib") + "\n" + script_text(name), durable=name not in NOT_DURABLE)


def order_keys(client_order_id: str) -> list[str]:
    """KEYS[1..3] of every order script: the order hash, its wake-up list, the sweeper's index."""
    return [keys.order(client_order_id), keys.order_done(client_order_id), keys.ORDERS_ACTIVE]


def create_keys(order: Order) -> list[str]:
    return [*order_keys(order.client_order_id), keys.account_orders(order.account)]


def text(v: Any) -> str:
    """A reply (bytes, str or a Lua integer) as text."""
    return v.decode() if isinstance(v, bytes) else str(v)
