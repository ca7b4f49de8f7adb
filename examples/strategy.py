"""An example strategy: ticks in, orders out, fills back by push. It imports nothing but
``brokergate`` (and needs Redis and the accounts file's public fields, no secret), whichever
broker each account trades on.

    python -m examples.strategy [--accounts a,b] [--instruments NSE:INFY,NSE:RELIANCE,NSE:TCS]
                                [--ticks 3] [--timeout-s 30]

For every account it:

1. subscribes to its share of the instruments and prints a few ticks;
2. prints every order update of its accounts as it is pushed (``brokergate.on_order_update``:
   postback, order-update socket or reconciliation), fills included;
3. places a MARKET buy of one share, waits for the fill (``handle.updates()``) and prints the
   position the pushed fill moved (``brokergate.positions``);
4. places a LIMIT buy 5% under the market (it rests OPEN), modifies its price, and
   cancels it;
5. buys one lot of the nearest NIFTY expiry's ATM call (``brokergate.option_chain`` and the live
   index price; the same code on every broker) and waits for the fill.

The last line is ``RESULT {json}`` with what it saw; the exit code is 0 when every step
worked.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from decimal import ROUND_DOWN, Decimal
from typing import Any

import brokergate
from brokergate import Order, OrderHandle, OrderUpdate, Tick

log = logging.getLogger("examples.strategy")
DEFAULT_INSTRUMENTS = "NSE:INFY,NSE:RELIANCE,NSE:TCS"
TICK_SIZE = Decimal("0.05")


def out(text: str) -> None:
    print(text, flush=True)


def print_update(u: OrderUpdate) -> None:
    """Called by the background listener for every update pushed on ``orders:<account>``."""
    price = f" @ {u.average_price}" if u.average_price is not None and u.filled_quantity else ""
    out(f"UPDATE {u.account} {u.client_order_id} {u.state.value} filled {u.filled_quantity}{price} (by {u.source or 'push'})")


def wait_state(handle: OrderHandle, states: set[str], timeout_s: float) -> OrderUpdate | None:
    """The first update of the order in one of ``states``; None when the order settles in
    another state or nothing new arrives within ``timeout_s``."""
    try:
        for u in handle.updates(timeout_s=timeout_s):
            if u.state.value in states:
                return u
    except TimeoutError:
        return None
    return None


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
    with brokergate.subscribe_ticks(instruments, mode="quote", account=account) as sub:
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


def trade(account: str, instrument: str, ltp: Decimal, timeout_s: float) -> dict[str, Any]:
    """Buy one share at market and wait for the fill; rest a limit order, modify it, cancel it."""
    exchange, _, symbol = instrument.partition(":")
    result: dict[str, Any] = {"instrument": instrument}

    buy = brokergate.place_order(Order(account=account, exchange=exchange, symbol=symbol, side="BUY", quantity=1,
                                       order_type="MARKET"))  # fmt: skip
    out(f"PLACED {account} {buy.id} BUY 1 {instrument} MARKET")
    fill = wait_state(buy, {"COMPLETE", "REJECTED", "CANCELLED"}, timeout_s)
    if fill is None:
        state = (brokergate.get_order(buy.id) or {}).get("state")
        out(f"NO PUSH for {buy.id} within {timeout_s:g} s (store says {state})")
        result["filled"] = None
    else:
        out(f"FILLED {account} {buy.id} {fill.state.value} {fill.filled_quantity} @ {fill.average_price} (pushed by {fill.source or 'push'})")
        result["filled"] = {"id": buy.id, "state": fill.state.value, "price": str(fill.average_price), "source": fill.source}
        # The pushed fill has moved the position already: read from Redis, no broker request.
        held = [p for p in brokergate.positions(account) if p.exchange == exchange and p.symbol == symbol]
        for p in held:
            out(f"POSITION {account} {instrument} {p.product} {p.quantity} @ {p.average_price} "
                f"P&L {p.realised_pnl + p.unrealised_pnl}")
        result["position"] = sum(p.quantity for p in held)

    price = below(ltp, "0.05")
    rest = brokergate.place_order(Order(account=account, exchange=exchange, symbol=symbol, side="BUY", quantity=1,
                                        order_type="LIMIT", price=price))  # fmt: skip
    out(f"PLACED {account} {rest.id} BUY 1 {instrument} LIMIT {price}")
    opened = wait_state(rest, {"OPEN"}, timeout_s)
    result["rested"] = {"id": rest.id, "open": bool(opened)}
    new_price = below(ltp, "0.04")
    brokergate.modify_order(rest.id, price=new_price)
    out(f"MODIFIED {account} {rest.id} price {price} -> {new_price}")
    brokergate.cancel_order(rest.id)
    cancelled = wait_state(rest, {"CANCELLED"}, timeout_s)
    out(f"CANCELLED {account} {rest.id}" if cancelled else f"NOT CANCELLED {account} {rest.id} within {timeout_s:g} s")
    result["rested"]["cancelled"] = bool(cancelled)
    return result


def trade_atm_call(account: str, underlying: str, spot_key: str, timeout_s: float) -> dict[str, Any]:
    """Buy one lot of the nearest expiry's ATM call of ``underlying`` at market and wait for the fill:
    the same code on every broker (the contract is found in the account's master by its generic key)."""
    expiry = brokergate.expiries(underlying, account=account, kind="option")[0]
    chain = brokergate.option_chain(underlying, expiry, account=account)
    spot = watch_ticks(account, [spot_key], 1, timeout_s).get(spot_key)  # the feed prices the ATM strike
    if spot is None:
        out(f"NO TICKS for {spot_key} within {timeout_s:g} s")
        return {"filled": None}
    call = chain.row(chain.atm(spot)).call
    assert call is not None
    # Its own price too: where the broker refuses MARKET orders, brokergate's protection prices it.
    watch_ticks(account, [call.key], 1, timeout_s)
    buy = brokergate.place_order(Order(account=account, exchange=call.exchange, symbol=call.symbol, side="BUY",
                                       quantity=call.lot_size, order_type="MARKET", product="NORMAL"))
    out(f"PLACED {account} {buy.id} BUY {call.lot_size} {call.key} MARKET (ATM of {underlying} {spot}; "
        f"the broker's {call.broker_symbol})")
    fill = wait_state(buy, {"COMPLETE", "REJECTED", "CANCELLED"}, timeout_s)
    if fill is None:
        out(f"NO PUSH for {buy.id} within {timeout_s:g} s")
        return {"instrument": call.key, "filled": None}
    out(f"FILLED {account} {buy.id} {fill.state.value} {fill.filled_quantity} {call.key} @ {fill.average_price}")
    return {"instrument": call.key, "filled": {"id": buy.id, "state": fill.state.value, "price": str(fill.average_price)}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.strategy", description=__doc__.split("\n\n")[0])
    p.add_argument("--accounts", help="comma-separated account names (default: every account)")
    p.add_argument("--instruments", default=DEFAULT_INSTRUMENTS)
    p.add_argument("--ticks", type=int, default=3, help="ticks to print per instrument")
    p.add_argument("--timeout-s", type=float, default=30.0, help="longest wait for any one step")
    p.add_argument("--option-underlying", default="NIFTY",
                   help="buy one lot of this underlying's ATM call on every account ('' skips it)")
    p.add_argument("--option-spot", default="NSE:NIFTY 50", help="the underlying's spot instrument (prices the ATM)")
    args = p.parse_args(argv)
    brokergate.setup_logging()

    names = args.accounts.split(",") if args.accounts else brokergate.account_names()
    instruments = [i.strip() for i in args.instruments.split(",") if i.strip()]
    # One feed per instrument: two accounts streaming the same instrument would publish it twice.
    share = {a: instruments[i :: len(names)] or instruments[:1] for i, a in enumerate(names)}
    listener = brokergate.on_order_update(names, print_update)
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
            res = trade(a, inst, last[inst], step_s)
            summary["accounts"][a] = res
            if not (res.get("filled") and res["filled"]["state"] == "COMPLETE" and res["rested"].get("cancelled")):
                summary["ok"] = False
            if args.option_underlying:
                opt = trade_atm_call(a, args.option_underlying, args.option_spot, step_s)
                res["option"] = opt
                if not (opt.get("filled") and opt["filled"]["state"] == "COMPLETE"):
                    summary["ok"] = False
    except Exception as e:
        log.exception("strategy failed")
        summary.update(ok=False, error=f"{type(e).__name__}: {e}")
    finally:
        listener.stop()
    out("RESULT " + json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
