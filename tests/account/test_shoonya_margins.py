"""Shoonya (Noren) margin calculators, ``GetOrderMargin`` and ``GetBasketMargin``: the pure request
builder and answer parser on answers built from Shoonya's documented field tables
(tests/data/shoonya/, README.md says why they are not a published sample), then the adapter against
the paper broker, whose answers must be paper/portfolio.py's ``margin_for`` for a LIMIT order, a
MARKET order and a basket of the two.

NorenRestApiPy has no margin call (0.0.22, nor NorenRestApi 0.0.37 or NorenRestApiOAuth 0.0.41),
so the official client is the oracle for what it does read: the basket margin is documented as the
basket answer's ``marginused`` less Limits' ``marginused``, and ``NorenApi.get_limits()`` reads the
latter from the same paper broker.

The paper broker runs in this process; its prices move only when something steps them (a quote, a
placement), so a market order is priced at one last price while the margins are asked for."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from common.brokers.shoonya import portfolio
from common.brokers.shoonya.rest import Adapter
from common.errors import OrderRejected, TokenExpired
from common.models import Instrument, Order
from common.portfolio import Margin
from paper import portfolio as books
from paper.universe import PaperInstrument
from tests.account.helpers import InProcessPaper
from tests.account.test_shoonya_portfolio import INFY, SBIN, noren, shoonya_at_paper
from tests.brokers import marketable
from tests.fixtures.paper import PaperUser
from tests.paths import DATA

D = Decimal
NO_PRICE = D(0)  # a market order: the paper broker prices it at the last price


def golden(name: str) -> Any:
    return json.loads((DATA / "shoonya" / name).read_text())


# ----- (a) the documented answers and the requests ------------------------------------------------------
def test_the_order_margin_answers() -> None:
    # ordermargin is "Margin required for this order", whatever the balance
    assert portfolio.order_margin(golden("order_margin.json")) == Margin(total=D("20430.50"), orders=(D("20430.50"),))
    short = portfolio.order_margin(golden("order_margin_insufficient.json"))
    assert short == Margin(total=D("10000.00"), orders=(D("10000.00"),))
    # The older table has no ordermargin: marginused ("Total margin used") less what was used before
    older = {"stat": "Ok", "remarks": "Order Success", "cash": "100.00", "marginused": "60.50", "marginusedprev": "10"}
    assert portfolio.order_margin(older).total == D("50.50")


def test_the_basket_margin_answer() -> None:
    body = golden("basket_margin.json")
    # The documented answer carries no margin used before it: Limits' marginused is subtracted
    assert portfolio.used_before_basket(body) is None
    assert portfolio.basket_margin(body, D("5000.00")) == Margin(total=D("70430.50"))
    # An answer that carries marginusedprev (as GetOrderMargin's does) needs no Limits read
    assert portfolio.used_before_basket({**body, "marginusedprev": "5000.00"}) == D("5000.00")


def test_refusals_are_mapped() -> None:
    expired = {"stat": "Not_Ok", "emsg": "Session Expired : Invalid Session Key"}
    with pytest.raises(TokenExpired):
        portfolio.order_margin(expired)
    with pytest.raises(TokenExpired):
        portfolio.used_before_basket(expired)
    with pytest.raises(OrderRejected):
        portfolio.basket_margin({"stat": "Not_Ok", "emsg": "Invalid Input : Invalid Trading Symbol"}, D(0))


def test_the_requests_are_the_place_translation_cut_to_the_calculator_fields() -> None:
    limit = Order(account="s", exchange="NSE", symbol="SBIN", side="BUY", quantity=10, order_type="LIMIT",
                  price=D("801.35"), product="DELIVERY")  # fmt: skip
    stop = Order(account="s", exchange="NSE", symbol="M&M", side="SELL", quantity=2, order_type="SL",
                 price=D("3000.00"), trigger_price=D("3001.00"), product="NORMAL")  # fmt: skip
    market = Order(account="s", exchange="NSE", symbol="INFY", side="BUY", quantity=3, product="INTRADAY")
    assert portfolio.order_margin_values(limit, SBIN, "FA1") == {
        "uid": "FA1", "actid": "FA1", "exch": "NSE", "tsym": "SBIN-EQ", "qty": "10", "prc": "801.35", "prd": "C",
        "trantype": "B", "prctyp": "LMT"}  # fmt: skip
    # The symbol URL-encoded as PlaceOrder sends it; a trigger only where the order has one
    assert portfolio.order_margin_values(stop, None, "FA1") == {
        "uid": "FA1", "actid": "FA1", "exch": "NSE", "tsym": "M%26M-EQ", "qty": "2", "prc": "3000.00",
        "trgprc": "3001.00", "prd": "M", "trantype": "S", "prctyp": "SL-LMT"}  # fmt: skip
    # A basket: the first order in the body, the others in basketlists (no account fields there)
    basket = portfolio.basket_margin_values([(limit, SBIN), (market, INFY), (stop, None)], "FA1")
    assert {k: v for k, v in basket.items() if k != "basketlists"} == portfolio.order_margin_values(limit, SBIN, "FA1")
    assert basket["basketlists"] == [
        {"exch": "NSE", "tsym": "INFY-EQ", "qty": "3", "prc": "0", "prd": "I", "trantype": "B", "prctyp": "MKT"},
        {k: v for k, v in portfolio.order_margin_values(stop, None, "FA1").items() if k not in ("uid", "actid")},
    ]
    assert "basketlists" not in portfolio.basket_margin_values([(limit, SBIN)], "FA1")


# ----- (b) the paper broker -----------------------------------------------------------------------------
@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[InProcessPaper, Adapter, PaperUser]]:
    with shoonya_at_paper(tmp_path, monkeypatch) as got:
        yield got


def paper_instrument(paper: InProcessPaper, inst: Instrument) -> PaperInstrument:
    found = paper.state.by_shoonya_token(inst.exchange, inst.token)
    assert found is not None
    return found


def needs(paper: InProcessPaper, inst: Instrument, product: str, quantity: int, price: Decimal = NO_PRICE) -> Decimal:
    """What the paper broker computes for one order, in rupees (its prices are paise)."""
    p = paper_instrument(paper, inst)
    units = books.margin_for(paper.state, p, product, quantity, int(price * p.price_divisor))
    return D(units) / p.price_divisor


def test_the_adapter_agrees_with_the_paper_broker(live: tuple[InProcessPaper, Adapter, PaperUser]) -> None:
    paper, adapter, user = live
    # Given an account that already uses margin: an intraday buy filled at the market
    adapter.place(Order(account="shoonya1", exchange="NSE", symbol="SBIN", side="BUY", quantity=5,
                        **marketable("shoonya")), SBIN)  # a fill (Shoonya refuses MKT from API clients)
    used = adapter.funds().used_margin
    assert used > 0
    limit = Order(account="shoonya1", exchange="NSE", symbol="SBIN", side="BUY", quantity=10, order_type="LIMIT",
                  price=D("801.35"), product="DELIVERY")  # fmt: skip
    market = Order(account="shoonya1", exchange="NSE", symbol="INFY", side="SELL", quantity=3, product="NORMAL")

    # When it asks for a LIMIT order's margin, then a MARKET order's, then both as a basket
    limit_margin = adapter.margin_required([(limit, SBIN)])
    market_margin = adapter.margin_required([(market, INFY)])
    basket = adapter.margin_required([(limit, SBIN), (market, INFY)])

    # Then each is what the paper broker computes: the limit at its price, the market order at
    # the last price, the basket their plain sum (nothing to hedge with at the paper broker)
    limit_need, market_need = needs(paper, SBIN, "C", 10, D("801.35")), needs(paper, INFY, "M", 3)
    assert limit_margin == Margin(total=limit_need, orders=(limit_need,))
    assert market_margin == Margin(total=market_need, orders=(market_need,))
    assert basket == Margin(total=limit_need + market_need)
    assert adapter.margin_required([]) == Margin(total=D(0))
    # And nothing was placed, nothing more is used
    assert adapter.funds().used_margin == used
    assert len(books.trades(paper.state, "shoonya", user.user_id)) == 1

    # And the calculators count as "other" at the paper broker, as the adapter's limiter counts them;
    # the documented basket answer carries no marginusedprev, so a basket also reads Limits
    calls = [e["path"].rsplit("/", 1)[-1] for e in paper.broker.requests()]
    assert calls[-6:] == ["Limits", "GetOrderMargin", "GetOrderMargin", "GetBasketMargin", "Limits", "Limits"]
    classes = {e["path"].rsplit("/", 1)[-1]: e["endpoint_class"] for e in paper.broker.requests()}
    assert classes["GetOrderMargin"] == classes["GetBasketMargin"] == "other"


def test_the_answers_read_by_the_official_client(live: tuple[InProcessPaper, Adapter, PaperUser]) -> None:
    paper, adapter, user = live
    adapter.place(Order(account="shoonya1", exchange="NSE", symbol="INFY", side="BUY", quantity=4,
                        **marketable("shoonya")), INFY)
    api = noren(paper, user, adapter)
    key = api._NorenApi__susertoken
    uid = user.user_id

    def post(name: str, values: dict[str, Any]) -> Any:
        # As NorenApi posts every call: raw JSON after jData=, then the session key
        body = f"jData={json.dumps(values)}&jKey={key}"
        return requests.post(f"{paper.url}/NorenWClientTP/{name}", data=body, timeout=5).json()

    limit = Order(account="shoonya1", exchange="NSE", symbol="SBIN", side="BUY", quantity=10, order_type="LIMIT",
                  price=D("801.35"), product="DELIVERY")  # fmt: skip
    market = Order(account="shoonya1", exchange="NSE", symbol="INFY", side="BUY", quantity=3, product="INTRADAY")
    limits = api.get_limits()
    before, cash = D(limits["marginused"]), D(limits["cash"])

    # The order answer: ordermargin what the order needs, marginusedprev Limits' marginused as the
    # official client reads it, marginused the total after the order
    answer = post("GetOrderMargin", portfolio.order_margin_values(limit, SBIN, uid))
    need = needs(paper, SBIN, "C", 10, D("801.35"))
    assert answer["stat"] == "Ok" and answer["remarks"] == "Order Success"
    assert (D(answer["ordermargin"]), D(answer["marginusedprev"]), D(answer["cash"])) == (need, before, cash)
    assert D(answer["marginused"]) == before + need

    # The basket answer: marginused less the official client's Limits marginused is the basket margin
    answer = post("GetBasketMargin", portfolio.basket_margin_values([(limit, SBIN), (market, INFY)], uid))
    assert set(answer) == {"request_time", "stat", "remarks", "marginused", "marginusedtrade"}
    total = need + needs(paper, INFY, "I", 3)
    assert D(answer["marginused"]) - D(api.get_limits()["marginused"]) == total
    assert adapter.margin_required([(limit, SBIN), (market, INFY)]).total == total

    # An order beyond the balance: still its margin, remarked, marginused the shortfall
    huge = Order(account="shoonya1", exchange="NSE", symbol="SBIN", side="BUY", quantity=100_000, order_type="LIMIT",
                 price=D("801.35"), product="DELIVERY")  # fmt: skip
    answer = post("GetOrderMargin", portfolio.order_margin_values(huge, SBIN, uid))
    need = needs(paper, SBIN, "C", 100_000, D("801.35"))
    assert answer["remarks"] == "Insufficient Balance" and D(answer["ordermargin"]) == need
    assert D(answer["marginused"]) == before + need - cash
    assert adapter.margin_required([(huge, SBIN)]).total == need


def test_the_paper_broker_refuses_as_noren(live: tuple[InProcessPaper, Adapter, PaperUser]) -> None:
    paper, adapter, user = live
    nope = Instrument("NSE", "NOPE", "999999", broker_symbol="NOPE-EQ")
    order = Order(account="shoonya1", exchange="NSE", symbol="NOPE", side="BUY", quantity=1)
    with pytest.raises(OrderRejected, match="Invalid Trading Symbol"):
        adapter.margin_required([(order, nope)])
    with pytest.raises(OrderRejected, match="Invalid Trading Symbol"):
        adapter.margin_required([(order.with_(symbol="SBIN"), SBIN), (order, nope)])
    key = noren(paper, user, adapter)._NorenApi__susertoken
    body = f"jData={json.dumps({'uid': user.user_id})}&jKey={key}"
    answer = requests.post(f"{paper.url}/NorenWClientTP/GetOrderMargin", data=body, timeout=5).json()
    assert answer == {**answer, "stat": "Not_Ok", "emsg": "Invalid Input : Missing uid or actid."}
    expired = Adapter(adapter.account, lambda: "not-a-session")
    with pytest.raises(TokenExpired):
        expired.margin_required([(order.with_(symbol="SBIN"), SBIN)])
