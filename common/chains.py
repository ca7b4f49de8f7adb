"""Option chains, expiries, the ATM strike and futures, by generic key, from the account's
instrument master in Redis (``common/instruments.py`` keeps the chain index when it stores a master).

Every answer is the same on every broker (the contracts are the exchange's); the tokens and trading
symbols inside the instruments are the account's broker's. A strategy written once::

    chain = brokergate.option_chain("NIFTY", brokergate.expiries("NIFTY")[0])
    call = chain.row(chain.atm()).call          # the ATM call, priced from the live index
    brokergate.place_order(account="acct1", exchange=call.exchange, symbol=call.symbol, side="BUY",
                           quantity=call.lot_size, product="NORMAL")
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import redis

from common import instruments, keys
from common.errors import BrokerGateError, InvalidOrder
from common.models import Instrument
from common.redis import as_text, get_redis

__all__ = ["SPOT", "ChainRow", "OptionChain", "atm_strike", "expiries", "future", "option_chain"]

# The spot instrument of each index underlying (an exchange fact, the same at every broker); a
# stock's spot is NSE:<underlying>.
SPOT: dict[str, str] = {
    "NIFTY": "NSE:NIFTY 50", "BANKNIFTY": "NSE:NIFTY BANK", "FINNIFTY": "NSE:NIFTY FIN SERVICE",
    "MIDCPNIFTY": "NSE:NIFTY MID SELECT", "NIFTYNXT50": "NSE:NIFTY NEXT 50", "SENSEX": "BSE:SENSEX",
    "BANKEX": "BSE:BANKEX",
}  # fmt: skip


@dataclass(frozen=True)
class ChainRow:
    strike: Decimal
    call: Instrument | None
    put: Instrument | None


@dataclass(frozen=True)
class OptionChain:
    """One expiry's options of an underlying, strikes ascending, both rights per strike."""

    account: str
    exchange: str
    underlying: str
    expiry: date
    rows: list[ChainRow]
    future: Instrument | None

    @property
    def strikes(self) -> list[Decimal]:
        return [row.strike for row in self.rows]

    @property
    def lot_size(self) -> int:
        for row in self.rows:
            for inst in (row.call, row.put):
                if inst is not None:
                    return inst.lot_size
        return self.future.lot_size if self.future else 1

    def row(self, strike: Decimal | int | str) -> ChainRow:
        want = Decimal(str(strike))
        for row in self.rows:
            if row.strike == want:
                return row
        raise InvalidOrder("strike", f"{want} is not a strike of {self.underlying} {self.expiry}")

    def atm(self, spot: Decimal | None = None) -> Decimal:
        """The strike nearest ``spot`` (default: the underlying's live price, :func:`spot_price`)."""
        price = spot if spot is not None else spot_price(self.underlying, self.exchange, self.future)
        if not self.rows:
            raise InvalidOrder("expiry", f"{self.underlying} has no options on {self.expiry}")
        return min(self.strikes, key=lambda k: (abs(k - price), k))


def _account(account: str | None, underlying: str, exchange: str, r: redis.Redis) -> str:
    if account:
        return account
    from common.settings import accounts

    for name in accounts():
        if r.hexists(keys.instrument_chains(name), f"{exchange}:{underlying.upper()}"):
            return name
    raise InvalidOrder("underlying", f"no account's instrument master lists {exchange}:{underlying.upper()}")


def expiries(underlying: str, exchange: str = "NFO", account: str | None = None, *,
             kind: str | None = None) -> list[date]:
    """The live expiries of ``underlying`` (``kind`` "option" or "future": only those), soonest first."""
    r = get_redis()
    name = _account(account, underlying, exchange, r)
    got = instruments.expiries(name, underlying, exchange, r)
    return [e for e, kinds in got.items() if kind is None or kind in kinds]


# A chain changes only when its master is stored again: decoded chains are kept per master version
# (its refreshed_at_ms), so a strategy asking every tick pays one Redis read, not 400 decodes.
_CHAINS: dict[tuple[str, str, str, date], tuple[str, OptionChain]] = {}
_CHAINS_MAX = 256


def option_chain(underlying: str, expiry: date | str, exchange: str = "NFO",
                 account: str | None = None) -> OptionChain:
    """Every strike of one expiry with its call and put (tokens, lot size, tick size: the account's
    broker's), and the expiry's future where one is listed. One Redis round trip while the master
    is the same (the chain decoded then is reused), three after a refresh."""
    r = get_redis()
    when = date.fromisoformat(expiry) if isinstance(expiry, str) else expiry
    name = _account(account, underlying, exchange, r)
    cache_key = (name, exchange, underlying.upper(), when)
    version = as_text(r.hget(keys.instruments_meta(name), "refreshed_at_ms") or b"")
    cached = _CHAINS.get(cache_key)
    if cached is not None and cached[0] == version and version:
        return cached[1]
    chain = _read_chain(r, name, underlying, when, exchange)
    if len(_CHAINS) >= _CHAINS_MAX:
        _CHAINS.clear()
    _CHAINS[cache_key] = (version, chain)
    return chain


def _read_chain(r: redis.Redis, name: str, underlying: str, when: date, exchange: str) -> OptionChain:
    entry = instruments.contracts(name, underlying, when, exchange, r)
    wanted = [f"{exchange}:{sym}" for _, _, sym in entry["options"]]
    if entry["future"]:
        wanted.append(f"{exchange}:{entry['future']}")
    found = dict(zip(wanted, instruments.lookup_many(name, wanted, r), strict=True))
    by_strike: dict[Decimal, dict[str, Instrument | None]] = {}
    for strike, right, sym in entry["options"]:
        by_strike.setdefault(Decimal(strike), {})[right] = found.get(f"{exchange}:{sym}")
    rows = [ChainRow(k, v.get("CE"), v.get("PE")) for k, v in sorted(by_strike.items())]
    fut = found.get(f"{exchange}:{entry['future']}") if entry["future"] else None
    return OptionChain(name, exchange, underlying.upper(), when, rows, fut)


def future(underlying: str, expiry: date | str | None = None, exchange: str = "NFO",
           account: str | None = None) -> Instrument:
    """The future of ``expiry`` (default: the nearest listed)."""
    r = get_redis()
    name = _account(account, underlying, exchange, r)
    if expiry is None:
        listed = expiries(underlying, exchange, name, kind="future")
        if not listed:
            raise InvalidOrder("underlying", f"{exchange}:{underlying.upper()} has no futures listed")
        when = listed[0]
    else:
        when = date.fromisoformat(expiry) if isinstance(expiry, str) else expiry
    sym = instruments.contracts(name, underlying, when, exchange, r)["future"]
    inst = instruments.lookup(name, f"{exchange}:{sym}", r) if sym else None
    if inst is None:
        raise InvalidOrder("expiry", f"{exchange}:{underlying.upper()} has no future on {when}")
    return inst


def spot_price(underlying: str, exchange: str = "NFO", fut: Instrument | None = None) -> Decimal:
    """The underlying's live price from the feed (``bg:ltp``): its spot, else its future's."""
    r = get_redis()
    spot_key = SPOT.get(underlying.upper(), f"{'BSE' if exchange == 'BFO' else 'NSE'}:{underlying.upper()}")
    candidates = [spot_key] + ([fut.key] if fut is not None else [])
    for raw in r.hmget(keys.LTP, candidates):
        if raw:
            return Decimal(as_text(raw))
    raise BrokerGateError(f"no live price of {underlying.upper()}: subscribe to {spot_key} "
                          "(brokergate.subscribe_ticks) so the feed streams it")


def atm_strike(underlying: str, expiry: date | str, exchange: str = "NFO", account: str | None = None) -> Decimal:
    """The strike of ``expiry`` nearest the underlying's live price."""
    return option_chain(underlying, expiry, exchange, account).atm()
