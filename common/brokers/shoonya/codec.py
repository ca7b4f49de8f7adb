"""Shoonya WebSocket JSON -> :class:`~common.models.Tick`. Text in, ticks out; never raises.

Market data arrives as JSON text (NorenRestApiPy README, "subscribe"): ``tk`` (touchline) and
``dk`` (depth) carry every field of an instrument once, on subscription; ``tf`` / ``df`` then
carry only the fields that changed. Every value is a string, prices in rupees ("118.55").
Fields: ``e`` exchange, ``tk`` token, ``ts`` trading symbol, ``pp`` price precision, ``lp``
last price, ``ltq`` last quantity, ``ap`` average price, ``v`` volume, ``oi``, ``o h l c``,
``ft`` feed time (epoch s), best five ``bp/bq/bo`` and ``sp/sq/so`` 1..5 (depth; touchline has
level 1 only).

So a tick needs the instrument's last known fields: a :class:`Table` holds them per key
(``"NSE|3045"``), next to each subscribed key's (exchange, symbol, token, divisor) and mode.
The feed keeps one table per socket for the socket's life (:func:`update_table` changes the
subscriptions in place), so a reload of the subscriptions never forgets the state a later
``tf`` builds on.

Prices become integers in 1/divisor rupee (100 for paise; 10,000 for the currency segments,
whose prices have four decimals) by string arithmetic, exactly; a value with more decimals
than its divisor holds is rounded half-even. The tick's mode is the subscription's (the wire
does not say ltp or quote: both are touchline); a touchline message of a key subscribed in
full mode is a quote tick (it has no depth). A message that is not JSON, lacks ``e``/``tk`` or
has a field that is not a number is counted as malformed and skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from common.models import Tick

__all__ = ["DEPTH_TYPES", "TICK_TYPES", "Table", "decode_message", "key", "price_divisor", "to_units",
           "update_table"]

TICK_TYPES = frozenset({"tk", "tf", "dk", "df"})
DEPTH_TYPES = frozenset({"dk", "df"})
_FULL_SNAPSHOT = frozenset({"tk", "dk"})
_DIVISORS = {"CDS": 10_000, "BCD": 10_000}
_DIGITS = {100: 2, 10_000: 4}

Prefix = tuple[str, str, str, int]  # exchange, symbol, token, price divisor


def price_divisor(exchange: str) -> int:
    return _DIVISORS.get(exchange, 100)


def key(exchange: str, token: str) -> str:
    """The subscription key of an instrument, as Shoonya writes it (``"NSE|3045"``)."""
    return f"{exchange}|{token}"


class Table:
    """One socket's view: key -> tick prefix and mode (the subscriptions), and key -> the last
    fields received (the state ``tf``/``df`` deltas apply to)."""

    __slots__ = ("modes", "prefixes", "state")

    def __init__(self) -> None:
        self.prefixes: dict[str, Prefix] = {}
        self.modes: dict[str, str] = {}
        self.state: dict[str, dict[str, Any]] = {}


def update_table(table: Table | None, symbols: Mapping[str, tuple[str, str]], modes: Mapping[str, str]) -> Table:
    """``table`` with its subscriptions replaced by ``symbols`` (key -> (exchange, symbol)) in
    ``modes``; the state of keys still subscribed is kept. The subscription dicts are swapped
    whole, so a decoder on another thread sees the old or the new one."""
    t = table if table is not None else Table()
    prefixes: dict[str, Prefix] = {}
    for k, (exchange, symbol) in symbols.items():
        _, _, token = str(k).partition("|")
        prefixes[k] = (exchange, symbol, token, price_divisor(exchange))
    t.prefixes = prefixes
    t.modes = {k: str(m) for k, m in modes.items()}
    # The state is pruned in place, not swapped: the decoder may be writing into it right now.
    for k in [k for k in list(t.state) if k not in prefixes]:
        t.state.pop(k, None)
    return t


def to_units(text: Any, divisor: int = 100) -> int:
    """Rupees as sent ("118.55") -> integer units of 1/divisor rupee; ValueError if not a number."""
    s = text if isinstance(text, str) else str(text)
    digits = _DIGITS.get(divisor)
    if digits is not None and s.isascii():
        whole, _, frac = s.partition(".")
        body = whole[1:] if whole[:1] == "-" else whole
        if (body.isdigit() or (not body and frac)) and (not frac or frac.isdigit()) and len(frac) <= digits:
            return int(whole + frac.ljust(digits, "0"))
    try:
        d = Decimal(s.strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {s!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a finite number: {s!r}")
    return int((d * divisor).to_integral_value(ROUND_HALF_EVEN))


def _int(v: Any) -> int:
    if v is None or v == "":
        return 0
    s = str(v)
    if s.isdigit():
        return int(s)
    return int(Decimal(s))


def _tick(prefix: Prefix, mode: str, f: dict[str, Any], depth: bool, received_ns: int) -> Tick | None:
    ex, sym, tok, div = prefix
    lp = f.get("lp")
    if lp is None:
        return None  # no last price known yet (a delta before any snapshot): nothing to say
    last = to_units(lp, div)
    ft = f.get("ft")
    ts_ms = _int(ft) * 1000 if ft else 0
    if mode == "ltp":
        return Tick(ex, sym, tok, "ltp", div, last, exchange_ts_ms=ts_ms, received_ns=received_ns)

    def p(name: str) -> int:
        v = f.get(name)
        return to_units(v, div) if v not in (None, "") else 0

    def q(name: str) -> int:
        return _int(f.get(name))

    bids: tuple[int, ...] = ()
    asks: tuple[int, ...] = ()
    full = mode == "full" and depth
    if full:
        bids = tuple(x for i in range(1, 6) for x in (p(f"bp{i}"), q(f"bq{i}"), q(f"bo{i}")))
        asks = tuple(x for i in range(1, 6) for x in (p(f"sp{i}"), q(f"sq{i}"), q(f"so{i}")))
    return Tick(
        ex, sym, tok, "full" if full else "quote", div, last, q("ltq"), p("ap"), q("v"), q("oi"),
        p("bp1"), q("bq1"), p("sp1"), q("sq1"), p("o"), p("h"), p("l"), p("c"), ts_ms, received_ns, bids, asks,
    )


def decode_message(message: Any, table: Table, received_ns: int = 0) -> tuple[list[Tick], int]:
    """The tick of one market-data message (a JSON text or the dict parsed from it), and how many
    messages were malformed (0 or 1). Messages of keys not subscribed decode to nothing."""
    try:
        msg = json.loads(message) if isinstance(message, str | bytes | bytearray) else message
    except (ValueError, UnicodeDecodeError):
        return [], 1
    if not isinstance(msg, dict):
        return [], 1
    kind = msg.get("t")
    e, tk = msg.get("e"), msg.get("tk")
    if kind not in TICK_TYPES or not isinstance(e, str) or not isinstance(tk, str):
        return [], 1
    k = f"{e}|{tk}"
    prefix = table.prefixes.get(k)
    if prefix is None:
        return [], 0  # unsubscribed a moment ago, or never asked for
    state = table.state
    # A snapshot replaces the state; a delta applies to it.
    fields = dict(msg) if kind in _FULL_SNAPSHOT or k not in state else {**state[k], **msg}
    try:
        tick = _tick(prefix, table.modes.get(k, "quote"), fields, kind in DEPTH_TYPES, received_ns)
    except (ValueError, ArithmeticError, TypeError):
        return [], 1  # keep the last good state: the next delta builds on it
    state[k] = fields
    return ([tick] if tick is not None else []), 0
