"""The price simulator: a deterministic random walk per instrument on its tick grid.

`PriceSimulator.quote(inst, advance=True)` returns integer prices in 1/`inst.price_divisor`
rupees (paise for NSE): instrument_token, last_price, last_quantity, average_price, volume,
buy_quantity, sell_quantity, open, high, low, close, change_paise, oi, oi_day_high, oi_day_low,
last_trade_time (epoch s), exchange_timestamp (epoch s), exchange_timestamp_ms, sequence,
upper_circuit, lower_circuit, week52_high, week52_low, depth {"buy": [{"price", "quantity",
"orders"}] * 5, "sell": [...] * 5}; the last five only with depth=True. With advance=True the
price moves one step first.
"""

from __future__ import annotations

import random
import time
from typing import Any

from paper.universe import PaperInstrument


class PriceSimulator:
    """Deterministic random walk per instrument on its tick grid.

    Each instrument has its own RNG seeded from (seed, kite_token), so the price path of one
    instrument does not depend on which others were asked for, nor in what order.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._series: dict[int, Series] = {}

    def _series_of(self, inst: PaperInstrument) -> Series:
        series = self._series.get(inst.kite_token)
        if series is None:
            series = Series(inst, random.Random(f"{self.seed}:{inst.kite_token}"))
            self._series[inst.kite_token] = series
        return series

    def last_price(self, inst: PaperInstrument) -> int:
        return self._series_of(inst).last

    def advance(self, inst: PaperInstrument) -> int:
        return self._series_of(inst).step()

    def quote(self, inst: PaperInstrument, advance: bool = True, depth: bool = True) -> dict[str, Any]:
        series = self._series_of(inst)
        if advance:
            series.step()
        return series.snapshot(depth)

    def reset(self) -> None:
        self._series.clear()


class Series:
    """One instrument's price walk and day statistics."""

    def __init__(self, inst: PaperInstrument, rng: random.Random) -> None:
        self.inst = inst
        self.rng = rng
        tick = max(1, inst.tick_size_paise)
        base = inst.base_price_paise or 100_000
        # Yesterday's close within ±2% of the reference price, today's open within ±1% of it.
        self.close = self._on_grid(base * (1 + rng.uniform(-0.02, 0.02)), tick)
        self.open = self._on_grid(self.close * (1 + rng.uniform(-0.01, 0.01)), tick)
        self.last = self.open
        self.high = self.low = self.open
        self.volume = 0 if inst.is_index else rng.randint(1_000, 100_000)
        self.turnover = self.volume * self.open
        self.last_quantity = 0
        self.sequence = 0
        self.last_trade_time = int(time.time())

    @staticmethod
    def _on_grid(value: float, tick: int) -> int:
        units = round(value / tick)
        return max(tick, units * tick)

    def step(self) -> int:
        tick = max(1, self.inst.tick_size_paise)
        move = self.rng.choice((-2, -1, -1, 0, 0, 1, 1, 2)) * tick
        self.last = max(tick, self.last + move)
        self.high = max(self.high, self.last)
        self.low = min(self.low, self.last)
        self.sequence += 1
        if not self.inst.is_index:
            self.last_quantity = self.rng.randint(1, 500)
            self.volume += self.last_quantity
            self.turnover += self.last_quantity * self.last
        self.last_trade_time = int(time.time())
        return self.last

    def snapshot(self, depth: bool = True) -> dict[str, Any]:
        """The quote values now. Without ``depth``: no book, circuits or 52-week range, and the
        buy/sell totals derived from the sequence instead of the book, because drawing a book
        (~45 µs) would cap the tick clock near 20k instruments/s."""
        inst = self.inst
        seq = self.sequence
        now_s = time.time()
        values = {
            "instrument_token": inst.kite_token,
            "last_price": self.last,
            "last_quantity": self.last_quantity,
            "average_price": int(self.turnover // self.volume) if self.volume else self.last,
            "volume": self.volume,
            "buy_quantity": 0 if inst.is_index else 25_000 + (seq * 7_919 + inst.kite_token) % 250_000,
            "sell_quantity": 0 if inst.is_index else 25_000 + (seq * 6_037 + inst.kite_token) % 250_000,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "change_paise": self.last - self.close,
            "oi": 0,
            "oi_day_high": 0,
            "oi_day_low": 0,
            "last_trade_time": self.last_trade_time,
            "exchange_timestamp": int(now_s),
            "exchange_timestamp_ms": int(now_s * 1000),
            "sequence": seq,
        }
        if depth:
            values.update(self._book())
        return values

    def _book(self) -> dict[str, Any]:
        """Five levels a side around the last price (empty for an index), the circuits and the
        52-week range."""
        tick = max(1, self.inst.tick_size_paise)
        rng = random.Random(f"depth:{self.inst.kite_token}:{self.sequence}")
        buy = [
            {"price": max(tick, self.last - (i + 1) * tick), "quantity": rng.randint(1, 1000), "orders": rng.randint(1, 20)}
            for i in range(5)
        ]
        sell = [
            {"price": self.last + (i + 1) * tick, "quantity": rng.randint(1, 1000), "orders": rng.randint(1, 20)}
            for i in range(5)
        ]
        if self.inst.is_index:
            buy = [{"price": 0, "quantity": 0, "orders": 0} for _ in range(5)]
            sell = [{"price": 0, "quantity": 0, "orders": 0} for _ in range(5)]
        return {
            "buy_quantity": sum(d["quantity"] for d in buy) * 50,
            "sell_quantity": sum(d["quantity"] for d in sell) * 50,
            "upper_circuit": self._on_grid(self.close * 1.2, tick),
            "lower_circuit": self._on_grid(self.close * 0.8, tick),
            "week52_high": self._on_grid(self.close * 1.35, tick),
            "week52_low": self._on_grid(self.close * 0.7, tick),
            "depth": {"buy": buy, "sell": sell},
        }
