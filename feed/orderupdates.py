"""The ONE path for pushed order updates: postbacks, order messages on a ticker socket and
dedicated order-update sockets all end in :func:`on_broker_message`.

    broker payload ──► common/brokers/<broker>/updates.parse_message (pure) ──► OrderUpdate
                   ──► common.orderstore.apply_update(r, update)
                         (moves the order forward per orderstate.RANK only; idempotent;
                          publishes on orders:<account> when it changed something)

Nothing here writes ``bg:order:<id>``: the order store owns it, so a push update, a worker's
own result and reconciliation can never disagree about how an order moves.

Reconciliation (:func:`request_reconcile`) is asked for after an order-update socket
(re)connects and when the postback receiver starts (a receiver that was down is a postback
gap): the Celery task ``brokergate.reconcile_account`` reads the broker's order book, so an
update missed while nobody was listening is still seen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from common import keys
from common.brokers import broker
from common.models import OrderUpdate
from common.settings import Account

__all__ = [
    "handle_broker_message",
    "on_broker_message",
    "request_reconcile",
    "set_applier",
    "set_reconcile_sender",
]

log = logging.getLogger("feed.orderupdates")

RECONCILE_DEBOUNCE_MS = 2000  # receivers starting together ask for one reconcile

Applier = Callable[[redis.Redis, OrderUpdate], bool]
ReconcileSender = Callable[[str], None]

_applier: Applier | None = None
_sender: ReconcileSender | None = None


def set_applier(fn: Applier | None) -> None:
    """Replace how updates are applied (tests; ``None`` restores ``common.orderstore.apply_update``)."""
    global _applier
    _applier = fn


def set_reconcile_sender(fn: ReconcileSender | None) -> None:
    """Replace how a reconcile is requested (tests; ``None`` restores the Celery task)."""
    global _sender
    _sender = fn


def _apply(r: redis.Redis, update: OrderUpdate) -> bool:
    from common.orderstore import apply_update

    return bool((_applier or apply_update)(r, update))


def _account(account: Account | str) -> Account:
    if isinstance(account, Account):
        return account
    from common.settings import account as lookup

    return lookup(account)


def _redis(r: redis.Redis | None) -> redis.Redis:
    if r is not None:
        return r
    from common.redis import get_redis

    return get_redis()


def handle_broker_message(
    account: Account | str, payload: dict[str, Any], source: str, *, r: redis.Redis | None = None
) -> tuple[OrderUpdate | None, bool]:
    """Parse ``payload`` with the account's broker and apply it.

    Returns ``(update, changed)``: ``update`` is None when the payload is not an order update
    (a socket greeting, an error message, an unknown status); ``changed`` is True when the order
    store moved the order (a replay or a late, older update changes nothing).
    """
    acct = _account(account)
    parse = broker(acct.broker).updates.parse_message
    update: OrderUpdate | None = parse(acct.name, payload, source)
    if update is None:
        return None, False
    # An untagged order (placed outside brokergate) goes to the store too: it publishes it for
    # strategies that watch the account, and stores nothing.
    changed = _apply(_redis(r), update)
    return update, changed


def on_broker_message(account: Account | str, payload: dict[str, Any], source: str) -> OrderUpdate | None:
    """The hook every push source calls: parse, then apply through the order store.

    ``source`` is ``postback``, ``socket`` (a ticker or an order-update socket) or ``reconcile``.
    Returns the normalized update, or None when the payload is not an order update. Whether it
    changed the order is :func:`handle_broker_message`'s second value.
    """
    return handle_broker_message(account, payload, source)[0]


# --- reconciliation requests --------------------------------------------------------------------
def _celery_send(account: str) -> None:
    """Send ``brokergate.reconcile_account(account)`` by name, with the producer-only client app
    (the feed process does not import worker code)."""
    from common.client import send_task_by_name

    send_task_by_name(keys.RECONCILE_TASK, args=[account], queue=keys.DEFAULT_QUEUE)


def request_reconcile(
    account: str, reason: str, *, r: redis.Redis | None = None, debounce_ms: int = 0
) -> bool:
    """Ask for the account's order book to be reconciled (Celery task ``brokergate.reconcile_account``).

    Every socket (re)connect asks, without debounce: a reconcile requested before a drop does
    not cover what happened during it, and the socket's backoff already bounds the rate.
    ``debounce_ms`` lets callers that may ask together (several receivers starting) ask once per
    window across every process. Returns True when a request was sent. Never raises: a failed
    request is logged, and the next reconnect (or the sweeper) asks again.
    """
    try:
        if debounce_ms > 0:
            mark = keys.reconcile_requested(account)
            if not _redis(r).set(mark, reason, nx=True, px=debounce_ms):
                return False
        (_sender or _celery_send)(account)
        log.info("%s: reconcile requested (%s)", account, reason)
        return True
    except Exception:  # the push path must keep running even when Celery or Redis is briefly away
        log.exception("%s: could not request a reconcile (%s)", account, reason)
        return False
