"""brokergate for strategies: ``import brokergate`` is all a strategy needs.

Orders::

    import brokergate
    from brokergate import Order

    handle = brokergate.place_order(Order(account="acct1", exchange="NSE", symbol="INFY",
                                          side="BUY", quantity=1))
    for update in handle.updates(timeout_s=30):   # the order as stored now, then each push
        print(update.state, update.filled_quantity, update.average_price)

Ticks::

    with brokergate.subscribe_ticks(["NSE:INFY"], mode="quote", account="acct1") as ticks:
        tick = ticks.get(timeout_s=5)              # a Tick; prices in 1/tick.price_divisor rupee

Account state (from Redis, with its age; ``max_age_s`` reads the broker first, within the caps)::

    brokergate.positions("acct1")                  # [Position]: net qty, average, P&L marked to the ticks
    brokergate.funds("acct1", max_age_s=5)         # Funds: available cash and margin, per segment
    brokergate.orders("acct1", open_only=True)     # what a restarted strategy must manage again

One signal on every account of a group (``[groups.family]`` in the accounts file), sized per account::

    group = brokergate.place_order_group("family", {"exchange": "NSE", "symbol": "INFY", "side": "BUY"},
                                         sizing=brokergate.Multiplier(10))   # 10 x each account's multiplier
    group.wait(10)                                 # {account: {state, filled_quantity, average_price, error}}

Every order update of an account, in a background thread::

    listener = brokergate.on_order_update("acct1", print)
    ...
    listener.stop()

The names here are the public, stable surface (``__all__``); the ``common``, ``workers`` and
``feed`` packages are the implementation and may change. The submodules ``cli``, ``launch``,
``flower`` and ``metrics`` are the operator's process entry points (the ``brokergate`` command,
``python -m brokergate.flower``), not for strategies: ``import brokergate`` loads none of them. A strategy needs the Redis URL
(``BROKERGATE_REDIS_URL``) and the accounts file's public fields (``BROKERGATE_ACCOUNTS``),
never an account's secrets. The README's "API" section documents every name and every Order
field.
"""

from __future__ import annotations

from importlib import metadata as _metadata
from typing import Any

from common.chains import ChainRow, OptionChain
from common.client import (
    OrderHandle,
    account_state,
    atm_strike,
    cancel_order,
    expiries,
    funds,
    future,
    get_order,
    halt,
    holdings,
    margin_required,
    modify_order,
    option_chain,
    orders,
    place_order,
    pnl,
    positions,
    resume,
    trades,
)
from common.errors import (
    Ambiguous,
    BrokerError,
    BrokerGateError,
    BrokerUnavailable,
    ConfigError,
    DeadlineExceeded,
    EgressRefused,
    Halted,
    InvalidOrder,
    LoginFailed,
    OrderRejected,
    RateLimited,
    RiskRefused,
    TokenExpired,
)
from common.fanout import GroupHandle, Refusal, get_group, place_order_group
from common.models import (
    TERMINAL_STATES,
    Instrument,
    Order,
    OrderState,
    OrderType,
    OrderUpdate,
    Product,
    Side,
    Tick,
    Validity,
)
from common.order_updates import OrderUpdateListener, on_order_update
from common.portfolio import Funds, Holding, Margin, Position, Segment, Trade
from common.sizing import CapitalProportional, Fixed, Multiplier
from common.slicing import SlicedHandle
from common.ticks import TickSubscription, subscribe_ticks, unsubscribe

__all__ = [
    "TERMINAL_STATES",
    "Ambiguous",
    "BrokerError",
    "BrokerGateError",
    "BrokerUnavailable",
    "CapitalProportional",
    "ChainRow",
    "ConfigError",
    "DeadlineExceeded",
    "EgressRefused",
    "Fixed",
    "Funds",
    "GroupHandle",
    "Halted",
    "Holding",
    "Instrument",
    "InvalidOrder",
    "LoginFailed",
    "Margin",
    "Multiplier",
    "OptionChain",
    "Order",
    "OrderHandle",
    "OrderRejected",
    "OrderState",
    "OrderType",
    "OrderUpdate",
    "OrderUpdateListener",
    "Position",
    "Product",
    "RateLimited",
    "Refusal",
    "RiskRefused",
    "Segment",
    "Side",
    "SlicedHandle",
    "Tick",
    "TickSubscription",
    "TokenExpired",
    "Trade",
    "Validity",
    "__version__",
    "account_names",
    "account_state",
    "atm_strike",
    "cancel_order",
    "expiries",
    "funds",
    "future",
    "get_group",
    "get_order",
    "halt",
    "holdings",
    "margin_required",
    "modify_order",
    "on_order_update",
    "option_chain",
    "orders",
    "place_order",
    "place_order_group",
    "pnl",
    "positions",
    "resume",
    "setup_logging",
    "subscribe_ticks",
    "trades",
    "unsubscribe",
]

try:
    __version__ = _metadata.version("brokergate")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"


def account_names() -> list[str]:
    """The accounts of the accounts file (``BROKERGATE_ACCOUNTS``), in file order. Reads the
    public fields only: no secret variable needs to be set."""
    from brokergate.cli import load_accounts_for_reading

    return list(load_accounts_for_reading())


def setup_logging(**overrides: Any) -> None:
    """brokergate's logging for a strategy process: one line an event (JSON with
    ``BROKERGATE_LOG_JSON=1``), level ``BROKERGATE_LOG_LEVEL``, every known secret redacted.
    ``level=`` and ``json=`` override the environment."""
    from common.logs import setup_logging as _setup
    from common.settings import settings

    s = settings()
    _setup(overrides.get("level", s.log_level), overrides.get("json", s.log_json))
