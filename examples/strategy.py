"""An example strategy: ticks in, orders out, fills back by push. It needs nothing but
``common.client`` (and Redis), whichever broker each account trades on.

    python -m examples.strategy [--accounts a,b] [--instruments NSE:INFY,NSE:RELIANCE,NSE:TCS]
                                [--ticks 3] [--timeout-s 30]

For every account it:

1. subscribes to its share of the instruments and prints a few ticks;
2. listens to ``orders:<account>`` and prints every order update as it is pushed
   (postback or order-update socket), fills included;
3. places a MARKET buy of one share and waits for the fill;
4. places a LIMIT buy 5% under the market (it rests OPEN), modifies its price, and
   cancels it.

The last line is ``RESULT {json}`` with what it saw; the exit code is 0 when every step
worked.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from decimal import ROUND_DOWN, Decimal
from typing import Any

from common import keys
from common.client import cancel_order, get_order, modify_order, place_order, subscribe_ticks
from common.models import Order, OrderUpdate, Tick

log = logging.getLogger("examples.strategy")
DEFAULT_INSTRUMENTS = "NSE:INFY,NSE:RELIANCE,NSE:TCS"
TICK_SIZE = Decimal("0.05")


def out(text: str) -> None:
    print(text, flush=True)


class PushedUpdates:
    """Every order update pushed on ``orders:<account>``, printed as it arrives and kept
    so the strategy can wait for a state by order id."""

    def __init__(self, r: Any, accounts: list[str]) -> None:
        self._cond = threading.Condition()
        self.by_id: dict[str, list[OrderUpdate]] = {}
        self._ps = r.pubsub(ignore_subscribe_messages=True)
        self._ps.subscribe(*[keys.orders_channel(a) for a in accounts])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="order-updates", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._ps.get_message(timeout=0.5)
            if not msg or msg.get("type") != "message":
                continue
            try:
                u = OrderUpdate.from_dict(json.loads(msg["data"]))
            except (ValueError, KeyError, TypeError):
                continue
            price = f" @ {u.average_price}" if u.average_price is not None and u.filled_quantity else ""
            out(f"UPDATE {u.account} {u.client_order_id} {u.state.value} filled {u.filled_quantity}{price} (by {u.source or 'push'})")
            with self._cond:
                self.by_id.setdefault(u.client_order_id, []).append(u)
                self._cond.notify_all()

    def wait_for(self, order_id: str, states: set[str], timeout_s: float) -> OrderUpdate | None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for u in self.by_id.get(order_id, []):
                    if u.state.value in states:
                        return u
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._ps.close()


def rupees(t: Tick) -> Decimal:
    return Decimal(t.last_price) / t.price_divisor


def below(price: Decimal, fraction: str) -> Decimal:
    """``price`` less ``fraction`` of it, on the tick grid."""
    p = price * (1 - Decimal(fraction))
    return (p / TICK_SIZE).to_integral_value(ROUND_DOWN) * TICK_SIZE


def watch_ticks(account: str, instruments: list[str], n: int, timeout_s: float) -> dict[str, Decimal]:
    """Print ``n`` ticks of each instrument (or what arrives within the timeout); last prices."""
    last: dict[str, Decimal] = {}
    seen: dict[str, int] = dict.fromkeys(instruments, 0)
    deadline = time.monotonic() + timeout_s
    with subscribe_ticks(instruments, mode="quote", account=account) as sub:
        while any(c < n for c in seen.values()) and time.monotonic() < deadline:
            t = sub.get(timeout_s=min(1.0, max(0.05, deadline - time.monotonic())))
            if t is None:
                continue
            key = f"{t.exchange}:{t.symbol}"
            last[key] = rupees(t)
            if key in seen and seen[key] < n:
                seen[key] += 1
                book = ""
                if t.bid_price or t.ask_price:
                    book = f"bid {Decimal(t.bid_price) / t.price_divisor} ask {Decimal(t.ask_price) / t.price_divisor}, "
                out(f"TICK {account} {key} {last[key]} ({book}volume {t.volume})")
    return last


def trade(account: str, instrument: str, ltp: Decimal, updates: PushedUpdates, timeout_s: float) -> dict[str, Any]:
    """Buy one share at market and wait for the fill; rest a limit order, modify it, cancel it."""
    exchange, _, symbol = instrument.partition(":")
    result: dict[str, Any] = {"instrument": instrument}

    buy = place_order(Order(account=account, exchange=exchange, symbol=symbol, side="BUY", quantity=1, order_type="MARKET"))
    out(f"PLACED {account} {buy.id} BUY 1 {instrument} MARKET")
    fill = updates.wait_for(buy.id, {"COMPLETE", "REJECTED", "CANCELLED"}, timeout_s)
    if fill is None:
        state = (get_order(buy.id) or {}).get("state")
        out(f"NO PUSH for {buy.id} within {timeout_s:g} s (store says {state})")
        result["filled"] = None
    else:
        out(f"FILLED {account} {buy.id} {fill.state.value} {fill.filled_quantity} @ {fill.average_price} (pushed by {fill.source or 'push'})")
        result["filled"] = {"id": buy.id, "state": fill.state.value, "price": str(fill.average_price), "source": fill.source}

    price = below(ltp, "0.05")
    rest = place_order(Order(account=account, exchange=exchange, symbol=symbol, side="BUY", quantity=1,
                             order_type="LIMIT", price=price))  # fmt: skip
    out(f"PLACED {account} {rest.id} BUY 1 {instrument} LIMIT {price}")
    opened = updates.wait_for(rest.id, {"OPEN"}, timeout_s) or _store_state(rest.id, {"OPEN"}, timeout_s)
    result["rested"] = {"id": rest.id, "open": bool(opened)}
    new_price = below(ltp, "0.04")
    modify_order(rest.id, price=new_price)
    out(f"MODIFIED {account} {rest.id} price {price} -> {new_price}")
    cancel_order(rest.id)
    cancelled = updates.wait_for(rest.id, {"CANCELLED"}, timeout_s)
    out(f"CANCELLED {account} {rest.id}" if cancelled else f"NOT CANCELLED {account} {rest.id} within {timeout_s:g} s")
    result["rested"]["cancelled"] = bool(cancelled)
    return result


def _store_state(order_id: str, states: set[str], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (get_order(order_id) or {}).get("state") in states:
            return True
        time.sleep(0.1)
    return False


def main(argv: list[str] | None = None) -> int:
    from common.logs import setup_logging
    from common.redis import get_redis
    from common.settings import accounts, settings

    p = argparse.ArgumentParser(prog="python -m examples.strategy", description=__doc__.split("\n\n")[0])
    p.add_argument("--accounts", help="comma-separated account names (default: every account)")
    p.add_argument("--instruments", default=DEFAULT_INSTRUMENTS)
    p.add_argument("--ticks", type=int, default=3, help="ticks to print per instrument")
    p.add_argument("--timeout-s", type=float, default=30.0, help="longest wait for any one step")
    args = p.parse_args(argv)
    setup_logging(settings().log_level, settings().log_json)

    names = args.accounts.split(",") if args.accounts else list(accounts())
    instruments = [i.strip() for i in args.instruments.split(",") if i.strip()]
    # One feed per instrument: two accounts streaming the same instrument would publish it twice.
    share = {a: instruments[i :: len(names)] or instruments[:1] for i, a in enumerate(names)}
    updates = PushedUpdates(get_redis(), names)
    summary: dict[str, Any] = {"ok": True, "ticks": {}, "accounts": {}}
    step_s = max(5.0, args.timeout_s / 3)
    try:
        for a in names:
            last = watch_ticks(a, share[a], args.ticks, step_s)
            summary["ticks"].update({k: str(v) for k, v in last.items()})
            if not last:
                out(f"NO TICKS for {a} within {step_s:g} s")
                summary["ok"] = False
                continue
            inst = next(i for i in share[a] if i in last)
            res = trade(a, inst, last[inst], updates, step_s)
            summary["accounts"][a] = res
            if not (res.get("filled") and res["filled"]["state"] == "COMPLETE" and res["rested"].get("cancelled")):
                summary["ok"] = False
    except Exception as e:
        log.exception("strategy failed")
        summary.update(ok=False, error=f"{type(e).__name__}: {e}")
    finally:
        updates.close()
    out("RESULT " + json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
