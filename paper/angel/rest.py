"""Angel One SmartAPI at its own paths: login, token renewal, logout, profile, orders, order and
trade books, order details, positions, holdings, RMS limits, the margin calculator, LTP, and the
scrip master JSON.

Answers follow the SmartAPI conventions: business errors are HTTP 200 with
`{"status": false, "message", "errorcode": "AB....", "data": null}`; the gateway's token errors are
`{"success": false, "message", "errorCode": "AG800x", "data": ""}` (HTTP 401); the rate limit is an
HTTP 403 with a plain-text body. An empty book (orders, trades, positions, holdings) is `"data": null`, as
at Angel.

The 2026 rules (paper/rules.py): "Market orders and IOC orders are now strictly prohibited for
algorithmic trading" (Angel One, 25 Feb 2026), so placeOrder and modifyOrder refuse MARKET and
STOPLOSS_MARKET. Angel documents no answer for it: the business-error shape with AB4008 (the OMS
refused) and the message below are the paper broker's choice.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pyotp
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from paper import portfolio
from paper.angel.master import scrip_master
from paper.angel.payloads import (
    ANGEL_ORDERTYPE,
    ORDERTYPE_TO_KITE,
    angel_holding_payload,
    angel_margin_payload,
    angel_order_payload,
    angel_position_payload,
    angel_rms_payload,
    angel_trade_payload,
)
from paper.gateway import Authenticator, Call, Dialect, Handler, Reply, anonymous, json_object, make_endpoint
from paper.matching import OrderError, OrderRequest, one_of, rupees_to_units, whole_number
from paper.orders import next_ist_epoch
from paper.rules import MARKET_PROTECTION
from paper.universe import PaperInstrument
from paper.users import User, bearer_token, jwt_shaped

BASE = "/rest/secure/angelbroking"
VARIETIES = ("NORMAL", "STOPLOSS", "AMO", "ROBO")
PRODUCTS = ("DELIVERY", "CARRYFORWARD", "MARGIN", "INTRADAY", "BO")
DURATIONS = ("DAY", "IOC")
EXCHANGE_TYPES = {"NSE": 1, "NFO": 2, "BSE": 3, "BFO": 4, "MCX": 5, "NCDEX": 7, "CDS": 13}
RATE_LIMIT_TEXT = "Access denied because of exceeding access rate"
MARKET_TYPES = ("MARKET", "STOPLOSS_MARKET")
MARKET_REFUSED = ("Market orders are prohibited for algorithmic trading under the SEBI retail algo framework. "
                  "Please use a Limit order.")


def angel_ok(data: Any) -> JSONResponse:
    return JSONResponse({"status": True, "message": "SUCCESS", "errorcode": "", "data": data})


def angel_error(errorcode: str, message: str, status: int = 200) -> JSONResponse:
    return JSONResponse({"status": False, "message": message, "errorcode": errorcode, "data": None}, status)


def gateway_error(code: str, message: str, status: int = 401) -> JSONResponse:
    return JSONResponse({"success": False, "message": message, "errorCode": code, "data": ""}, status)


DIALECT = Dialect(
    broker="angel",
    unavailable=lambda: angel_error("AB1004", "Something Went Wrong, Please Try After Sometime", 503),
    rate_limited=lambda: PlainTextResponse(RATE_LIMIT_TEXT, 403),
    # Angel publishes no answer for it: the gateway's envelope (a refused order answered without
    # "status" is the one report) with our wording (docs/brokers.md, 2026 rules).
    ip_refused=lambda ip: gateway_error("", f"Request from unregistered IP {ip}", 403),
)


def _fake_jwt(user: User, kind: str) -> str:
    """JWT-shaped like Angel's; only the paper broker reads it."""
    return jwt_shaped({"alg": "HS512"}, {"username": user.user_id, "token": kind, "nonce": secrets.token_hex(8)})


async def _json_body(call: Call) -> dict[str, Any]:
    return await json_object(call.request, lambda: angel_error("AB1004", "Invalid request body"))


# ----- authentication -----
async def auth_jwt(call: Call) -> User | None:
    token = bearer_token(call.request.headers.get("authorization", ""))
    if not token:
        raise Reply(gateway_error("AG8003", "Invalid Token"))
    user = call.state.user_for_angel_jwt(token)
    if user is None:
        if call.state.token_expired("angel", token):
            raise Reply(gateway_error("AG8002", "Token Expired"))
        raise Reply(gateway_error("AG8001", "Invalid Token"))
    return user


async def _login_user(call: Call) -> User | None:
    body = await _json_body(call)
    call.user_id = str(body.get("clientcode") or "") or None
    return None


async def _refresh_owner(call: Call) -> User | None:
    """The user whose refresh token the body's ``refreshToken`` is."""
    refresh = str((await _json_body(call)).get("refreshToken") or "")
    return call.state.user_where("angel", lambda u: bool(refresh) and u.refresh_token == refresh)


async def _refresh_user(call: Call) -> User | None:
    user = await _refresh_owner(call)
    if user is not None:
        call.user_id = user.user_id
    return None


def _issue_tokens(user: User) -> dict[str, Any]:
    user.jwt_token = _fake_jwt(user, "access")
    user.feed_token = _fake_jwt(user, "feed")
    if not user.refresh_token:
        user.refresh_token = _fake_jwt(user, "refresh")
    user.token_expires_at = next_ist_epoch(0)  # Angel sessions end at midnight IST
    return {
        "jwtToken": user.jwt_token,
        "refreshToken": user.refresh_token,
        "feedToken": user.feed_token,
        "state": None,
    }


async def _login(call: Call) -> Response:
    body = await _json_body(call)
    user = call.state.find_user("angel", str(body.get("clientcode") or ""))
    if user is None or not secrets.compare_digest(user.password, str(body.get("password") or "")):
        return angel_error("AB1007", "Invalid clientcode or password")
    api_key = call.request.headers.get("x-privatekey", "")
    if api_key != user.api_key:
        return angel_error("AG8004", "Invalid API Key")
    # valid_window=0: the code must be from the current 30 s step.
    if not pyotp.TOTP(user.totp_secret).verify(str(body.get("totp") or ""), valid_window=0):
        return angel_error("AB1050", "Invalid totp")
    user.refresh_token = None  # a new login starts a new session chain
    return angel_ok(_issue_tokens(user))


async def _generate_tokens(call: Call) -> Response:
    user = await _refresh_owner(call)
    if user is None:
        return angel_error("AB8050", "Invalid Refresh Token")
    return angel_ok(_issue_tokens(user))


async def _logout(call: Call) -> Response:
    call.state.expire_tokens("angel", call.authed.user_id)
    return angel_ok("")


async def _profile(call: Call) -> Response:
    user = call.authed
    return angel_ok(
        {
            "clientcode": user.user_id,
            "name": f"PAPER {user.user_id}",
            "email": "",
            "mobileno": "",
            "exchanges": ["NSE", "BSE", "NFO", "BFO", "CDS", "MCX"],
            "products": ["MARGIN", "MIS", "NRML", "CNC", "CO", "BO"],
            "lastlogintime": "",
            "broker": "",
        }
    )


# ----- orders -----
def _market_refused(call: Call, ordertype: str) -> Response | None:
    """Angel's refusal of a MARKET or STOPLOSS_MARKET order from the API, counted; None for the rest."""
    if ordertype not in MARKET_TYPES:
        return None
    call.state.rule_rejections[MARKET_PROTECTION] += 1
    return angel_error("AB4008", MARKET_REFUSED)


# Angel's fixed answer to each kind of OrderError that has one.
_ORDER_ERRORS = {"not_found": ("AB1013", "Order not found"), "symbol": ("AB1009", "Symbol Not Found"),
                 "product": ("AB1012", "Invalid Product Type")}  # fmt: skip


def _map_order_error(exc: OrderError) -> Response:
    code = "AB1004" if exc.kind == "input" else "AB4008"
    return angel_error(*_ORDER_ERRORS.get(exc.kind, (code, exc.message)))


def _quantity(raw: Any) -> int:
    return whole_number(raw, "Invalid quantity")


def _instrument(call: Call, body: dict[str, Any]) -> PaperInstrument:
    exchange = str(body.get("exchange") or "")
    token = str(body.get("symboltoken") or "")
    symbol = str(body.get("tradingsymbol") or "")
    inst = None
    if token and exchange in EXCHANGE_TYPES:
        inst = call.state.by_angel_token(EXCHANGE_TYPES[exchange], token)
    if inst is None and symbol:
        inst = call.state.by_symbol(exchange, symbol)
    if inst is None or inst.exchange != exchange:
        raise OrderError("symbol", "Symbol Not Found")
    return inst


async def _place(call: Call) -> Response:
    body = await _json_body(call)
    call.tag = str(body.get("ordertag")) if body.get("ordertag") else None
    try:
        variety = str(body.get("variety") or "")
        if variety not in VARIETIES:
            return angel_error("AB1008", "Invalid Order Variety")
        product = str(body.get("producttype") or "")
        if product not in PRODUCTS:
            return angel_error("AB1012", "Invalid Product Type")
        if call.tag is not None and len(call.tag) > 20:
            raise OrderError("input", "Invalid ordertag: at most 20 characters")
        duration = one_of(body, "duration", DURATIONS, "Invalid duration", "DAY")
        inst = _instrument(call, body)
        ordertype = one_of(body, "ordertype", ORDERTYPE_TO_KITE, "Invalid Order Type")
        if (refused := _market_refused(call, ordertype)) is not None:
            return refused
        req = OrderRequest(
            instrument=inst,
            variety=variety,
            transaction_type=str(body.get("transactiontype") or ""),
            order_type=ORDERTYPE_TO_KITE[ordertype],
            product=product,
            quantity=_quantity(body.get("quantity")),
            price=rupees_to_units(body.get("price"), inst.price_divisor, "price"),
            trigger_price=rupees_to_units(body.get("triggerprice"), inst.price_divisor, "triggerprice"),
            validity=duration,
            disclosed_quantity=0,
            tag=call.tag,
        )
        order = call.paper.engine.place(call.authed, req)
    except OrderError as exc:
        return _map_order_error(exc)
    call.accepted = True
    return angel_ok(
        {"script": inst.angel_symbol, "orderid": order.order_id, "uniqueorderid": order.unique_order_id}
    )


async def _modify(call: Call) -> Response:
    body = await _json_body(call)
    try:
        order = call.own_order(str(body.get("orderid") or ""))
        call.tag = order.tag
        div = order.instrument.price_divisor
        ordertype = str(body.get("ordertype") or ANGEL_ORDERTYPE[order.order_type])
        if ordertype not in ORDERTYPE_TO_KITE:
            raise OrderError("input", "Invalid Order Type")
        if (refused := _market_refused(call, ordertype)) is not None:
            return refused
        price = body.get("price")
        trigger = body.get("triggerprice")
        call.paper.engine.modify(
            order,
            quantity=_quantity(body["quantity"]) if body.get("quantity") not in (None, "") else None,
            price=rupees_to_units(price, div, "price") if price not in (None, "") else None,
            order_type=ORDERTYPE_TO_KITE[ordertype],
            trigger_price=rupees_to_units(trigger, div, "triggerprice") if trigger not in (None, "") else None,
            validity=str(body.get("duration")) if body.get("duration") else None,
        )
    except OrderError as exc:
        return _map_order_error(exc)
    call.accepted = True
    return angel_ok({"orderid": order.order_id, "uniqueorderid": order.unique_order_id})


async def _cancel(call: Call) -> Response:
    body = await _json_body(call)
    try:
        order = call.own_order(str(body.get("orderid") or ""))
        call.tag = order.tag
        call.paper.engine.cancel(order)
    except OrderError as exc:
        return _map_order_error(exc)
    call.accepted = True
    return angel_ok({"orderid": order.order_id, "uniqueorderid": order.unique_order_id})


async def _order_book(call: Call) -> Response:
    rows = [angel_order_payload(o) for o in call.own_orders()]
    return angel_ok(rows or None)


# ----- account state, from the paper books (paper/portfolio.py) -----
async def _trade_book(call: Call) -> Response:
    rows = [angel_trade_payload(o, t) for o, t in call.books(portfolio.trades)]
    return angel_ok(rows or None)


async def _positions(call: Call) -> Response:
    close = call.state.prices.close_price
    rows = [angel_position_payload(p, close(p.instrument)) for p in call.books(portfolio.positions)]
    return angel_ok(rows or None)


def _holding_rows(call: Call) -> list[dict[str, Any]]:
    close = call.state.prices.close_price
    return [angel_holding_payload(h, close(h.instrument)) for h in call.books(portfolio.holdings)]


async def _holdings(call: Call) -> Response:
    return angel_ok(_holding_rows(call) or None)


async def _all_holdings(call: Call) -> Response:
    """getAllHolding: the rows of getHolding and their ``totalholding`` summary."""
    rows = _holding_rows(call)
    value = sum(r["quantity"] * r["ltp"] for r in rows)
    invested = sum(r["quantity"] * r["averageprice"] for r in rows)
    total = {"totalholdingvalue": round(value, 2), "totalinvvalue": round(invested, 2),
             "totalprofitandloss": round(value - invested, 2),
             "totalpnlpercentage": round((value - invested) * 100 / invested, 2) if invested else 0}
    return angel_ok({"holdings": rows, "totalholding": total})


async def _rms(call: Call) -> Response:
    return angel_ok(angel_rms_payload(call.books(portfolio.funds)))


# At most 50 positions a request (SmartAPI forum, the margin calculator's announcement).
MAX_MARGIN_POSITIONS = 50


def _margin_leg(call: Call, leg: Any) -> tuple[str, str, float]:
    """One ``positions`` entry -> (exchange, productType, rupees) from paper/portfolio.py's
    margin_for. A market order (``orderType`` MARKET or STOPLOSS_MARKET, or a price of 0: the
    SDKs' examples send no orderType) is priced at the last price."""
    if not isinstance(leg, dict):
        raise OrderError("input", "Invalid positions")
    product = str(leg.get("productType") or "")
    if product not in PRODUCTS:
        raise OrderError("product", "Invalid Product Type")
    one_of(leg, "tradeType", ("BUY", "SELL"), "Invalid tradeType")
    ordertype = str(leg.get("orderType") or "")
    if ordertype and ordertype not in ORDERTYPE_TO_KITE:
        raise OrderError("input", "Invalid Order Type")
    inst = _instrument(call, {"exchange": leg.get("exchange"), "symboltoken": leg.get("token")})
    quantity = _quantity(leg.get("qty"))
    if quantity <= 0:
        raise OrderError("input", "Invalid quantity")
    price = rupees_to_units(leg.get("price"), inst.price_divisor, "price")
    if ordertype in ("MARKET", "STOPLOSS_MARKET"):
        price = 0
    units = portfolio.margin_for(call.state, inst, product, quantity, price)
    return inst.exchange, product, units / inst.price_divisor


async def _margin(call: Call) -> Response:
    body = await _json_body(call)
    legs = body.get("positions")
    try:
        if not isinstance(legs, list) or not 0 < len(legs) <= MAX_MARGIN_POSITIONS:
            raise OrderError("input", f"positions: 1 to {MAX_MARGIN_POSITIONS} entries")
        priced = [_margin_leg(call, leg) for leg in legs]
    except OrderError as exc:
        return _map_order_error(exc)
    return angel_ok(angel_margin_payload(priced))


async def _details(call: Call) -> Response:
    unique_id = call.request.path_params["unique_id"]
    order_id = next((o.order_id for o in call.state.orders.values() if o.unique_order_id == unique_id), "")
    try:
        order = call.own_order(order_id)
    except OrderError as exc:
        return _map_order_error(exc)
    call.tag = order.tag
    return angel_ok(angel_order_payload(order))


async def _ltp(call: Call) -> Response:
    body = await _json_body(call)
    try:
        inst = _instrument(call, body)
    except OrderError:
        return angel_error("AB1009", "Symbol Not Found")
    q = call.state.prices.quote(inst)
    div = inst.price_divisor
    return angel_ok(
        {
            "exchange": inst.exchange,
            "tradingsymbol": inst.angel_symbol,
            "symboltoken": inst.angel_token,
            "open": q["open"] / div,
            "high": q["high"] / div,
            "low": q["low"] / div,
            "close": q["close"] / div,
            "ltp": q["last_price"] / div,
        }
    )


async def _scrip_master(call: Call) -> Response:
    body = call.paper.cached("angel_scrip_master", lambda: json.dumps(scrip_master(call.state.universe)).encode())
    return Response(body, 200, media_type="application/json")


def _endpoint(endpoint_class: str, handler: Handler, authenticate: Authenticator = auth_jwt) -> Any:
    return make_endpoint(DIALECT, endpoint_class, handler, authenticate)


def routes(state: object = None) -> list[Route]:
    # Every dialect module has routes(state); REST reads its state from the request instead.
    order = f"{BASE}/order/v1"
    return [
        Route("/rest/auth/angelbroking/user/v1/loginByPassword", _endpoint("login", _login, _login_user),
              methods=["POST"]),
        Route("/rest/auth/angelbroking/jwt/v1/generateTokens", _endpoint("login", _generate_tokens, _refresh_user),
              methods=["POST"]),
        Route(f"{BASE}/user/v1/logout", _endpoint("other", _logout), methods=["POST"]),
        Route(f"{BASE}/user/v1/getProfile", _endpoint("other", _profile), methods=["GET"]),
        Route(f"{order}/placeOrder", _endpoint("orders", _place), methods=["POST"]),
        Route(f"{order}/modifyOrder", _endpoint("orders", _modify), methods=["POST"]),
        Route(f"{order}/cancelOrder", _endpoint("orders", _cancel), methods=["POST"]),
        Route(f"{order}/getOrderBook", _endpoint("orderbook", _order_book), methods=["GET"]),
        # The account-state reads: one "portfolio" class (common/brokers/angel/spec.py).
        Route(f"{order}/getTradeBook", _endpoint("portfolio", _trade_book), methods=["GET"]),
        Route(f"{order}/getPosition", _endpoint("portfolio", _positions), methods=["GET"]),
        Route(f"{BASE}/portfolio/v1/getHolding", _endpoint("portfolio", _holdings), methods=["GET"]),
        Route(f"{BASE}/portfolio/v1/getAllHolding", _endpoint("portfolio", _all_holdings), methods=["GET"]),
        Route(f"{BASE}/user/v1/getRMS", _endpoint("portfolio", _rms), methods=["GET"]),
        # Its own cap (common/brokers/angel/spec.py "margin").
        Route(f"{BASE}/margin/v1/batch", _endpoint("margin", _margin), methods=["POST"]),
        Route(f"{order}/details/{{unique_id}}", _endpoint("orderbook", _details), methods=["GET"]),
        Route(f"{order}/getLtpData", _endpoint("quote", _ltp), methods=["POST"]),
        Route("/OpenAPI_File/files/OpenAPIScripMaster.json", _endpoint("other", _scrip_master, anonymous),
              methods=["GET"]),
    ]
