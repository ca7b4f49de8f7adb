"""The paper broker's books of each user: positions, holdings, funds and the trade book, computed
from its own fills (so they always agree with the orders it filled).

Pure reads over :class:`paper.state.PaperState`; each dialect's REST module formats them in its
broker's real payload (``paper/<broker>/rest.py``). Money is integer 1/price_divisor rupees, as
everywhere in the paper broker.

Rules, simple and stated (a real broker's are richer; the tests compare brokergate against these):

* A position is one (instrument, product) of the user's filled trades today. Nothing is carried
  in overnight, so net = day.
* Holdings: every user starts the day with :data:`SEED_HOLDINGS` (settled, at the instrument's
  base price), plus today's DELIVERY buys as T1 quantity (and sells reduce it).
* Funds: :data:`OPENING_CASH_RUPEES` opening balance. Margin used = the open positions at their
  last price times the product's rate (:data:`MARGIN_RATE`), plus open orders' quantity at their
  price (the last price for market orders) times the rate. Available margin = opening balance +
  realised P&L - margin used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from paper.orders import PaperOrder, PaperTrade
from paper.universe import PaperInstrument

if TYPE_CHECKING:
    from paper.state import PaperState

__all__ = [
    "MARGIN_RATE", "OPENING_CASH_RUPEES", "SEED_HOLDINGS", "PaperFunds", "PaperHolding", "PaperPosition",
    "funds", "holdings", "margin_for", "margin_rate", "orders", "positions", "product_kind", "trades",
]  # fmt: skip

OPENING_CASH_RUPEES = 1_000_000
SEED_HOLDINGS: tuple[tuple[str, str, int], ...] = (("NSE", "INFY", 10), ("NSE", "RELIANCE", 5))
# Margin rate by product kind (Kite's names): delivery is paid in full.
MARGIN_RATE: dict[str, float] = {"CNC": 1.0, "MIS": 0.2, "NRML": 0.15}
# A dialect keeps its own product codes on its orders (Angel DELIVERY/CARRYFORWARD, Shoonya C/I/M,
# ...): the kind each is, for the margin and the holdings.
_KIND: dict[str, str] = {
    "CNC": "CNC", "DELIVERY": "CNC", "C": "CNC",
    "MIS": "MIS", "INTRADAY": "MIS", "I": "MIS", "CO": "MIS", "BO": "MIS", "H": "MIS", "B": "MIS",
    "NRML": "NRML", "CARRYFORWARD": "NRML", "MARGIN": "NRML", "M": "NRML",
}  # fmt: skip


def product_kind(product: str) -> str:
    """CNC, MIS or NRML for any dialect's product code (unknown: as given)."""
    return _KIND.get(product.upper(), product)


def margin_rate(product: str) -> float:
    return MARGIN_RATE.get(product_kind(product), 1.0)


@dataclass
class PaperPosition:
    instrument: PaperInstrument
    product: str  # CNC / MIS / NRML
    buy_quantity: int = 0
    buy_value: int = 0  # sum of qty * price, 1/price_divisor rupees
    sell_quantity: int = 0
    sell_value: int = 0
    last_price: int = 0

    @property
    def quantity(self) -> int:
        return self.buy_quantity - self.sell_quantity

    @property
    def buy_price(self) -> float:
        return self.buy_value / self.buy_quantity if self.buy_quantity else 0.0

    @property
    def sell_price(self) -> float:
        return self.sell_value / self.sell_quantity if self.sell_quantity else 0.0

    @property
    def average_price(self) -> float:
        """Of the net position (units); 0 when flat."""
        if self.quantity > 0:
            return self.buy_price
        if self.quantity < 0:
            return self.sell_price
        return 0.0

    @property
    def pnl(self) -> int:
        """Realised plus mark-to-market (units): what every broker's position book reports."""
        return self.sell_value - self.buy_value + self.quantity * self.last_price

    @property
    def realised(self) -> float:
        """On the closed quantity (units)."""
        closed = min(self.buy_quantity, self.sell_quantity)
        return closed * (self.sell_price - self.buy_price)

    @property
    def unrealised(self) -> float:
        return self.pnl - self.realised


@dataclass
class PaperHolding:
    instrument: PaperInstrument
    quantity: int  # settled
    t1_quantity: int
    average_price: int  # units
    last_price: int

    @property
    def pnl(self) -> int:
        return (self.quantity + self.t1_quantity) * (self.last_price - self.average_price)


@dataclass
class PaperFunds:
    opening_balance: int  # paise
    used_margin: int
    realised: int
    unrealised: int

    @property
    def available_margin(self) -> int:
        return self.opening_balance + self.realised - self.used_margin


def orders(state: PaperState, broker: str, user_id: str) -> list[PaperOrder]:
    """Every order of the user, in placement order."""
    return [o for o in state.orders.values() if o.broker == broker and o.user_id == user_id]


def trades(state: PaperState, broker: str, user_id: str) -> list[tuple[PaperOrder, PaperTrade]]:
    """Every fill of the user today, in fill order."""
    rows = [(o, t) for o in orders(state, broker, user_id) for t in o.trades]
    rows.sort(key=lambda ot: (ot[1].fill_time, ot[1].trade_id))
    return rows


def positions(state: PaperState, broker: str, user_id: str) -> list[PaperPosition]:
    by_key: dict[tuple[str, str, str], PaperPosition] = {}
    for order, trade in trades(state, broker, user_id):
        inst = order.instrument
        pos = by_key.setdefault((inst.exchange, inst.symbol, order.product), PaperPosition(inst, order.product))
        if order.transaction_type == "BUY":
            pos.buy_quantity += trade.quantity
            pos.buy_value += trade.quantity * trade.price
        else:
            pos.sell_quantity += trade.quantity
            pos.sell_value += trade.quantity * trade.price
    for pos in by_key.values():
        pos.last_price = state.prices.last_price(pos.instrument)
    return list(by_key.values())


def holdings(state: PaperState, broker: str, user_id: str) -> list[PaperHolding]:
    out: dict[tuple[str, str], PaperHolding] = {}
    for exchange, symbol, qty in SEED_HOLDINGS:
        inst = state.by_symbol(exchange, symbol)
        if inst is not None:
            out[(exchange, symbol)] = PaperHolding(inst, qty, 0, inst.base_price_paise,
                                                   state.prices.last_price(inst))
    for pos in positions(state, broker, user_id):
        if product_kind(pos.product) != "CNC" or not pos.quantity:
            continue
        inst = pos.instrument
        held = out.get((inst.exchange, inst.symbol))
        if held is None:
            held = out[(inst.exchange, inst.symbol)] = PaperHolding(inst, 0, 0, round(pos.average_price), pos.last_price)
        held.t1_quantity += pos.quantity
    return [h for h in out.values() if h.quantity + h.t1_quantity]


def _blocked(state: PaperState, order: PaperOrder) -> int:
    price = order.price or state.prices.last_price(order.instrument)
    return round(order.pending_quantity * price * margin_rate(order.product))


def funds(state: PaperState, broker: str, user_id: str) -> PaperFunds:
    """In paise (1/100 rupees): every paper instrument's divisor is 100 but currency derivatives',
    which the paper broker does not list."""
    used = 0
    realised = unrealised = 0.0
    for pos in positions(state, broker, user_id):
        used += round(abs(pos.quantity) * pos.last_price * margin_rate(pos.product))
        realised += pos.realised
        unrealised += pos.unrealised
    used += sum(_blocked(state, o) for o in orders(state, broker, user_id) if o.is_open)
    return PaperFunds(OPENING_CASH_RUPEES * 100, used, round(realised), round(unrealised))


def margin_for(state: PaperState, inst: PaperInstrument, product: str, quantity: int, price: int = 0) -> int:
    """What one order needs (units, 1/price_divisor rupees): its value at ``price`` (the last price
    for a market order, 0) times its product's rate. The paper broker's calculators for every
    dialect answer from this; a basket is the plain sum (no hedge benefit: the paper universe
    has no derivatives to hedge with)."""
    at = price or state.prices.last_price(inst)
    return round(quantity * at * margin_rate(product))
