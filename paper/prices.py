"""The price simulator: a deterministic random walk per instrument on its tick grid.

`PriceSimulator.quote(inst, advance=True)` returns integer prices in 1/`inst.price_divisor`
rupees (paise for NSE): instrument_token, last_price, last_quantity, average_price, volume,
buy_quantity, sell_quantity, open, high, low, close, change_paise, oi, oi_day_high, oi_day_low,
last_trade_time (epoch s), exchange_timestamp (epoch s), exchange_timestamp_ms, sequence,
upper_circuit, lower_circuit, week52_high, week52_low, depth {"buy": [{"price", "quantity",
"orders"}] * 5, "sell": [...] * 5}; the last five only with depth=True. With advance=True the
price moves one step first.

Derivatives (issue #16) follow their underlying's price: a future at the spot plus the cost of
carry to expiry, an option at its Black-Scholes value (no rates, the underlying's volatility of
paper/derivatives.py), i.e. intrinsic value plus a time value that shrinks with days to expiry and
distance from the money; both with a small jitter of their own, on the tick grid, never below a
tick. Moving a derivative does not move its underlying: the two move when each is stepped (the
tick clock steps what sockets subscribe; matching steps the underlying of a resting order too).
A derivative's ``oi`` (units) starts from its moneyness and days to expiry and moves by a few lots
a step; ``oi_day_high``/``oi_day_low`` track it.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import time
from typing import Any

from paper.universe import PaperInstrument

CARRY_RATE = 0.065  # a year, for futures' basis over the spot
# A session's remaining fraction of a day on the trading date, so an expiring option keeps some
# time value on its last day.
EXPIRY_DAY_FRACTION = 0.25


class PriceSimulator:
    """Deterministic random walk per instrument on its tick grid.

    Each instrument has its own RNG seeded from (seed, kite_token), so the price path of one
    instrument does not depend on which others were asked for, nor in what order.
    """

    def __init__(self, seed: int, today: dt.date | None = None) -> None:
        self.seed = seed
        self.today = today or dt.date.today()  # days to expiry count from it
        self._series: dict[int, Series] = {}

    def _series_of(self, inst: PaperInstrument) -> Series:
        series = self._series.get(inst.kite_token)
        if series is None:
            rng = random.Random(f"{self.seed}:{inst.kite_token}")
            if inst.spot is not None and inst.expiry is not None:
                series = DerivativeSeries(inst, rng, self._series_of(inst.spot), self.today)
            else:
                series = Series(inst, rng)
            self._series[inst.kite_token] = series
        return series

    def last_price(self, inst: PaperInstrument) -> int:
        return self._series_of(inst).last

    def close_price(self, inst: PaperInstrument) -> int:
        """Yesterday's close."""
        return self._series_of(inst).close

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


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def option_value(spot: float, strike: float, years: float, volatility: float, right: str) -> float:
    """Black-Scholes without rates: intrinsic value plus a time value that falls with ``years`` to
    expiry and with the distance of ``strike`` from ``spot`` (any price unit, returned in it)."""
    intrinsic = max(0.0, spot - strike) if right == "CE" else max(0.0, strike - spot)
    spread = volatility * math.sqrt(max(years, 0.0))
    if spread <= 0.0 or spot <= 0.0 or strike <= 0.0:
        return intrinsic
    d1 = (math.log(spot / strike) + spread * spread / 2) / spread
    d2 = d1 - spread
    if right == "CE":
        value = spot * _normal_cdf(d1) - strike * _normal_cdf(d2)
    else:
        value = strike * _normal_cdf(-d2) - spot * _normal_cdf(-d1)
    return max(intrinsic, value)


def years_to_expiry(today: dt.date, expiry: dt.date) -> float:
    return (max(0, (expiry - today).days) + EXPIRY_DAY_FRACTION) / 365.0


class DerivativeSeries(Series):
    """A future's or option's walk: its fair value at the underlying's price now, plus a jitter of
    a few ticks of its own; open interest that moves slowly."""

    def __init__(self, inst: PaperInstrument, rng: random.Random, spot: Series, today: dt.date) -> None:
        assert inst.expiry is not None
        self.inst = inst
        self.rng = rng
        self.spot = spot
        self.years = years_to_expiry(today, inst.expiry)
        self.jitter = 0
        self.close = self.fair(spot.close)
        self.open = self.fair(spot.open)
        self.last = self.open
        self.high = self.low = self.open
        lot = max(1, inst.lot_size)
        self.volume = lot * rng.randint(100, 5_000)
        self.turnover = self.volume * self.open
        self.last_quantity = 0
        self.sequence = 0
        self.last_trade_time = int(time.time())
        self.oi = self._opening_oi(rng)
        self.oi_high = self.oi_low = self.oi

    def fair(self, spot_price: int) -> int:
        """The contract's value at ``spot_price`` (paise), with this series' jitter, on the grid."""
        inst = self.inst
        tick = max(1, inst.tick_size_paise)
        if inst.kind == "future":
            value = spot_price * (1 + CARRY_RATE * self.years)
        else:
            value = option_value(spot_price, inst.strike_paise, self.years, inst.volatility or 0.15, inst.right)
        return max(tick, self._on_grid(value, tick) + self.jitter * tick)

    def _opening_oi(self, rng: random.Random) -> int:
        """Most open interest at the money and in the near expiries; futures a steady amount."""
        inst, lot = self.inst, max(1, self.inst.lot_size)
        if inst.kind == "future":
            return lot * rng.randint(20_000, 40_000)
        spot = max(1, self.inst.base_price_paise)
        distance = abs(inst.strike_paise - spot) / (spot * 0.01)  # in percent of the spot
        near = 1.0 / (1.0 + 10 * self.years)
        lots = 5_000 * math.exp(-distance * distance / 8) * near + rng.randint(50, 500)
        return lot * int(lots)

    def step(self) -> int:
        tick = max(1, self.inst.tick_size_paise)
        # A bounded walk of its own, so a contract moves even while its underlying is still.
        self.jitter = max(-3, min(3, self.jitter + self.rng.choice((-1, 0, 0, 1))))
        self.last = max(tick, self.fair(self.spot.last))
        self.high = max(self.high, self.last)
        self.low = min(self.low, self.last)
        self.sequence += 1
        lot = max(1, self.inst.lot_size)
        self.last_quantity = lot * self.rng.randint(1, 20)
        self.volume += self.last_quantity
        self.turnover += self.last_quantity * self.last
        self.oi = max(0, self.oi + lot * self.rng.choice((-2, -1, 0, 0, 0, 1, 2, 3)))
        self.oi_high = max(self.oi_high, self.oi)
        self.oi_low = min(self.oi_low, self.oi)
        self.last_trade_time = int(time.time())
        return self.last

    def snapshot(self, depth: bool = True) -> dict[str, Any]:
        values = super().snapshot(depth)
        values.update(oi=self.oi, oi_day_high=self.oi_high, oi_day_low=self.oi_low)
        return values
