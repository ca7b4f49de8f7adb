"""What every broker's derivatives test (test_<broker>_derivatives.py) does the same way against
the paper broker: the paper universe's contracts by generic key, the NIFTY call the live tests
trade, its master stored for a logged-in account, the option ordered and filled, and its ticks.
Each broker's file keeps what differs: its master's format, its payload fields, its login."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from common.derivatives import future_symbol, option_symbol
from common.models import Instrument, Order, Tick
from devtools.waiting import wait_for
from paper.universe import PaperInstrument

PINNED = date(2026, 12, 7)  # a Monday: NIFTY's weekly (Tuesday) and SENSEX's (Thursday) both listed


def paper_contracts(universe: list[PaperInstrument]) -> dict[str, PaperInstrument]:
    """The universe's futures and options by generic key (``NFO:NIFTY:2026-12-08:24000:CE``)."""
    want = {}
    for p in universe:
        if p.is_derivative:
            assert p.expiry is not None
            sym = (option_symbol(p.underlying, p.expiry, Decimal(p.strike_paise) / 100, p.right)
                   if p.kind == "option" else future_symbol(p.underlying, p.expiry))  # fmt: skip
            want[f"{p.exchange}:{sym}"] = p
    return want


def nifty_call(master_rows: list[Instrument]) -> Instrument:
    """NIFTY's soonest-expiring call at the strike nearest the paper index's reference (24,000)."""
    calls = [i for i in master_rows if i.underlying == "NIFTY" and i.kind == "option" and i.right == "CE"]
    soonest = min(i.expiry for i in calls if i.expiry is not None)
    return min((i for i in calls if i.expiry == soonest), key=lambda i: abs((i.strike or 0) - 24000))


def store_nifty(account: str, rows: list[Instrument], r: Any) -> Instrument:
    """Stores the master's NIFTY contracts and the index for ``account``; returns :func:`nifty_call`."""
    from common import instruments

    kept = [i for i in rows if i.underlying == "NIFTY" or i.key == "NSE:NIFTY 50"]
    instruments.store(account, kept, r)
    return nifty_call(kept)


def order_option(acct: Any, option: Instrument, celery_workers: Any, **fields: Any) -> Any:
    """Starts the account's workers and buys one lot of ``option`` (NORMAL) by its generic symbol;
    returns the handle."""
    from common import keys
    from common.client import place_order

    celery_workers.start([keys.urgent_queue(acct.name), keys.orders_queue(acct.name)])
    return place_order(account=acct.name, exchange="NFO", symbol=option.symbol, side="BUY",
                       quantity=option.lot_size, product="NORMAL", **fields)  # fmt: skip


def filled_payload(paper: Any, handle: Any) -> dict[str, Any]:
    """The paper broker's payload of the order once it is COMPLETE there (awaited)."""
    def filled() -> dict[str, Any] | None:
        mine = (o for o in paper.orders() if o.get("tag") == handle.id)
        return next((o for o in mine if o.get("status") == "COMPLETE"), None)

    row = wait_for(filled, 15, what="the option order filled at the paper broker")
    payload: dict[str, Any] = row["broker_payload"]
    return payload


def option_tick(acct: Any, option: Instrument, r: Any) -> Tick:
    """The first tick of ``option`` subscribed by generic key ("full" mode) from the account's feed,
    checked to name the contract and to carry open interest in whole lots."""
    from common.ticks import subscribe_ticks
    from feed.supervisor import Feed

    f = Feed({acct.name: acct}, r, heartbeat_s=0.1, backoff_base_s=0.05, token_poll_s=0.5)
    f.start()
    try:
        with subscribe_ticks([option.key], "full", account=acct.name, r=r) as sub:
            tick = sub.get(10)
            while tick is not None and tick.instrument_key != option.key:
                tick = sub.get(10)
    finally:
        f.stop()
    assert tick is not None, "no tick of the option"
    assert (tick.exchange, tick.symbol, tick.token, tick.mode) == ("NFO", option.symbol, option.token, "full")
    assert tick.oi > 0 and tick.oi % option.lot_size == 0 and tick.last_price > 0
    return tick


def assert_reads_as(inst: Instrument, key: str, token: str, lot: int, tick: str) -> None:
    """``inst``, read from a golden master row, is the contract its generic key names, with the
    row's token, lot size and tick size."""
    assert (inst.key, inst.token, inst.lot_size, inst.tick_size) == (key, token, lot, Decimal(tick))
    parts = key.split(":")
    assert (inst.exchange, inst.underlying, inst.expiry) == (parts[0], parts[1], date.fromisoformat(parts[2]))
    if parts[-1] == "FUT":
        assert (inst.kind, inst.strike, inst.right, inst.instrument_type) == ("future", None, "", "FUT")
    else:
        strike, right = parts[3], parts[4]
        assert (inst.kind, inst.strike, inst.right, inst.instrument_type) == ("option", Decimal(strike), right, right)
        assert str(inst.strike) == strike  # 23500.0 in a row, one spelling in the key


def limit_order(account: str, key: str, **fields: Any) -> Order:
    """A LIMIT BUY of 65 at 101.05 (NORMAL, tagged t1) of the contract ``key`` (EXCHANGE:SYMBOL)
    names; ``fields`` replace any of those."""
    exchange, symbol = key.split(":", 1)
    values: dict[str, Any] = {"account": account, "exchange": exchange, "symbol": symbol, "side": "BUY",
                              "quantity": 65, "order_type": "LIMIT", "price": "101.05", "product": "NORMAL",
                              "client_order_id": "t1"}  # fmt: skip
    values.update(fields)
    return Order(**values)
