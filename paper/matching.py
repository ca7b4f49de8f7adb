"""The paper exchange: order validation, state transitions and fills against simulated prices.

Broker-neutral: the REST dialects translate their fields into `OrderRequest` (Kite names,
integer prices in 1/price_divisor rupees) and map `OrderError.kind` to their own error shapes.

Fills: a MARKET order fills at once at the simulated last price. A LIMIT order that is
marketable when placed fills at once at the last price (never worse than its limit); otherwise it
rests OPEN until the price walk crosses it. SL / SL-M orders rest in TRIGGER PENDING until the
price reaches the trigger, then act as LIMIT / MARKET. The price of every instrument with a
resting order moves one step per `tick()` (the app calls it every 200 ms).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any

from paper.orders import PaperOrder, PaperTrade, now_ist
from paper.state import PaperState
from paper.universe import PaperInstrument
from paper.users import User

ORDER_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")
TRANSACTION_TYPES = ("BUY", "SELL")
MAX_MODIFICATIONS = 25


class OrderError(Exception):
    """kind: "input" (bad field), "order" (refused in this state), "not_found"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass
class OrderRequest:
    instrument: PaperInstrument
    variety: str
    transaction_type: str
    order_type: str
    product: str
    quantity: int
    price: int
    trigger_price: int
    validity: str = "DAY"
    disclosed_quantity: int = 0
    tag: str | None = None


def rupees_to_units(text: str | float | int | None, divisor: int, name: str) -> int:
    """A price as sent ("1570.05") to integer units; raises OrderError("input") if not a number."""
    if text is None or text == "":
        return 0
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise OrderError("input", f"Invalid `{name}`.") from None
    if value < 0:
        raise OrderError("input", f"Invalid `{name}`.")
    return round(value * divisor)


def whole_number(raw: Any, message: str) -> int:
    """A quantity as sent (3, "3") to an int; raises OrderError("input", ``message``) if it is not one."""
    try:
        return int(str(raw))
    except (TypeError, ValueError):
        raise OrderError("input", message) from None


def one_of(values: Mapping[str, Any], key: str, allowed: Container[str], message: str, default: str = "") -> str:
    """``values[key]`` as text (``default`` when absent or empty); raises OrderError("input", ``message``)
    unless it is one of ``allowed``."""
    value = str(values.get(key) or default)
    if value not in allowed:
        raise OrderError("input", message)
    return value


def _check_prices(order_type: str, price: int, trigger_price: int) -> None:
    """The prices an order of ``order_type`` needs are there (a limit price, a trigger)."""
    if order_type not in ORDER_TYPES:
        raise OrderError("input", "Invalid `order_type`.")
    if order_type in ("LIMIT", "SL") and price <= 0:
        raise OrderError("input", "Invalid `price`.")
    if order_type in ("SL", "SL-M") and trigger_price <= 0:
        raise OrderError("input", "Invalid `trigger_price`.")


def freeze_message(inst: PaperInstrument, quantity: int) -> str:
    """The exchange's refusal of an order above the contract's freeze quantity (one text for every
    dialect: each renders the REJECTED order, or the input error of a modify, in its own shape)."""
    return (
        f"Quantity {quantity} is above the freeze quantity {inst.freeze_quantity} of {inst.symbol}: "
        "the exchange refuses a larger order (split it into orders of at most the freeze quantity)."
    )


class MatchingEngine:
    def __init__(self, state: PaperState, on_change: Callable[[PaperOrder], None] | None = None) -> None:
        self.state = state
        # Called after state.notify_order on every visible status change (postbacks hook here).
        self.on_change = on_change

    # ----- transitions -----
    def _changed(self, order: PaperOrder) -> None:
        self.state.notify_order(order)
        if self.on_change is not None:
            self.on_change(order)

    def _history_only(self, order: PaperOrder, status: str) -> None:
        """Transient statuses (PUT ORDER REQ RECEIVED, ...) show in order history only."""
        saved = order.status
        order.status = status
        self.state.notify_order_history_only(order)
        order.status = saved

    def place(self, user: User, req: OrderRequest) -> PaperOrder:
        """Create the order; field errors raise OrderError before an order exists, exchange-side
        refusals (tick size, lot size, index) create a REJECTED order, as at the brokers."""
        if req.transaction_type not in TRANSACTION_TYPES:
            raise OrderError("input", "Invalid `transaction_type`.")
        if req.quantity <= 0:
            raise OrderError("input", "Invalid `quantity`.")
        _check_prices(req.order_type, req.price, req.trigger_price)
        now = now_ist()
        order = PaperOrder(
            order_id=self.state.next_order_id(),
            broker=user.broker,
            user_id=user.user_id,
            variety=req.variety,
            instrument=req.instrument,
            transaction_type=req.transaction_type,
            order_type=req.order_type,
            product=req.product,
            quantity=req.quantity,
            price=req.price if req.order_type in ("LIMIT", "SL") else 0,
            trigger_price=req.trigger_price if req.order_type in ("SL", "SL-M") else 0,
            validity=req.validity,
            disclosed_quantity=req.disclosed_quantity,
            tag=req.tag,
            order_timestamp=now,
        )
        self.state.orders[order.order_id] = order
        for transient in ("PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING"):
            self._history_only(order, transient)
        reason = self._exchange_reject_reason(req)
        if reason is not None:
            order.status = "REJECTED"
            order.status_message = reason
            order.exchange_update_timestamp = now
            self._changed(order)
            return order
        order.exchange_order_id = f"1{order.order_id[-15:]:0>15}"
        order.exchange_timestamp = now
        order.exchange_update_timestamp = now
        order.status = "TRIGGER PENDING" if order.order_type in ("SL", "SL-M") else "OPEN"
        self._changed(order)
        self._try_fill(order)
        if order.validity == "IOC" and order.is_open:
            # Immediate-or-cancel: what did not fill on arrival is cancelled at once.
            self.cancel(order)
        return order

    def _exchange_reject_reason(self, req: OrderRequest) -> str | None:
        inst = req.instrument
        tick = inst.tick_size_paise
        if inst.is_index:
            return "Instrument is not tradable (index)."
        if req.quantity % inst.lot_size:
            return f"Quantity should be a multiple of lot size {inst.lot_size}."
        if inst.freeze_quantity and req.quantity > inst.freeze_quantity:
            return freeze_message(inst, req.quantity)
        for value in (req.price, req.trigger_price):
            if value and tick and value % tick:
                return (
                    f"Tick size for this script is {tick / inst.price_divisor:.2f}. "
                    "Kindly enter price in the multiple of tick size for this script"
                )
        return None

    def modify(
        self,
        order: PaperOrder,
        quantity: int | None = None,
        price: int | None = None,
        order_type: str | None = None,
        trigger_price: int | None = None,
        validity: str | None = None,
    ) -> PaperOrder:
        if not order.is_open:
            raise OrderError("order", f"Order cannot be modified as it is {order.status.lower()}.")
        if order.modify_count >= MAX_MODIFICATIONS:
            raise OrderError("order", "Maximum allowed order modifications exceeded.")
        new_type = order_type or order.order_type
        if quantity is not None and (quantity <= 0 or quantity < order.filled_quantity):
            raise OrderError("input", "Invalid `quantity`.")
        if quantity is not None and quantity % order.instrument.lot_size:
            raise OrderError("input", "Quantity should be a multiple of lot size.")
        freeze = order.instrument.freeze_quantity
        if quantity is not None and freeze and quantity > freeze:
            raise OrderError("input", freeze_message(order.instrument, quantity))
        tick = order.instrument.tick_size_paise
        if tick and any(value and value % tick for value in (price, trigger_price)):
            raise OrderError("input", "Price should be a multiple of tick size.")
        new_price = price if price is not None else order.price
        new_trigger = trigger_price if trigger_price is not None else order.trigger_price
        _check_prices(new_type, new_price, new_trigger)
        self._history_only(order, "MODIFY VALIDATION PENDING")
        self._history_only(order, "MODIFY PENDING")
        order.order_type = new_type
        order.price = new_price if new_type in ("LIMIT", "SL") else 0
        order.trigger_price = new_trigger if new_type in ("SL", "SL-M") else 0
        if quantity is not None:
            order.quantity = quantity
        if validity:
            order.validity = validity
        if new_type in ("MARKET", "LIMIT") and order.status == "TRIGGER PENDING":
            order.status = "OPEN"
        order.modified = True
        order.modify_count += 1
        order.exchange_update_timestamp = now_ist()
        self._changed(order)
        self._try_fill(order)
        return order

    def cancel(self, order: PaperOrder) -> PaperOrder:
        if not order.is_open:
            raise OrderError("order", f"Order cannot be cancelled as it is {order.status.lower()}.")
        self._history_only(order, "CANCEL PENDING")
        order.status = "CANCELLED"
        order.cancelled_quantity = order.quantity - order.filled_quantity
        order.exchange_update_timestamp = now_ist()
        self._changed(order)
        return order

    # ----- matching -----
    def _try_fill(self, order: PaperOrder) -> None:
        if not order.is_open:
            return
        last = self.state.prices.last_price(order.instrument)
        buy = order.transaction_type == "BUY"
        if order.status == "TRIGGER PENDING":
            triggered = last >= order.trigger_price if buy else last <= order.trigger_price
            if not triggered:
                return
            order.status = "OPEN"
            order.exchange_update_timestamp = now_ist()
            self._changed(order)
        if order.order_type in ("MARKET", "SL-M"):
            self._fill(order, last)
            return
        crossed = last <= order.price if buy else last >= order.price
        if crossed:
            self._fill(order, last)

    def _fill(self, order: PaperOrder, price: int) -> None:
        qty = order.quantity - order.filled_quantity
        now, wall_ns = now_ist(), time.time_ns()
        order.trades.append(PaperTrade(self.state.next_trade_id(), order.order_id, qty, price, now, wall_ns))
        order.fill_wall_ns = wall_ns
        order.filled_quantity += qty
        order.filled_value += qty * price
        order.status = "COMPLETE"
        order.exchange_update_timestamp = now
        self._changed(order)

    def tick(self) -> None:
        """Move the price of every instrument with a resting order one step (a derivative's
        underlying first, once), then match."""
        resting = [o for o in self.state.orders.values() if o.is_open]
        moved: set[int] = set()
        for order in resting:
            inst = order.instrument
            for each in (inst.spot, inst):
                if each is not None and each.kite_token not in moved:
                    self.state.prices.advance(each)
                    moved.add(each.kite_token)
            self._try_fill(order)
