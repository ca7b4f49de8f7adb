"""Fyers API v3 at its own paths: the ``vagator`` login, ``/api/v3/token``, ``validate-authcode``,
orders (``/api/v3/orders/sync``: POST place, PATCH modify, DELETE cancel), the order book, the
account state (``/api/v3/positions``, ``/holdings``, ``/funds``, ``/tradebook``, from
paper/portfolio.py's books) and the margin calculator (``/api/v3/multiorder/margin``, from
``portfolio.margin_for``), class "other" like every Fyers read outside the order book (Fyers
counts them all in one budget), ``/data/symbol-token`` (the data socket's symbol → HSM token lookup), the symbol master CSV and
the index HSM mapping.

Answers follow Fyers' conventions: ``{"s": "ok" | "error", "code", "message", ...}``; a
refusal is HTTP 400, a bad token HTTP 401 (code -15, -8 once expired), the rate limit HTTP 429
``{"s": "error", "code": -429, "message": "request limit reached"}``. API calls authenticate
with ``Authorization: <app_id>:<access_token>``; the access token is a JWT whose ``hsm_key``
claim authenticates the data socket and whose ``exp`` the SDK checks before connecting.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import pyotp
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from paper import portfolio
from paper.fyers import master
from paper.fyers.payloads import (
    ORDER_TYPES,
    PRODUCTS_IN,
    fyers_funds,
    fyers_holdings,
    fyers_margin,
    fyers_order_payload,
    fyers_positions,
    fyers_trade_row,
)
from paper.gateway import Authenticator, Call, Dialect, Handler, Reply, anonymous, json_object, make_endpoint
from paper.matching import OrderError, OrderRequest, rupees_to_units
from paper.orders import PaperOrder
from paper.universe import PaperInstrument, fyers_symbol_master_csv
from paper.users import User, jwt_shaped

__all__ = ["fyers_error", "issue_tokens", "routes"]

VAGATOR = "/vagator/v2"
API = "/api/v3"
PRODUCTS = tuple(PRODUCTS_IN)
VALIDITIES = ("DAY", "IOC")
# Fyers documents orderTag as alphanumeric text; 30 characters is the limit the paper broker enforces.
TAG_RE = re.compile(r"^[A-Za-z0-9]{1,30}$")
LOGIN_STEP_TTL_S = 300
# Fyers' code and message for each order field it refuses (its error sheet).
INVALID = {
    "symbol": (-300, "Please provide a valid symbol"),
    "side": (-313, "Please provide a valid order side of either buy or sell"),
    "type": (-101, "Please provide a valid order type"),
    "productType": (-314, "Please provide a valid product type for the order"),
    "validity": (-326, "Please provide a valid order validity"),
    "qty": (-310, "Please provide a valid order quantity"),
    "limitPrice": (-308, "Please provide a valid limitPrice"),
    "stopPrice": (-309, "Please provide a valid stop price"),
    "disclosedQty": (-327, "Invalid disclosedQty"),
}


def fyers_error(code: int, message: str, status: int = 400, **extra: Any) -> JSONResponse:
    return JSONResponse({"s": "error", "code": code, "message": message, **extra}, status)


def fyers_ok(code: int = 200, message: str = "", status: int = 200, **extra: Any) -> JSONResponse:
    return JSONResponse({"s": "ok", "code": code, "message": message, **extra}, status)


DIALECT = Dialect(
    broker="fyers",
    unavailable=lambda: fyers_error(-96, "An unexpected error occurred. Please contact support.", 503),
    rate_limited=lambda: fyers_error(-429, "request limit reached", 429),
    # Fyers publishes no answer for it: its error envelope, our code and wording (docs/brokers.md).
    ip_refused=lambda ip: fyers_error(-403, f"IP {ip} is not whitelisted for API orders", 403),
)


def _jwt(claims: dict[str, Any]) -> str:
    """JWT-shaped like Fyers' tokens; only the paper broker and the SDK read the claims."""
    return jwt_shaped({"alg": "HS256", "typ": "JWT"}, claims)


def session_expiry_epoch(now: float) -> float:
    """Fyers access tokens end at the next 00:00 UTC (05:30 IST)."""
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    return (moment.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)).timestamp()


def issue_tokens(user: User) -> dict[str, str]:
    """A new API session: access token (with a fresh ``hsm_key``), refresh token."""
    now = int(time.time())
    expires = session_expiry_epoch(now)
    hsm_key = secrets.token_hex(28)
    user.access_token = _jwt({
        "iss": "api.fyers.in", "iat": now, "exp": int(expires), "nbf": now, "aud": ["d:1", "d:2", "x:0", "x:1"],
        "sub": "access_token", "at_hash": secrets.token_urlsafe(16), "display_name": "", "oms": "K1",
        "hsm_key": hsm_key, "fy_id": user.user_id, "appType": 100, "poa_flag": "N",
    })  # fmt: skip
    user.feed_token = hsm_key
    user.refresh_token = _jwt({"iss": "api.fyers.in", "iat": now, "sub": "refresh_token", "fy_id": user.user_id})
    user.token_expires_at = expires
    return {"access_token": user.access_token, "refresh_token": user.refresh_token}


# ----- login state: request keys of the vagator steps, login sessions, auth codes -----
def _remember(call: Call, kind: str, user: User, step: str) -> str:
    key = secrets.token_urlsafe(24)
    call.state.fyers_login[kind][key] = (user, step, time.time() + LOGIN_STEP_TTL_S)
    return key


def _recall(call: Call, kind: str, key: str, step: str) -> User | None:
    entry = call.state.fyers_login[kind].pop(key, None) if key else None
    if entry is None:
        return None
    user, at, expires = entry
    # A user removed or replaced meanwhile (reset, re-registration) invalidates the key.
    current = call.state.find_user("fyers", user.user_id)
    return user if at == step and expires > time.time() and current is user else None


def _unb64(text: Any) -> str:
    try:
        return base64.b64decode(str(text or ""), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""


async def _json_body(call: Call) -> dict[str, Any]:
    return await json_object(call.request, lambda: fyers_error(-50, "Invalid request body"))


async def _named_by_fy_id(call: Call) -> User | None:
    """The first login step counts against the named user's login caps."""
    body = await _json_body(call)
    call.user_id = _unb64(body.get("fy_id")) or None
    return None


async def _send_login_otp(call: Call) -> Response:
    body = await _json_body(call)
    user = call.state.find_user("fyers", _unb64(body.get("fy_id")))
    if user is None:
        return fyers_error(-1006, "Please provide a valid fyers id")
    return fyers_ok(message="", request_key=_remember(call, "steps", user, "otp"))


async def _step(call: Call, step: str) -> tuple[dict[str, Any], User]:
    """(body, user) of a login step after the first: its ``request_key`` must be the one the
    previous step handed out for ``step``."""
    body = await _json_body(call)
    user = _recall(call, "steps", str(body.get("request_key") or ""), step)
    if user is None:
        raise Reply(fyers_error(-1019, "Invalid request key. Please login again"))
    call.user_id = user.user_id
    return body, user


async def _verify_otp(call: Call) -> Response:
    body, user = await _step(call, "otp")
    # valid_window=0: a code is good in its own 30 s step only.
    if not pyotp.TOTP(user.totp_secret).verify(str(body.get("otp") or ""), valid_window=0):
        return fyers_error(-1007, "Invalid OTP")
    return fyers_ok(request_key=_remember(call, "steps", user, "pin"))


async def _verify_pin(call: Call) -> Response:
    body, user = await _step(call, "pin")
    if body.get("identity_type") != "pin" or not secrets.compare_digest(
        user.password.encode(), _unb64(body.get("identifier")).encode()
    ):
        return fyers_error(-1008, "Invalid PIN")
    session = _remember(call, "sessions", user, "token")
    return fyers_ok(data={"access_token": session, "refresh_token": "", "user_name": user.user_id})


async def _token(call: Call) -> Response:
    auth = call.request.headers.get("authorization", "")
    session = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    user = _recall(call, "sessions", session, "token")
    if user is None:
        return fyers_error(-16, "Could not authenticate the user", 401)
    call.user_id = user.user_id
    body = await _json_body(call)
    app_id, app_type = str(body.get("app_id") or ""), str(body.get("appType") or "100")
    if str(body.get("fyers_id") or "") != user.user_id or user.api_key not in (app_id, f"{app_id}-{app_type}"):
        return fyers_error(-352, "Please provide a valid appId")
    code = _remember(call, "codes", user, "validate")
    redirect = str(body.get("redirect_uri") or "https://127.0.0.1/")
    sep = "&" if "?" in redirect else "?"
    url = f"{redirect}{sep}{urlencode({'s': 'ok', 'code': 200, 'auth_code': code, 'state': body.get('state', '')})}"
    return fyers_ok(code=308, status=308, Url=url)


async def _validate_authcode(call: Call) -> Response:
    body = await _json_body(call)
    user = _recall(call, "codes", str(body.get("code") or ""), "validate")
    if user is None:
        return fyers_error(-374, "Please provide a valid authorization code")
    call.user_id = user.user_id
    expected = hashlib.sha256(f"{user.api_key}:{user.api_secret}".encode()).hexdigest()
    if not secrets.compare_digest(expected, str(body.get("appIdHash") or "")):
        return fyers_error(-371, "Please provide sha256 hash of appId and app secret")
    return fyers_ok(**issue_tokens(user))


# ----- authentication of API calls -----
async def auth_token(call: Call) -> User | None:
    """``Authorization: <app_id>:<access_token>``."""
    header = call.request.headers.get("authorization", "").strip()
    app_id, _, token = header.partition(":")
    user = call.state.user_for_fyers_token(token, app_id) if token else None
    if user is None:
        if token and call.state.token_expired("fyers", token):
            raise Reply(fyers_error(-8, "Your token has expired. Please generate a token", 401))
        raise Reply(fyers_error(-15, "Could not authenticate the user", 401))
    return user


async def auth_bare_token(call: Call) -> User | None:
    """The data socket's symbol lookup sends the access token alone (the SDK drops the app id)."""
    header = call.request.headers.get("authorization", "").strip()
    token = header.partition(":")[2] if ":" in header else header
    user = call.state.user_for_fyers_token(token)
    if user is None:
        raise Reply(fyers_error(-15, "Could not authenticate the user", 401))
    return user


# ----- orders -----
def _invalid(field: str) -> Reply:
    """Fyers' refusal of the order field ``field`` (INVALID), to raise."""
    return Reply(fyers_error(*INVALID[field]))


def _int(raw: Any, field: str) -> int:
    if isinstance(raw, bool):
        raise _invalid(field)
    try:
        return int(str(raw))
    except (TypeError, ValueError):
        raise _invalid(field) from None


def _units(raw: Any, divisor: int, field: str) -> int:
    try:
        return rupees_to_units(raw, divisor, "price")
    except OrderError:
        raise _invalid(field) from None


def _refusal(exc: OrderError, order: PaperOrder | None = None) -> Response:
    if exc.kind == "not_found":
        return fyers_error(-51, "Invalid order id")
    if exc.kind == "order" and order is not None:
        by_status = {"CANCELLED": (-161, "This order has already been cancelled"),
                     "COMPLETE": (-162, "This order has already traded"),
                     "REJECTED": (-164, "This order has already been rejected")}  # fmt: skip
        code, message = by_status.get(order.status, (-163, exc.message))
        return fyers_error(code, message)
    return fyers_error(-50 if exc.kind == "input" else -99, exc.message)


def _check_prices(inst: PaperInstrument, order_type: str, price: int, trigger: int) -> None:
    """The prices an order needs are there and on the tick grid: Fyers checks them before the
    order exists (error sheet: -392 for the tick size)."""
    if order_type in ("LIMIT", "SL") and price <= 0:
        raise _invalid("limitPrice")
    if order_type in ("SL", "SL-M") and trigger <= 0:
        raise _invalid("stopPrice")
    tick = inst.tick_size_paise
    if tick and (price % tick or trigger % tick):
        raise Reply(fyers_error(-392, "Price should be in multiples of tick size."))


def _order_type(raw: Any) -> str:
    order_type = ORDER_TYPES.get(_int(raw, "type"))
    if order_type is None:
        raise _invalid("type")
    return order_type


def _order_head(call: Call, fields: dict[str, Any]) -> tuple[PaperInstrument, int, str, str]:
    """(instrument, side, order type, the paper's product) of an order or a margin leg, checked in
    Fyers' order."""
    inst = call.state.by_fyers_symbol(str(fields.get("symbol") or ""))
    if inst is None:
        raise _invalid("symbol")
    side = _int(fields.get("side"), "side")
    if side not in (1, -1):
        raise _invalid("side")
    order_type = _order_type(fields.get("type"))
    product = str(fields.get("productType") or "")
    if product not in PRODUCTS:
        raise _invalid("productType")
    return inst, side, order_type, PRODUCTS_IN[product]


async def _place(call: Call) -> Response:
    body = await _json_body(call)
    tag = body.get("orderTag")
    call.tag = str(tag) if tag not in (None, "") else None
    if call.tag is not None and not TAG_RE.match(call.tag):
        return fyers_error(-50, "Invalid orderTag: alphanumeric, at most 30 characters")
    inst, side, order_type, product = _order_head(call, body)
    validity = str(body.get("validity") or "DAY")
    if validity not in VALIDITIES:
        raise _invalid("validity")
    qty = _int(body.get("qty"), "qty")
    div = inst.price_divisor
    price = _units(body.get("limitPrice"), div, "limitPrice")
    trigger = _units(body.get("stopPrice"), div, "stopPrice")
    if qty <= 0:
        raise _invalid("qty")
    _check_prices(inst, order_type, price, trigger)
    req = OrderRequest(
        instrument=inst, variety="regular", transaction_type="BUY" if side == 1 else "SELL",
        order_type=order_type, product=product, quantity=qty, price=price, trigger_price=trigger,
        validity=validity, disclosed_quantity=_int(body.get("disclosedQty") or 0, "disclosedQty"),
        tag=call.tag,
    )  # fmt: skip
    try:
        order = call.paper.engine.place(call.authed, req)
    except OrderError as exc:
        return _refusal(exc)
    call.accepted = True
    return fyers_ok(1101, f"Successfully placed order. Your Order Ref. No.{order.order_id}", id=order.order_id)


def _own_order(call: Call, order_id: str) -> PaperOrder:
    try:
        return call.own_order(order_id)
    except OrderError:
        raise Reply(fyers_error(-51, "Invalid order id")) from None


async def _modify(call: Call) -> Response:
    body = await _json_body(call)
    order = _own_order(call, str(body.get("id") or ""))
    call.tag = order.tag
    div = order.instrument.price_divisor
    order_type = _order_type(body["type"]) if body.get("type") not in (None, "") else None
    limit, stop, qty = body.get("limitPrice"), body.get("stopPrice"), body.get("qty")
    try:
        call.paper.engine.modify(
            order,
            quantity=_int(qty, "qty") if qty not in (None, "") else None,
            price=_units(limit, div, "limitPrice") if limit not in (None, "") else None,
            order_type=order_type,
            trigger_price=_units(stop, div, "stopPrice") if stop not in (None, "") else None,
        )
    except OrderError as exc:
        return _refusal(exc, order)
    call.accepted = True
    return fyers_ok(1102, "Successfully modified order", id=order.order_id)


async def _cancel(call: Call) -> Response:
    body = await _json_body(call)
    order = _own_order(call, str(body.get("id") or ""))
    call.tag = order.tag
    try:
        call.paper.engine.cancel(order)
    except OrderError as exc:
        return _refusal(exc, order)
    call.accepted = True
    return fyers_ok(1103, "Successfully cancelled order", id=order.order_id)


async def _order_book(call: Call) -> Response:
    only = {i for i in str(call.request.query_params.get("id") or "").split(",") if i}
    rows = [fyers_order_payload(o) for o in call.own_orders() if not only or o.order_id in only]
    return fyers_ok(orderBook=rows)


async def _positions(call: Call) -> Response:
    return fyers_ok(**fyers_positions(call.books(portfolio.positions)))


async def _holdings(call: Call) -> Response:
    return fyers_ok(**fyers_holdings(call.books(portfolio.holdings)))


async def _funds(call: Call) -> Response:
    return fyers_ok(**fyers_funds(call.books(portfolio.funds)))


async def _tradebook(call: Call) -> Response:
    """The day's fills; ``?order_tag=1:<tag>`` keeps one tag's (the docs' "Trades Filter By
    Order tag")."""
    rows = [fyers_trade_row(o, t) for o, t in call.books(portfolio.trades)]
    tag = call.request.query_params.get("order_tag")
    return fyers_ok(tradeBook=[r for r in rows if tag is None or r["orderTag"] == tag])


def _margin_leg(call: Call, leg: Any) -> int:
    """What one leg of a margin request needs (paise), checked as a placed order's fields are; a
    limit price prices LIMIT and SL legs, the last price the others."""
    if not isinstance(leg, dict):
        raise Reply(fyers_error(-50, "Invalid input"))
    inst, _side, order_type, product = _order_head(call, leg)
    qty = _int(leg.get("qty"), "qty")
    if qty <= 0:
        raise _invalid("qty")
    price = _units(leg.get("limitPrice") or 0, inst.price_divisor, "limitPrice")
    limit = order_type in ("LIMIT", "SL")
    if limit and price <= 0:
        raise _invalid("limitPrice")
    return portfolio.margin_for(call.state, inst, product, qty, price if limit else 0)


async def _margin(call: Call) -> Response:
    """A basket's margin: the plain sum of its legs (the paper universe has nothing to hedge)."""
    legs = (await _json_body(call)).get("data")
    if not isinstance(legs, list) or not legs:
        return fyers_error(-50, "Invalid input")
    needed = sum(_margin_leg(call, leg) for leg in legs)
    return fyers_ok(**fyers_margin(needed, call.books(portfolio.funds)))


async def _profile(call: Call) -> Response:
    user_id = call.authed.user_id
    return fyers_ok(data={"fy_id": user_id, "name": f"PAPER {user_id}", "display_name": ""})


# ----- market data helpers the SDK's data socket calls -----
async def _symbol_token(call: Call) -> Response:
    body = await _json_body(call)
    symbols = body.get("symbols")
    if not isinstance(symbols, list):
        return fyers_error(-50, "Please provide symbols")
    found = [(str(s), call.state.by_fyers_symbol(str(s))) for s in symbols]
    valid = {s: inst.fyers_token for s, inst in found if inst is not None}
    return fyers_ok(validSymbol=valid, invalidSymbol=[s for s, inst in found if inst is None])


async def _symbol_master(call: Call) -> Response:
    """NSE_CM.csv, BSE_CM.csv (the indices), and NSE_FO.csv / BSE_FO.csv of the trading date."""
    name = call.request.path_params["name"]
    if name not in ("NSE_CM", "BSE_CM") and name not in master.FILES:
        return PlainTextResponse("Not Found", 404)
    state = call.state

    def build() -> bytes:
        if name.endswith("_CM"):
            return fyers_symbol_master_csv(state.universe, name[:3]).encode()
        return master.fo_csv(state.universe, name, state.trading_date).encode()

    return Response(call.paper.cached(f"fyers_{name.lower()}", build), 200, media_type="text/csv")


async def _index_hsm_mapping(call: Call) -> Response:
    mapping = {i.fyers_symbol: i.angel_symbol for i in call.state.universe if i.is_index}
    return JSONResponse(mapping)


def _endpoint(endpoint_class: str, handler: Handler, authenticate: Authenticator = auth_token) -> Any:
    return make_endpoint(DIALECT, endpoint_class, handler, authenticate)


def routes(state: object = None) -> list[Route]:
    orders = f"{API}/orders/sync"
    return [
        Route(f"{VAGATOR}/send_login_otp_v2", _endpoint("login", _send_login_otp, _named_by_fy_id), methods=["POST"]),
        Route(f"{VAGATOR}/verify_otp", _endpoint("login", _verify_otp, anonymous), methods=["POST"]),
        Route(f"{VAGATOR}/verify_pin_v2", _endpoint("login", _verify_pin, anonymous), methods=["POST"]),
        Route(f"{API}/token", _endpoint("login", _token, anonymous), methods=["POST"]),
        Route(f"{API}/validate-authcode", _endpoint("login", _validate_authcode, anonymous), methods=["POST"]),
        Route(f"{API}/profile", _endpoint("other", _profile), methods=["GET"]),
        Route(orders, _endpoint("orders", _place), methods=["POST"]),
        Route(orders, _endpoint("orders", _modify), methods=["PATCH"]),
        Route(orders, _endpoint("orders", _cancel), methods=["DELETE"]),
        Route(f"{API}/orders", _endpoint("orderbook", _order_book), methods=["GET"]),
        Route(f"{API}/positions", _endpoint("other", _positions), methods=["GET"]),
        Route(f"{API}/holdings", _endpoint("other", _holdings), methods=["GET"]),
        Route(f"{API}/funds", _endpoint("other", _funds), methods=["GET"]),
        Route(f"{API}/tradebook", _endpoint("other", _tradebook), methods=["GET"]),
        Route(f"{API}/multiorder/margin", _endpoint("other", _margin), methods=["POST"]),
        Route("/data/symbol-token", _endpoint("quote", _symbol_token, auth_bare_token), methods=["POST"]),
        Route("/sym_details/index_hsm_mapping.json", _endpoint("other", _index_hsm_mapping, anonymous),
              methods=["GET"]),
        Route("/sym_details/{name}.csv", _endpoint("other", _symbol_master, anonymous), methods=["GET"]),
    ]
