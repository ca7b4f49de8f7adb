"""Ticks on Redis: the message format, subscribing strategies, and asking the feed for instruments.

**Channel** ``ticks:<EXCHANGE>:<SYMBOL>`` (:func:`common.keys.ticks_channel`), one message per
tick. **Message**: a JSON object whose keys are the :class:`~common.models.Tick` fields, in
that order::

    {"exchange":"NSE","symbol":"INFY","token":"408065","mode":"full","price_divisor":100,
     "last_price":157370,"last_quantity":7,"average_price":157037,"volume":1192471,"oi":0,
     "bid_price":157340,"bid_quantity":5,"ask_price":157370,"ask_quantity":172,
     "open":156915,"high":157500,"low":156105,"close":156780,
     "exchange_ts_ms":1625461887000,"received_ns":1732540000123456789,
     "bids":[157340,5,1, ...],"asks":[157370,172,3, ...]}

Prices are exact: integers in 1/``price_divisor`` rupee (``last_price / price_divisor`` is
rupees; 157370 / 100 = 1573.70). ``bids``/``asks`` are (price, quantity, orders) * 5 flattened,
empty unless the mode carries depth. Fields a mode does not carry are 0. ``received_ns`` is
the feed's wall clock (``time.time_ns()``) when the frame arrived. ``bg:ltp`` (hash,
:data:`common.keys.LTP`) holds the last price per ``EXCHANGE:SYMBOL`` as an exact decimal
string ("1573.70") for late joiners.

Why JSON and not msgpack (measured here, one full-mode tick; "publish" is 1,000-tick frames
into a local Redis, one round trip a frame, ticks/s on one core, no decode):

=========================  =========  =========  =====  ===============
format                     encode µs  decode µs  bytes  publish ticks/s
=========================  =========  =========  =====  ===============
JSON object, json.dumps    7.3        5.5        507    104k
JSON object, this encoder  4.8        5.5        489    (see below)
JSON array                 4.5        3.4        270    131k
msgpack map                2.5        2.4        366    201k
msgpack array              0.9        0.8        173    346k
=========================  =========  =========  =====  ===============

End to end (decode + publish, ``bench/feed.py``, same run, on a loaded 2-core machine):
this JSON encoder 47k ticks/s, msgpack array 99k ticks/s; the target is 30k, and the full
load (9,000 instruments at 1 tick/s) costs 8% of one core with JSON. JSON meets the
targets, is self-describing (fields can be added without breaking readers), and every
strategy in any language reads it with its standard library; msgpack would add a
dependency on both sides and positional fields (a map loses most of its speed). The
encoder (:func:`encode_tick`) formats the object with one ``%`` from a cached
per-instrument prefix instead of ``json.dumps`` of a dict.

Subscriptions: :func:`subscribe` / :func:`unsubscribe` write the hash
:func:`common.keys.feed_subs` (``EXCHANGE:SYMBOL`` → mode) of an account and publish the
account's name on :data:`common.keys.FEED_CONTROL`; the feed process maps them to broker
tokens and keeps them subscribed, with their modes, across every reconnect.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import redis

from common import keys
from common.models import Tick
from common.redis import get_redis, hash_fields, text_hash

__all__ = [
    "MODES",
    "TickSubscription",
    "decode_tick",
    "encode_tick",
    "price_str",
    "subscribe",
    "subscribe_ticks",
    "subscriptions",
    "unsubscribe",
]

MODES = ("ltp", "quote", "full")
_FIELDS = Tick._fields
_quote = json.JSONEncoder(ensure_ascii=False).encode  # a JSON string literal, escaped

# Everything after the three strings (exchange, symbol, token) of a tick, as one format.
_REST = (
    ',"mode":"%s","price_divisor":%d,"last_price":%d,"last_quantity":%d,"average_price":%d,'
    '"volume":%d,"oi":%d,"bid_price":%d,"bid_quantity":%d,"ask_price":%d,"ask_quantity":%d,'
    '"open":%d,"high":%d,"low":%d,"close":%d,"exchange_ts_ms":%d,"received_ns":%d,'
)
_DEPTH15 = ",".join(["%d"] * 15)
_TAIL_FULL = _REST + '"bids":[' + _DEPTH15 + '],"asks":[' + _DEPTH15 + "]}"
_TAIL_NONE = _REST + '"bids":[],"asks":[]}'
_heads: dict[tuple[str, str, str], str] = {}


def _head(exchange: str, symbol: str, token: str) -> str:
    h = _heads.get((exchange, symbol, token))
    if h is None:
        if len(_heads) > 200_000:  # instruments come and go over months; never grow without bound
            _heads.clear()
        h = f'{{"exchange":{_quote(exchange)},"symbol":{_quote(symbol)},"token":{_quote(token)}'
        _heads[(exchange, symbol, token)] = h
    return h


def encode_tick(t: Tick) -> bytes:
    """The message for one tick (UTF-8 JSON object; see the module docstring)."""
    if len(t.bids) == 15 and len(t.asks) == 15:
        return (_head(t[0], t[1], t[2]) + _TAIL_FULL % (t[3:20] + t.bids + t.asks)).encode()
    if not t.bids and not t.asks:
        return (_head(t[0], t[1], t[2]) + _TAIL_NONE % t[3:20]).encode()
    d = dict(zip(_FIELDS, t, strict=True))
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode()


def decode_tick(message: bytes | str) -> Tick:
    """A :class:`Tick` from a message; unknown keys (added later) are ignored."""
    d: dict[str, Any] = json.loads(message)
    d["bids"] = tuple(d.get("bids") or ())
    d["asks"] = tuple(d.get("asks") or ())
    return Tick(**{k: d[k] for k in _FIELDS if k in d})


def price_str(value: int, divisor: int) -> str:
    """An exact decimal string of ``value / divisor`` ("1573.70" for 157370 / 100)."""
    places = len(str(divisor)) - 1
    if divisor != 10**places:
        from decimal import Decimal

        return str(Decimal(value) / divisor)
    if places == 0:
        return str(value)
    sign = "-" if value < 0 else ""
    q, r = divmod(abs(value), divisor)
    return f"{sign}{q}.{r:0{places}d}"


# --- strategies --------------------------------------------------------------------------


def _default_account(account: str | None) -> str:
    if account:
        return account
    from common.settings import accounts

    names = list(accounts())
    if len(names) != 1:
        raise ValueError(f"several accounts ({', '.join(names)}): say which one feeds these instruments")
    return names[0]


def _check(instrument: str, mode: str | None = None) -> str:
    exchange, sep, symbol = instrument.partition(":")
    if not sep or not exchange or not symbol:
        raise ValueError(f"{instrument!r} is not EXCHANGE:SYMBOL")
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    return f"{exchange.upper()}:{symbol}"


def subscribe(
    instruments: str | Iterable[str], mode: str = "quote", account: str | None = None, r: redis.Redis | None = None
) -> str | None:
    """Ask the feed to stream ``instruments`` ("NSE:INFY" or several) in ``mode`` (ltp, quote,
    full) from ``account`` (the only account when there is one); returns that account's name
    (None when there was nothing to ask). Idempotent; a later call with another mode changes
    the mode.

    Once the account's instrument master is loaded, a symbol it does not know raises
    :class:`~common.errors.InvalidOrder` (field ``symbol``) and nothing is subscribed: the feed
    could never map it, so no tick would ever come. Without a master nothing can be judged; the
    feed maps the subscription once the master is loaded (``brokergate instruments refresh``)."""
    from common import instruments as master
    from common.errors import InvalidOrder

    items = [instruments] if isinstance(instruments, str) else list(instruments)
    wanted = {_check(i, mode): mode for i in items}
    if not wanted:
        return None
    name = _default_account(account)
    client = r or get_redis()
    unknown = master.unknown(name, wanted, client)
    if unknown:
        raise InvalidOrder("symbol", f"{', '.join(unknown)} not in the instrument master of {name}")
    with client.pipeline(transaction=True) as p:
        p.hset(keys.feed_subs(name), mapping=hash_fields(wanted))
        p.publish(keys.FEED_CONTROL, name)
        p.execute()
    return name


def unsubscribe(instruments: str | Iterable[str], account: str | None = None, r: redis.Redis | None = None) -> None:
    """Stop streaming ``instruments`` from ``account``."""
    items = [instruments] if isinstance(instruments, str) else list(instruments)
    names = [_check(i) for i in items]
    if not names:
        return
    name = _default_account(account)
    client = r or get_redis()
    with client.pipeline(transaction=True) as p:
        p.hdel(keys.feed_subs(name), *names)
        p.publish(keys.FEED_CONTROL, name)
        p.execute()


def subscriptions(account: str, r: redis.Redis | None = None) -> dict[str, str]:
    """``EXCHANGE:SYMBOL`` → mode that the feed keeps subscribed for ``account``."""
    return text_hash((r or get_redis()).hgetall(keys.feed_subs(account)))


class TickSubscription:
    """Ticks of some instruments as :class:`Tick`, from Redis pub/sub.

    Iterate for ever (``for tick in sub``), or call :meth:`get` with a timeout. Use as a
    context manager, or call :meth:`close`.
    """

    def __init__(self, instruments: Iterable[str], r: redis.Redis | None = None) -> None:
        self._pubsub = (r or get_redis()).pubsub(ignore_subscribe_messages=True)
        channels = []
        for instrument in instruments:
            exchange, _, symbol = _check(instrument).partition(":")
            channels.append(keys.ticks_channel(exchange, symbol))
        if not channels:
            raise ValueError("no instruments to subscribe to")
        self._pubsub.subscribe(*channels)

    def get(self, timeout_s: float = 1.0) -> Tick | None:
        """The next tick, or None when none arrives within ``timeout_s``."""
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            msg = self._pubsub.get_message(timeout=left)
            if msg is not None and msg.get("type") == "message":
                return decode_tick(msg["data"])

    def __iter__(self) -> Iterator[Tick]:
        for msg in self._pubsub.listen():
            if msg.get("type") == "message":
                yield decode_tick(msg["data"])

    def close(self) -> None:
        self._pubsub.close()

    def __enter__(self) -> TickSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def subscribe_ticks(
    instruments: str | Iterable[str],
    mode: str | None = "quote",
    account: str | None = None,
    r: redis.Redis | None = None,
) -> TickSubscription:
    """Listen to ticks of ``instruments`` ("NSE:INFY", ...). With a ``mode`` (the default),
    also ask the feed to stream them (:func:`subscribe`); ``mode=None`` only listens.

    The listener subscribes to the channels before the feed is asked, so no tick of the
    new subscription is missed.
    """
    items = [instruments] if isinstance(instruments, str) else list(instruments)
    sub = TickSubscription(items, r)
    if mode is not None:
        try:
            subscribe(items, mode, account, r)
        except Exception:
            sub.close()  # refused (e.g. an unknown symbol): do not leak the listener
            raise
    return sub
