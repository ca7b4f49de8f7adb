"""Every Redis key, pub/sub channel, Celery queue and task name brokergate uses, from one place.

Keys carry the ``bg:`` prefix; pub/sub channels for strategies (``ticks:``, ``orders:``)
do not, so that a strategy in any language can subscribe by the documented name.
"""

from __future__ import annotations

PREFIX = "bg:"

# --- tokens (common/tokens.py) --------------------------------------------------------
def token(account: str) -> str:
    """Hash: access token, feed token, issued_at_ms, expires_at_ms, version. Expires with the token."""
    return f"{PREFIX}token:{account}"


def token_version(account: str) -> str:
    """Counter of the account's token versions; never expires, so versions only grow
    (a reader holding version 7 must never be handed a "new" version 1 after expiry)."""
    return f"{PREFIX}token:{account}:version"


TOKEN_CHANGED = f"{PREFIX}token-changed"  # pub/sub: "<account> <version>" on every new token


def login_lock(account: str) -> str:
    """Single-flight lock: one login per account at a time across every worker and host."""
    return f"{PREFIX}login:lock:{account}"


def login_done(account: str, trading_day: str) -> str:
    """Idempotency mark of the daily login, derived from account + trading day."""
    return f"{PREFIX}login:done:{account}:{trading_day}"


def login_error(account: str) -> str:
    """The last login failure (a hash: at_ms, type, message), shown by ``brokergate status``."""
    return f"{PREFIX}login:error:{account}"


# --- limiter (common/ratelimit.py) ----------------------------------------------------
def limit_scope(broker: str, counted_per: str, identity: str) -> str:
    """Who the broker counts a request for: ``<broker>:<user|app>:<user_id or api_key>``
    (``BrokerSpec.caps_counted_per``). Every account with the same scope shares one limiter
    state, because the broker counts their requests as one. Account names cannot hold ``:``,
    so a scope never reads as an account name."""
    return f"{broker}:{counted_per}:{identity}"


def limit(scope: str, endpoint_class: str) -> str:
    """Limiter state (a sorted set of slots, all windows) of one endpoint class (orders, quote,
    ..., or the shared budget ``all``) of a :func:`limit_scope`. (The legacy ``Limiter(r,
    account, ...)`` passes an account name as the scope: a per-account state.)"""
    return f"{PREFIX}limit:{scope}:{endpoint_class}"


def backoff(scope: str, endpoint_class: str) -> str:
    """Set after a broker rate-limit answer; the limiter waits it out. Counted in stats."""
    return f"{PREFIX}backoff:{scope}:{endpoint_class}"


def stats(account: str) -> str:
    """Hash of counters for an account (rate_limited, reconciled, duplicates_avoided, ...)."""
    return f"{PREFIX}stats:{account}"


# Not stats("redis"): "redis" is a valid account name. Hash of counters of the Redis layer itself
# (wait_short: durable writes fewer replicas acknowledged in time than asked; common/lua).
REDIS_STATS = f"{PREFIX}redis:stats"


# --- pre-trade risk limits (common/risk.py) ------------------------------------------------------
def risk_limits(scope: str) -> str:
    """Hash limit -> value: the run-time overrides of a scope's limits (``account:<name>`` or
    ``strategy:<name>``) over the accounts file's; ``none`` lifts a limit. No TTL."""
    return f"{PREFIX}risk:limits:{scope}"


def risk_open(account: str) -> str:
    """Set: the account's orders let through by the worker's risk check or open at the broker, and
    not settled yet (the order scripts add OPEN ones and drop settled ones): ``max_open_orders``
    counts it, O(1)."""
    return f"{PREFIX}risk:open:{account}"


def risk_rate(scope: str) -> str:
    """Sorted set: client_order_id -> Redis ms it was let through, the last 60 s, per
    ``strategy:<name>`` (or ``account:<name>`` for orders without one): ``max_orders_per_minute``."""
    return f"{PREFIX}risk:rate:{scope}"


# --- orders (workers/orders.py, common/orderstore.py) ----------------------------------
def order(client_order_id: str) -> str:
    """Hash: state, account, broker_order_id, request, history, last error, deadline. Expires
    the order retention after the order is settled (``Settings.order_retention_days``)."""
    return f"{PREFIX}order:{client_order_id}"


def parent_order(client_order_id: str) -> str:
    """JSON {request, children}: an order sliced above the freeze quantity (common/slicing.py);
    expires with the retention."""
    return f"{PREFIX}parent:{client_order_id}"


def group_order(group_id: str) -> str:
    """JSON {request, group, children: {account: id}, sliced: {account: [ids]}, refused: {account:
    error}}: one signal placed on many accounts (common/fanout.py); expires with the retention."""
    return f"{PREFIX}group:{group_id}"


def modify_lock(client_order_id: str) -> str:
    """Short fenced lock: one modify of an order at a time, across every worker (value: its token)."""
    return f"{PREFIX}modify-lock:{client_order_id}"


ORDERS_ACTIVE = f"{PREFIX}orders:active"  # sorted set: non-terminal order ids by deadline (ms), for the sweeper


def account_orders(account: str) -> str:
    """Sorted set: the account's order ids by creation time (ms), trimmed by the order retention;
    what ``common.client.orders`` lists. Not ``bg:orders:<account>``: "active" is a valid account
    name, and its index must never be the sweeper's."""
    return f"{PREFIX}orders:account:{account}"


def order_done(client_order_id: str) -> str:
    """List that receives one element when the order reaches a state a handle waits for."""
    return f"{PREFIX}order-done:{client_order_id}"


# --- instruments (common/instruments.py) ----------------------------------------------
def instruments(account: str) -> str:
    """Hash EXCHANGE:SYMBOL -> instrument JSON (token, lot size, tick size)."""
    return f"{PREFIX}instruments:{account}"


def instrument_tokens(account: str) -> str:
    """Hash broker token -> EXCHANGE:SYMBOL, the reverse map the feed decodes with."""
    return f"{PREFIX}instruments:{account}:by-token"


def instrument_chains(account: str) -> str:
    """Hash ``EXCHANGE:UNDERLYING`` -> JSON {expiry: [kinds]} and ``EXCHANGE:UNDERLYING:EXPIRY`` ->
    JSON of that expiry's contracts ([[strike, right, symbol], ...] and the future's symbol): what
    ``expiries`` and ``option_chain`` read in one field (common/instruments.py)."""
    return f"{PREFIX}instruments:{account}:chains"


def instruments_meta(account: str) -> str:
    """Hash: refreshed_at_ms, count of the last instrument master refresh."""
    return f"{PREFIX}instruments:{account}:meta"


# --- feed (feed/) -----------------------------------------------------------------------
def feed_subs(account: str) -> str:
    """Hash EXCHANGE:SYMBOL -> mode (ltp, quote, full): what the feed must keep subscribed."""
    return f"{PREFIX}feed:subs:{account}"


FEED_CONTROL = f"{PREFIX}feed:control"  # pub/sub: "<account>" when its subscriptions changed


def feed_heartbeat(account: str, socket_no: int) -> str:
    """Hash with a TTL: connected, last_frame_ms, ticks, reconnects, malformed, instruments."""
    return f"{PREFIX}hb:feed:{account}:{socket_no}"


def ticks_channel(exchange: str, symbol: str) -> str:
    return f"ticks:{exchange}:{symbol}"


LTP = f"{PREFIX}ltp"  # hash EXCHANGE:SYMBOL -> last price (rupees, exact decimal string)


# --- order updates (feed/postback.py, common/orderupdates.py) --------------------------
def orders_channel(account: str) -> str:
    return f"orders:{account}"


RECEIVER_HEARTBEAT = f"{PREFIX}hb:receiver"  # hash with a TTL: started, last_postback_ms, accepted, refused


def postback_seen(account: str, digest: str) -> str:
    """Replay guard for one exact postback body."""
    return f"{PREFIX}postback:seen:{account}:{digest}"


# --- processes ----------------------------------------------------------------------------
BEAT_HEARTBEAT = f"{PREFIX}hb:beat"
REDBEAT_PREFIX = f"{PREFIX}redbeat:"


# --- Celery queues --------------------------------------------------------------------------
AUTH_QUEUE = "auth"
DEFAULT_QUEUE = "default"


def orders_queue(account: str) -> str:
    return f"orders.{account}"


def urgent_queue(account: str) -> str:
    """Cancels, modifies and urgent orders: an exit is never stuck behind a burst of entries."""
    return f"orders.{account}.urgent"


def place_queue(account: str, urgent: bool) -> str:
    """The queue of a ``brokergate.place_order`` message: urgent orders skip the line."""
    return urgent_queue(account) if urgent else orders_queue(account)


# --- Celery task names: stable strings a strategy may enqueue by (send_task); routed by ----------
# workers/app.py:route_task. Everyone (client, beat, feed, workers) sends and registers them by
# these names, never by a literal, and common/ never imports the worker code that defines them.
PLACE_TASK = "brokergate.place_order"
CANCEL_TASK = "brokergate.cancel_order"
MODIFY_TASK = "brokergate.modify_order"
LOGIN_TASK = "brokergate.login"
REFRESH_INSTRUMENTS_TASK = "brokergate.refresh_instruments"
SWEEP_TASK = "brokergate.sweep_orders"
RECONCILE_TASK = "brokergate.reconcile_account"


# --- kombu's Redis transport (kombu writes these; the sweeper only reads them) -------------------
# Checked against kombu.transport.redis.Channel by tests/orders/test_redrive.py.
KOMBU_UNACKED = "unacked"  # hash delivery tag -> JSON [message, exchange, routing key] of messages workers hold
KOMBU_UNACKED_INDEX = "unacked_index"  # sorted set delivery tag -> when a consumer recorded it (epoch s, its clock)
KOMBU_PRIORITY_SEP = "\x06\x16"  # a priority-N message of queue Q sits in the list "Q" + SEP + "N" (N > 0)
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)


def queue_lists(queue: str) -> list[str]:
    """The Redis lists kombu keeps a queue's waiting messages in, one per priority step."""
    return [f"{queue}{KOMBU_PRIORITY_SEP}{p}" if p else queue for p in KOMBU_PRIORITY_STEPS]


# --- order-update push path (feed/orderupdates.py, feed/order_socket.py) -------------------------
def order_socket_heartbeat(account: str) -> str:
    """Hash with a TTL: connected, last_frame_ms, messages, reconnects, of an account's order-update socket."""
    return f"{PREFIX}hb:order-socket:{account}"


def reconcile_requested(account: str) -> str:
    """Short-lived mark: a reconcile of this account was just requested (debounces reconnect storms)."""
    return f"{PREFIX}reconcile:requested:{account}"


# --- order workers (workers/liveness.py) ---------------------------------------------------------
def worker_alive(name: str) -> str:
    """String with a short TTL, renewed by a live worker: an order claimed by a worker whose mark
    has gone (a whole host crashed) is sent again before its deadline by the sweeper."""
    return f"{PREFIX}worker:alive:{name}"


def worker_held(name: str) -> str:
    """Set: client_order_ids whose place message the worker has received and not yet started (in
    its prefetch or rate-limit bucket). No TTL: it outlives a crash, so the sweeper can send those
    orders again instead of waiting out kombu's visibility timeout; removed once handled."""
    return f"{PREFIX}worker:held:{name}"


WORKERS = f"{PREFIX}workers"  # set: names of order workers that publish liveness marks



# --- account state (common/accountstate.py) ------------------------------------------------------
def account_state(account: str, kind: str) -> str:
    """Hash item key -> JSON of one position / holding / trade (``kind``), or ``funds`` -> JSON: the
    account's last snapshot of that kind, corrected by pushed fills between reads."""
    return f"{PREFIX}acct:{account}:{kind}"


def account_state_meta(account: str) -> str:
    """Hash ``<kind>_at_ms`` (last read from the broker, Redis ms) and ``<kind>_pushed_ms`` (last
    pushed fill applied): what a snapshot's age is counted from."""
    return f"{PREFIX}acct:{account}:meta"


def account_state_refreshing(account: str, kind: str) -> str:
    """Short-lived lock: one process is reading this kind from the broker (single flight)."""
    return f"{PREFIX}acct:{account}:{kind}:refreshing"


def account_state_channel(account: str) -> str:
    """Pub/sub: ``<kind>`` whenever that snapshot of the account changed (a read or a pushed fill)."""
    return f"{PREFIX}acct:{account}:changed"


ACCOUNT_STATE_TASK = "brokergate.refresh_account_state"


# --- trading safety (common/safety.py) -------------------------------------------------------------
def halt(account: str) -> str:
    """Hash reason, at_ms, by, square_off: the account is halted (the kill switch) until resumed.
    No TTL: a halt survives every restart."""
    return f"{PREFIX}halt:{account}"


HALT_ALL = f"{PREFIX}halt-all"  # hash as halt(): every account is halted (``brokergate halt --all``)
HALT_CHANNEL = f"{PREFIX}halt-changed"  # pub/sub: "<account or *> halted|resumed"
