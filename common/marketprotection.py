"""brokergate's own market protection, for accounts whose broker refuses market orders from API
clients (the 2026 retail-algo rules; ``BrokerSpec.market_orders``).

An account opts in with ``extra.market_orders = "limit"``: its MARKET orders are then sent as LIMIT
orders at the last traded price plus (a buy) or minus (a sell) ``extra.market_protection_pct``
(default :data:`DEFAULT_PCT`), and its SL-M orders as SL orders whose limit is that far beyond the
trigger. This is what the brokers' own protection does where they have one (a market-protection field,
or the broker's own conversion):
the order fills like a market order in a normal market and rests instead of sweeping the book in a
thin one. The conversion happens in the worker just before the send (the freshest price), the order
keeps the type the strategy asked for in the store, and the price it went out at is recorded on
the order (``sent_as``). The last price comes from the feed (``bg:ltp``), else from the account's
positions snapshot (a square-off's fresh read); with neither the order is refused, never sent blind.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import redis

from common import keys
from common.errors import InvalidOrder
from common.models import Instrument, Order, OrderType, Side
from common.redis import as_text
from common.settings import Account

__all__ = ["DEFAULT_PCT", "as_sent", "limit_price", "protect"]

DEFAULT_PCT = Decimal("1.0")


def limit_price(side: Side, reference: Decimal, pct: Decimal, tick: Decimal) -> Decimal:
    """``reference`` moved ``pct`` percent against the order (up for a buy, down for a sell), on the
    tick grid on the far side (a buy's limit is never under the band, a sell's never over it)."""
    factor = 1 + pct / 100 if side is Side.BUY else 1 - pct / 100
    raw = reference * factor
    steps = (raw / tick).to_integral_value(ROUND_CEILING if side is Side.BUY else ROUND_FLOOR)
    return max(tick, steps * tick)


def _last_price(r: redis.Redis, order: Order) -> Decimal | None:
    raw = r.hget(keys.LTP, order.instrument_key)
    if raw:
        return Decimal(as_text(raw))
    from common import accountstate

    for p in accountstate.read(r, order.account, "positions").items:
        if p.exchange == order.exchange and p.symbol == order.symbol and p.last_price:
            last: Decimal = p.last_price
            return last
    return None


def as_sent(r: redis.Redis, acct: Account, order: Order, instrument: Instrument | None) -> Order:
    """The order as the broker gets it: a MARKET or SL-M order of an account that chose this
    protection (``extra.market_orders = "limit"``) as a LIMIT or SL, recorded on the order as
    ``sent_as``; every other order as it is."""
    if order.order_type not in (OrderType.MARKET, OrderType.SL_M):
        return order
    if acct.market_orders != "limit":
        return order
    pct = Decimal(str(acct.extra.get("market_protection_pct", DEFAULT_PCT)))
    wire = protect(r, order, instrument, pct)
    from common import orderstore

    orderstore.annotate(r, order.client_order_id, {"sent_as": f"{wire.order_type.value} {wire.price}"})
    return wire


def protect(r: redis.Redis, order: Order, instrument: Instrument | None, pct: Decimal = DEFAULT_PCT) -> Order:
    """The order as it goes to a broker that refuses market orders: a MARKET as a LIMIT, an SL-M
    as an SL (other types unchanged). InvalidOrder(order_type) when no last price is known."""
    if order.order_type not in (OrderType.MARKET, OrderType.SL_M):
        return order
    tick = instrument.tick_size if instrument is not None else Decimal("0.05")
    if order.order_type is OrderType.SL_M:
        assert order.trigger_price is not None
        return order.with_(order_type=OrderType.SL,
                           price=limit_price(order.side, order.trigger_price, pct, tick))
    last = _last_price(r, order)
    if last is None:
        raise InvalidOrder("order_type", f"a MARKET order of {order.instrument_key} goes out as a protected LIMIT "
                                         "on this account and no last price is known: subscribe the instrument "
                                         "(brokergate.subscribe_ticks) or place a LIMIT")
    return order.with_(order_type=OrderType.LIMIT, price=limit_price(order.side, last, pct, tick))
