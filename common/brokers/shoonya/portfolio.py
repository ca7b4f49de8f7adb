"""Shoonya (Noren) account state, pure: ``PositionBook``, ``Holdings``, ``Limits`` and ``TradeBook``
answers in, the generic models of ``common/portfolio.py`` out (and the ``jData`` each call sends).

The fields are NorenRestApiPy's README ("Holdings and Limits", "Trade Book"; the SDK's
``get_positions``, ``get_holdings``, ``get_limits``, ``get_trade_book``): every value a string,
money in rupees. The books are JSON lists; an empty one is ``{"stat": "Not_Ok", "emsg": ...no
data...}``, read here as an empty book. What the payloads leave to interpretation:

* ``prd`` is the product code (C delivery, I intraday, M carry-forward; B bracket and H cover
  orders are intraday products). The README's position sample spells it ``prarr``: both are read.
* Positions: ``rpnl`` and ``urmtom`` are P&L (profit positive: the README sums them as the day's
  MTM and gives ``urmtom = netqty * (lp - netavgprc) * prcftr``). Bought/sold totals are the day's
  plus the carried-forward (``cf*``) figures.
* Holdings: the quantity is the README's "Valuation" (``btstqty + holdqty + brkcolqty + unplgdqty
  + benqty + max(npoadqty, dpqty) - usedqty``), T1 is ``btstqty``; the average is ``upldprc``.
  The exchange row is the NSE one of ``exch_tsym`` when there is one (a stock lists NSE and BSE).
* Limits has no segment split unless asked for one: one segment, ``"all"``. ``rpnl`` and
  ``urmtom`` (the README's table calls the latter ``unmtom``; its sample says ``urmtom``) are
  listed among the "Margin Used components" and the sample's ``marginused`` is ``grexpo +
  urmtom``: they are debits there, a loss positive, so they are negated into P&L. Available
  margin is ``cash + payin + daycash + brkcollamt - marginused``.
* Margin calculators (Shoonya's API documentation, "Order Margin" and "Basket Margin"): the
  ``jData`` of ``GetOrderMargin`` is an order's fields as ``PlaceOrder`` sends them (``uid, actid,
  exch, tsym, qty, prc, trgprc, prd, trantype, prctyp``); ``GetBasketMargin`` takes the first order
  the same way and the others in ``basketlists`` (``exch, tsym, qty, prc, trgprc, prd, trantype,
  prctyp`` each). ``GetOrderMargin`` answers ``ordermargin`` ("Margin required for this order"),
  ``marginusedprev`` ("Margin used excluding this order"), ``cash`` and ``marginused`` (whose
  "meaning changes with remarks": the total after the order, or with "Insufficient Balance" the
  shortfall), so ``ordermargin`` is the figure; an answer without it (the older table lists only
  ``cash`` and ``marginused``, "Total margin used") is read as ``marginused - marginusedprev``.
  ``GetBasketMargin`` answers ``marginused`` ("Total margin used", the account's included) and
  ``marginusedtrade`` ("Margin used after trade"); the documented basket margin is its
  ``marginused`` minus Limits' ``marginused``. Noren reports no charges and no per-order figures
  for a basket.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from common.brokers.payload import amount, day_and_carried, money, money_or, text, whole
from common.brokers.shoonya.errors import NO_DATA, emsg_kind, map_error
from common.brokers.shoonya.instruments import generic_symbol
from common.brokers.shoonya.translate import order_values
from common.models import Instrument, Order, Product
from common.portfolio import ZERO, Funds, Holding, Margin, Position, Segment, Trade

__all__ = [
    "HOLDINGS_PRODUCT", "MARGIN_FIELDS", "PRODUCTS", "SEGMENT", "account_values", "basket_margin",
    "basket_margin_values", "funds_from_limits", "holdings_from_rows", "is_empty_book", "order_margin",
    "order_margin_values", "positions_from_rows", "trades_from_rows", "used_before_basket",
]  # fmt: skip

PRODUCTS: dict[str, str] = {"C": Product.DELIVERY.value, "I": Product.INTRADAY.value, "M": Product.NORMAL.value,
                            "B": Product.INTRADAY.value, "H": Product.INTRADAY.value}  # fmt: skip
SIDES = {"B": "BUY", "S": "SELL"}
SEGMENT = "all"  # Limits without ``seg``: the whole account, every segment together
HOLDINGS_PRODUCT = "C"  # the SDK's get_holdings default (ProductType.Delivery)
_PREFERRED_EXCHANGE = "NSE"
# An order's fields in the calculators' jData (and in each basketlists entry), as PlaceOrder's.
MARGIN_FIELDS = ("exch", "tsym", "qty", "prc", "trgprc", "prd", "trantype", "prctyp")


def account_values(user_id: str, product: str | None = None) -> dict[str, str]:
    """The ``jData`` of PositionBook, Limits and TradeBook (``uid``, ``actid``); Holdings adds
    ``prd``. The account id is the user id, as the SDK sends it."""
    values = {"uid": user_id, "actid": user_id}
    if product is not None:
        values["prd"] = product
    return values


def is_empty_book(body: Any) -> bool:
    """True for Noren's answer to a book with nothing in it (``Not_Ok`` with "no data")."""
    return (isinstance(body, dict) and body.get("stat") == "Not_Ok"
            and emsg_kind(str(body.get("emsg") or "")) == NO_DATA)  # fmt: skip


def _rows(body: Any) -> Iterator[dict[str, Any]]:
    """The rows of a book; the "no data" answer has none, and any other answer that is not a list
    is the broker's refusal (mapped at the one point, errors.map_error)."""
    if is_empty_book(body):
        return
    if not isinstance(body, list):
        raise map_error(200, body, "")
    yield from (row for row in body if isinstance(row, dict) and row.get("stat", "Ok") == "Ok")


def _ok(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("stat") != "Ok":
        raise map_error(200, body, "")
    return body


def _product(row: dict[str, Any]) -> str:
    code = text(row.get("prd") or row.get("prarr"))
    return PRODUCTS.get(code, code)  # an unknown code is kept, never guessed


def _symbol(tsym: Any) -> str:
    return generic_symbol(text(tsym), "")


def positions_from_rows(body: Any) -> list[Position]:
    """A ``PositionBook`` answer (a list, or the "no data" refusal) -> Positions, in its order."""
    out = []
    for row in _rows(body):
        quantities = day_and_carried(whole(row.get("daybuyqty")), whole(row.get("daysellqty")),
                                     whole(row.get("cfbuyqty")), whole(row.get("cfsellqty")))
        out.append(Position(
            exchange=text(row.get("exch")),
            symbol=_symbol(row.get("tsym")),
            product=_product(row),
            quantity=whole(row.get("netqty")),
            average_price=amount(row.get("netavgprc")),
            buy_value=amount(row.get("daybuyamt")) + amount(row.get("cfbuyamt")),
            sell_value=amount(row.get("daysellamt")) + amount(row.get("cfsellamt")),
            realised_pnl=amount(row.get("rpnl")),
            unrealised_pnl=amount(row.get("urmtom")),
            last_price=amount(row.get("lp")),
            multiplier=whole(row.get("mult")) or 1,
            token=text(row.get("token")),
            **quantities,
        ))  # fmt: skip
    return out


def _scrip(row: dict[str, Any]) -> dict[str, Any]:
    scrips = [s for s in row.get("exch_tsym") or [] if isinstance(s, dict)]
    return next((s for s in scrips if s.get("exch") == _PREFERRED_EXCHANGE), scrips[0] if scrips else {})


def holdings_from_rows(body: Any) -> list[Holding]:
    """A ``Holdings`` answer -> Holdings (rows without a scrip or with nothing held are skipped)."""
    out = []
    for row in _rows(body):
        scrip = _scrip(row)
        if not scrip:
            continue
        q = {k: whole(row.get(k)) for k in ("btstqty", "holdqty", "brkcolqty", "unplgdqty", "benqty", "npoadqty",
                                            "dpqty", "usedqty")}  # fmt: skip
        quantity = (q["btstqty"] + q["holdqty"] + q["brkcolqty"] + q["unplgdqty"] + q["benqty"]
                    + max(q["npoadqty"], q["dpqty"]) - q["usedqty"])  # fmt: skip
        if not quantity:
            continue
        out.append(Holding(exchange=text(scrip.get("exch")), symbol=_symbol(scrip.get("tsym")), quantity=quantity,
                           average_price=amount(row.get("upldprc")), t1_quantity=q["btstqty"],
                           token=text(scrip.get("token"))))  # fmt: skip
    return out


def funds_from_limits(body: Any) -> Funds:
    """A ``Limits`` answer -> Funds with its one segment, :data:`SEGMENT` (a refusal raises)."""
    body = _ok(body)
    cash, payin = amount(body.get("cash")), amount(body.get("payin"))
    collateral = amount(body.get("brkcollamt"))
    used = amount(body.get("marginused"))
    unrealised_debit = money_or(body.get("urmtom"), amount(body.get("unmtom")))
    segment = Segment(
        available_cash=cash + payin,
        used_margin=used,
        available_margin=cash + payin + amount(body.get("daycash")) + collateral - used,
        opening_balance=cash,
        collateral=collateral,
        realised_pnl=ZERO - amount(body.get("rpnl")),
        unrealised_pnl=ZERO - unrealised_debit,
    )
    return Funds.of_segments({SEGMENT: segment})


def trades_from_rows(body: Any) -> list[Trade]:
    """A ``TradeBook`` answer -> Trades (one per fill), in its order; our tag is ``remarks``."""
    return [
        Trade(trade_id=text(row.get("flid")), broker_order_id=text(row.get("norenordno")),
              exchange=text(row.get("exch")), symbol=_symbol(row.get("tsym")), product=_product(row),
              side=SIDES.get(text(row.get("trantype")), text(row.get("trantype"))), quantity=whole(row.get("flqty")),
              price=amount(row.get("flprc")), client_order_id=text(row.get("remarks")),
              fill_time=text(row.get("fltm")), token=text(row.get("token")))
        for row in _rows(body)
    ]  # fmt: skip


# ----- margin calculators ---------------------------------------------------------------------------
def _leg(order: Order, instrument: Instrument | None, user_id: str) -> dict[str, str]:
    # PlaceOrder's own translation (symbol, product, price type, prices), its order fields only.
    values = order_values(order, instrument, user_id)
    return {k: values[k] for k in MARGIN_FIELDS if k in values}


def order_margin_values(order: Order, instrument: Instrument | None, user_id: str) -> dict[str, str]:
    """``GetOrderMargin``'s ``jData`` for one order."""
    return {**account_values(user_id), **_leg(order, instrument, user_id)}


def basket_margin_values(orders: Sequence[tuple[Order, Instrument | None]], user_id: str) -> dict[str, Any]:
    """``GetBasketMargin``'s ``jData``: the first order as ``GetOrderMargin`` sends it, the rest in
    ``basketlists`` ("Out of basketlists, the parameter provided will be considered as the first order")."""
    (first, instrument), *rest = orders
    values: dict[str, Any] = order_margin_values(first, instrument, user_id)
    if rest:
        values["basketlists"] = [_leg(o, i, user_id) for o, i in rest]
    return values


def order_margin(body: Any) -> Margin:
    """A ``GetOrderMargin`` answer -> the Margin of its one order (a refusal raises). "Insufficient
    Balance" in ``remarks`` is no refusal: the margin is still what the order needs."""
    body = _ok(body)
    need = money_or(body.get("ordermargin"),
                    amount(body.get("marginused")) - amount(body.get("marginusedprev")))
    return Margin(total=need, orders=(need,))


def used_before_basket(body: Any) -> Decimal | None:
    """The account's margin used before the basket, where the answer carries it (``marginusedprev``,
    as ``GetOrderMargin`` names it; the documented basket answer does not, and Limits' ``marginused``
    is then the figure to subtract)."""
    return money(_ok(body).get("marginusedprev"))


def basket_margin(body: Any, used_before: Decimal) -> Margin:
    """A ``GetBasketMargin`` answer -> the Margin of the orders together: its ``marginused`` (the
    account's margin included) less ``used_before``, the margin used without them."""
    return Margin(total=amount(_ok(body).get("marginused")) - used_before)
