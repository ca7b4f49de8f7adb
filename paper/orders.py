"""Orders and fills as the paper exchange keeps them, broker-neutral: each dialect renders
them in its own shape (`paper/<broker>/payloads.py`). Prices are integers in
1/`instrument.price_divisor` rupees; times are IST."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from paper.universe import PaperInstrument

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def now_ist() -> dt.datetime:
    return dt.datetime.now(IST)


def next_ist_epoch(hour: int, now: dt.datetime | None = None) -> float:
    """Epoch seconds of the first ``hour``:00 IST after ``now``: when a day's session ends."""
    now = now or now_ist()
    end = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if end <= now:
        end += dt.timedelta(days=1)
    return end.timestamp()


def fmt_ts(moment: dt.datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else None


def rupees_number(units: int, divisor: int) -> float | int:
    """Integer units to a JSON number; whole rupees print as ints, like the fixtures."""
    rupees = units / divisor
    return int(rupees) if rupees == int(rupees) else round(rupees, 6)


@dataclass
class PaperTrade:
    trade_id: str
    order_id: str
    quantity: int
    price: int  # 1/price_divisor rupees
    fill_time: dt.datetime
    # time.time_ns() of the fill: a clock other processes on the machine share (benchmarks time
    # a fill's way to brokergate's snapshots from it); fill_time is IST to the second.
    fill_wall_ns: int = 0


@dataclass
class PaperOrder:
    """One order of the user `user_id` of `broker`, in Kite's generic names (order_type
    MARKET/LIMIT/SL/SL-M, status OPEN/TRIGGER PENDING/COMPLETE/CANCELLED/REJECTED)."""

    order_id: str
    broker: str
    user_id: str
    variety: str
    instrument: PaperInstrument
    transaction_type: str
    order_type: str
    product: str
    quantity: int
    price: int  # 1/price_divisor rupees; 0 for market
    trigger_price: int
    validity: str = "DAY"
    disclosed_quantity: int = 0
    tag: str | None = None
    status: str = "OPEN"
    status_message: str | None = None
    filled_quantity: int = 0
    filled_value: int = 0  # sum of qty * price, for average_price
    cancelled_quantity: int = 0
    exchange_order_id: str | None = None
    order_timestamp: dt.datetime = field(default_factory=now_ist)
    exchange_timestamp: dt.datetime | None = None
    exchange_update_timestamp: dt.datetime | None = None
    modified: bool = False
    modify_count: int = 0
    unique_order_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    history: list[dict[str, Any]] = field(default_factory=list)
    trades: list[PaperTrade] = field(default_factory=list)
    created_ns: int = field(default_factory=time.monotonic_ns)
    fill_wall_ns: int | None = None  # the last fill's PaperTrade.fill_wall_ns

    @property
    def pending_quantity(self) -> int:
        # As in the golden orders.json: a CANCELLED order keeps its unfilled quantity as pending.
        if self.status in ("COMPLETE", "REJECTED"):
            return 0
        return self.quantity - self.filled_quantity

    @property
    def is_open(self) -> bool:
        return self.status in ("OPEN", "TRIGGER PENDING")

    def average_price(self) -> float:
        if not self.filled_quantity:
            return 0
        return round(self.filled_value / self.filled_quantity / self.instrument.price_divisor, 4)
