"""Kite Connect v3 at its own paths: the headless web login (/api/login, /api/twofa,
/connect/login), /session/token, orders, instruments, quotes, the profile, and the account state
(trades, /portfolio/positions, /portfolio/holdings, /user/margins) from paper/portfolio.py's books, and
the margin calculators (/margins/orders, /margins/basket) from its margin_for."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pyotp
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from paper.gateway import Authenticator, Call, Dialect, Handler, Reply, anonymous, make_endpoint
from paper.kite import margins, payloads, protection
from paper.kite.master import instruments_csv
from paper.kite.payloads import checksum_hex, kite_order_payload, trade_payload
from paper.matching import OrderError, OrderRequest, one_of, rupees_to_units
from paper.orders import IST, PaperOrder, fmt_ts, next_ist_epoch, now_ist
from paper.state import PaperState
from paper.users import User

VARIETIES = ("regular", "amo", "co", "iceberg", "auction")
VALIDITIES = ("DAY", "IOC", "TTL")
TAG_RE = re.compile(r"^[A-Za-z0-9]{1,20}$")
REQUEST_TOKEN_TTL_S = 300
SESSION_COOKIE = "kf_session"
NOT_FOUND = "Couldn't find that `order_id`."


def kite_error(status: int, error_type: str, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message, "data": None, "error_type": error_type}, status)


def kite_ok(data: Any) -> JSONResponse:
    return JSONResponse({"status": "success", "data": data})


DIALECT = Dialect(
    broker="kite",
    unavailable=lambda: kite_error(503, "NetworkException", "Service unavailable. Please try again later."),
    # The exact 429 body of docs/brokers.md (no "data" key).
    rate_limited=lambda: JSONResponse(
        {"status": "error", "message": "Too many requests", "error_type": "NetworkException"}, 429
    ),
    # The wording seen from Kite (docs/brokers.md, 2026 rules); its status and error_type are not published.
    ip_refused=lambda ip: kite_error(403, "PermissionException", f"IP ({ip}) is not allowed"),
)


def token_expiry_epoch(now: dt.datetime | None = None) -> float:
    """Kite access tokens die at 06:00 IST the next day (before 06:00: at 06:00 today)."""
    return next_ist_epoch(6, now)


def _random_token(n: int = 32) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(n))


# ----- authentication -----
async def auth_token(call: Call) -> User | None:
    """`Authorization: token api_key:access_token`; anything else is a TokenException 403."""
    header = call.request.headers.get("authorization", "")
    scheme, _, creds = header.partition(" ")
    api_key, _, access_token = creds.strip().partition(":")
    user = None
    if scheme.lower() == "token" and api_key and access_token:
        user = call.state.user_for_kite_token(api_key, access_token)
    if user is None:
        raise Reply(kite_error(403, "TokenException", "Incorrect `api_key` or `access_token`."))
    return user


async def auth_optional(call: Call) -> User | None:
    try:
        return await auth_token(call)
    except Reply:
        return None


async def _named_user(call: Call) -> User | None:
    """Login endpoints are not authenticated, but count against the caps of the form's user_id."""
    form = await call.request.form()
    call.user_id = str(form.get("user_id") or "") or None
    return None


def _web_user(call: Call) -> User | None:
    """The user of the web-login session in the request's cookie."""
    return call.state.kite_web_sessions.get(call.request.cookies.get(SESSION_COOKIE, ""))


async def _session_user(call: Call) -> User | None:
    user = _web_user(call)
    call.user_id = user.user_id if user else None
    return None


async def _api_key_user(call: Call) -> User | None:
    form = await call.request.form()
    api_key = str(form.get("api_key") or "")
    user = call.state.user_where("kite", lambda u: u.api_key == api_key)
    if user is not None:
        call.user_id = user.user_id
    return None


# ----- web login -----
async def _api_login(call: Call) -> Response:
    form = await call.request.form()
    user = call.state.find_user("kite", str(form.get("user_id") or ""))
    if user is None or not secrets.compare_digest(user.password, str(form.get("password") or "")):
        return kite_error(400, "InputException", "Invalid `user_id` or `password`.")
    request_id = _random_token(40)
    call.state.kite_login_requests[request_id] = user
    return kite_ok(
        {
            "user_id": user.user_id,
            "request_id": request_id,
            "twofa_type": "totp",
            "twofa_types": ["totp", "app_code"],
            "twofa_status": "active",
            "profile": {"user_name": user.user_id, "user_shortname": user.user_id, "avatar_url": None},
        }
    )


async def _api_twofa(call: Call) -> Response:
    form = await call.request.form()
    request_id = str(form.get("request_id") or "")
    user = call.state.kite_login_requests.get(request_id)
    if user is None or user.user_id != str(form.get("user_id") or ""):
        return kite_error(403, "TokenException", "Invalid `request_id`. Please login again.")
    code = str(form.get("twofa_value") or "")
    # valid_window=0: a code is good in its own 30 s step only, as at Zerodha.
    if not pyotp.TOTP(user.totp_secret).verify(code, valid_window=0):
        return kite_error(400, "InputException", "Invalid TOTP. Please try again.")
    del call.state.kite_login_requests[request_id]
    session = _random_token(40)
    call.state.kite_web_sessions[session] = user
    response = kite_ok({"profile": {}})
    response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="lax")
    response.set_cookie("enctoken", _random_token(40), httponly=True, samesite="lax")
    response.set_cookie("public_token", _random_token(32), samesite="lax")
    response.set_cookie("user_id", user.user_id, samesite="lax")
    return response


async def _connect_login(call: Call) -> Response:
    params = call.request.query_params
    user = _web_user(call)
    if user is None:
        # The real page would show the login form; a headless client must log in first.
        return Response("<html><body>Kite login required</body></html>", 200, media_type="text/html")
    if params.get("api_key") != user.api_key:
        return kite_error(400, "InputException", "Invalid `api_key`.")
    query = urlencode({"api_key": user.api_key, "sess_id": _random_token(32)})
    return RedirectResponse(f"/connect/finish?{query}", 302)


async def _connect_finish(call: Call) -> Response:
    user = _web_user(call)
    if user is None:
        return kite_error(403, "TokenException", "Session expired. Please login again.")
    request_token = _random_token(32)
    user.request_tokens[request_token] = time.time()
    query = urlencode({"request_token": request_token, "action": "login", "type": "login", "status": "success"})
    # The app's redirect URL: this server's landing page, at the address the client used.
    base = str(call.request.base_url).rstrip("/")
    return RedirectResponse(f"{base}/_paper/redirect?{query}", 302)


async def _session_token(call: Call) -> Response:
    form = await call.request.form()
    api_key = str(form.get("api_key") or "")
    request_token = str(form.get("request_token") or "")
    checksum = str(form.get("checksum") or "")
    if not api_key or not request_token or not checksum:
        return kite_error(400, "InputException", "Missing `api_key`, `request_token` or `checksum`.")
    user = call.state.user_where("kite", lambda u: request_token in u.request_tokens)
    if user is None or time.time() - user.request_tokens[request_token] > REQUEST_TOKEN_TTL_S:
        return kite_error(403, "TokenException", "Token is invalid or has expired.")
    if user.api_key != api_key:
        return kite_error(403, "TokenException", "Invalid `api_key`.")
    expected = checksum_hex(api_key, request_token, user.api_secret)
    if not secrets.compare_digest(expected, checksum):
        return kite_error(403, "TokenException", "Invalid `checksum`.")
    del user.request_tokens[request_token]  # single use
    call.user_id = user.user_id
    user.access_token = _random_token(32)
    login_time = now_ist()
    user.token_expires_at = token_expiry_epoch(login_time)
    data = _profile(user)
    data.update(
        {
            "api_key": user.api_key,
            "access_token": user.access_token,
            "public_token": _random_token(32),
            "enctoken": _random_token(40),
            "refresh_token": "",
            "silo": "",
            "login_time": fmt_ts(login_time),
        }
    )
    return kite_ok(data)


async def _session_delete(call: Call) -> Response:
    params = call.request.query_params
    api_key = params.get("api_key", "")
    access_token = params.get("access_token", "")
    user = call.state.user_for_kite_token(api_key, access_token)
    if user is None:
        return kite_error(403, "TokenException", "Incorrect `api_key` or `access_token`.")
    call.user_id = user.user_id
    call.state.expire_tokens("kite", user.user_id)
    return kite_ok(True)


def _profile(user: User) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "user_type": "individual",
        "email": f"{user.user_id.lower()}@paper.invalid",
        "user_name": f"Paper {user.user_id}",
        "user_shortname": user.user_id,
        "broker": "ZERODHA",
        "exchanges": ["NSE", "NFO", "BFO", "CDS", "BSE", "MCX", "BCD", "MF"],
        "products": ["CNC", "NRML", "MIS", "BO", "CO"],
        "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
        "avatar_url": None,
        "meta": {"demat_consent": "physical"},
    }


async def _user_profile(call: Call) -> Response:
    return kite_ok(_profile(call.authed))


# ----- orders -----
def _map_order_error(exc: OrderError) -> Response:
    kind = "InputException" if exc.kind in ("input", "not_found") else "OrderException"
    return kite_error(400, kind, exc.message)


def _text(form: Any, name: str) -> str | None:
    """A form field as text; None when absent or empty (form values can also be uploads)."""
    raw = form.get(name)
    return None if raw is None or raw == "" else str(raw)


def _int_field(form: Any, name: str) -> int | None:
    raw = form.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(str(raw))
    except ValueError:
        raise OrderError("input", f"Invalid `{name}`.") from None


async def _place(call: Call) -> Response:
    form = await call.request.form()
    tag = form.get("tag")
    call.tag = str(tag) if tag else None
    try:
        variety = call.request.path_params["variety"]
        if variety not in VARIETIES:
            raise OrderError("input", "Invalid `variety`.")
        if call.tag is not None and not TAG_RE.match(call.tag):
            raise OrderError("input", "Invalid `tag`. Tag should be alphanumeric and at most 20 characters.")
        exchange = str(form.get("exchange") or "")
        symbol = str(form.get("tradingsymbol") or "")
        if not exchange:
            raise OrderError("input", "Missing `exchange`.")
        if not symbol:
            raise OrderError("input", "Missing `tradingsymbol`.")
        inst = call.state.by_symbol(exchange, symbol)
        if inst is None:
            raise OrderError("input", "Invalid `tradingsymbol`.")
        product = one_of(form, "product", margins.PRODUCTS, "Invalid `product`.")
        validity = one_of(form, "validity", VALIDITIES, "Invalid `validity`.", "DAY")
        quantity = _int_field(form, "quantity")
        if quantity is None:
            raise OrderError("input", "Missing `quantity`.")
        req = OrderRequest(
            instrument=inst,
            variety=variety,
            transaction_type=str(form.get("transaction_type") or ""),
            order_type=str(form.get("order_type") or ""),
            product=product,
            quantity=quantity,
            price=rupees_to_units(_text(form, "price"), inst.price_divisor, "price"),
            trigger_price=rupees_to_units(_text(form, "trigger_price"), inst.price_divisor, "trigger_price"),
            validity=validity,
            disclosed_quantity=_int_field(form, "disclosed_quantity") or 0,
            tag=call.tag,
        )
        if (refused := protection.refusal(call.state, form, req.order_type)) is not None:
            return refused
        order = call.paper.engine.place(call.authed, req)
    except OrderError as exc:
        return _map_order_error(exc)
    call.accepted = True
    return kite_ok({"order_id": order.order_id})


async def _modify(call: Call) -> Response:
    form = await call.request.form()
    try:
        order = call.own_order(call.request.path_params["order_id"], NOT_FOUND)
        call.tag = order.tag
        div = order.instrument.price_divisor
        price = _text(form, "price")
        trigger = _text(form, "trigger_price")
        if (refused := protection.refusal(call.state, form, str(form.get("order_type") or ""), order.order_type)):
            return refused
        call.paper.engine.modify(
            order,
            quantity=_int_field(form, "quantity"),
            price=rupees_to_units(price, div, "price") if price else None,
            order_type=_text(form, "order_type"),
            trigger_price=rupees_to_units(trigger, div, "trigger_price") if trigger else None,
            validity=_text(form, "validity"),
        )
    except OrderError as exc:
        return _map_order_error(exc)
    call.accepted = True
    return kite_ok({"order_id": order.order_id})


async def _cancel(call: Call) -> Response:
    try:
        order = call.own_order(call.request.path_params["order_id"], NOT_FOUND)
        call.tag = order.tag
        call.paper.engine.cancel(order)
    except OrderError as exc:
        return _map_order_error(exc)
    call.accepted = True
    return kite_ok({"order_id": order.order_id})


async def _orders(call: Call) -> Response:
    return kite_ok([kite_order_payload(o) for o in call.own_orders()])


def _order_read(render: Callable[[PaperOrder], Any]) -> Handler:
    """``GET /orders/{order_id}`` (its history) and ``/orders/{order_id}/trades``."""

    async def handler(call: Call) -> Response:
        try:
            order = call.own_order(call.request.path_params["order_id"], NOT_FOUND)
        except OrderError as exc:
            return _map_order_error(exc)
        return kite_ok(render(order))

    return handler


# ----- account state (paper/portfolio.py's books) -----
def _books(build: Callable[[PaperState, str], Any]) -> Handler:
    async def handler(call: Call) -> Response:
        return kite_ok(build(call.state, call.authed.user_id))

    return handler


async def _margins_segment(call: Call) -> Response:
    body = payloads.margins_data(call.state, call.authed.user_id)
    segment = call.request.path_params["segment"]
    return kite_ok(body[segment]) if segment in body else kite_error(400, "InputException", "Invalid segment.")


async def _margins(call: Call) -> Response:
    """``POST /margins/orders`` and ``/margins/basket`` (query consider_positions, mode: nothing to net
    or compact at the paper broker)."""
    try:
        rows, total = margins.priced(call.state, await call.request.body())
    except OrderError as exc:
        return _map_order_error(exc)
    basket = call.request.url.path.endswith("/basket")
    return kite_ok(payloads.basket_margins_data(rows, total) if basket else rows)


# ----- market data -----
async def _instruments(call: Call) -> Response:
    exchange = call.request.path_params.get("exchange")
    body = call.paper.cached(f"kite_csv:{exchange or '*'}", lambda: instruments_csv(call.state.universe, exchange))
    return Response(body, 200, media_type="text/csv")


def _quote_body(call: Call, mode: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in call.request.query_params.getlist("i"):
        exchange, _, symbol = key.partition(":")
        inst = call.state.by_symbol(exchange, symbol)
        if inst is None:
            continue
        q = call.state.prices.quote(inst)
        div = inst.price_divisor
        ohlc = {k: q[k] / div for k in ("open", "high", "low", "close")}
        if mode == "ltp":
            out[key] = {"instrument_token": inst.kite_token, "last_price": q["last_price"] / div}
        elif mode == "ohlc":
            out[key] = {"instrument_token": inst.kite_token, "last_price": q["last_price"] / div, "ohlc": ohlc}
        else:
            ts = dt.datetime.fromtimestamp(q["exchange_timestamp"], IST)
            out[key] = {
                "instrument_token": inst.kite_token,
                "timestamp": fmt_ts(ts),
                "last_trade_time": fmt_ts(ts),
                "last_price": q["last_price"] / div,
                "last_quantity": q["last_quantity"],
                "buy_quantity": q["buy_quantity"],
                "sell_quantity": q["sell_quantity"],
                "volume": q["volume"],
                "average_price": q["average_price"] / div,
                "oi": q.get("oi", 0),
                "oi_day_high": q.get("oi_day_high", 0),
                "oi_day_low": q.get("oi_day_low", 0),
                "net_change": (q["last_price"] - q["close"]) / div,
                "lower_circuit_limit": q["lower_circuit"] / div,
                "upper_circuit_limit": q["upper_circuit"] / div,
                "ohlc": ohlc,
                "depth": {
                    side: [{"price": d["price"] / div, "quantity": d["quantity"], "orders": d["orders"]} for d in rows]
                    for side, rows in q["depth"].items()
                },
            }
    return out


def _quote_handler(mode: str) -> Any:
    async def handler(call: Call) -> Response:
        return kite_ok(_quote_body(call, mode))

    return handler


# ----- routing -----
def _endpoint(endpoint_class: str, handler: Handler, authenticate: Authenticator = auth_token) -> Any:
    return make_endpoint(DIALECT, endpoint_class, handler, authenticate)


def routes(state: object = None) -> list[Route]:
    # Every dialect module has routes(state); REST reads its state from the request instead.
    return [
        Route("/api/login", _endpoint("login", _api_login, _named_user), methods=["POST"]),
        Route("/api/twofa", _endpoint("login", _api_twofa, _named_user), methods=["POST"]),
        Route("/connect/login", _endpoint("login", _connect_login, _session_user), methods=["GET"]),
        Route("/connect/finish", _endpoint("login", _connect_finish, _session_user), methods=["GET"]),
        Route("/session/token", _endpoint("login", _session_token, _api_key_user), methods=["POST"]),
        Route("/session/token", _endpoint("other", _session_delete, anonymous), methods=["DELETE"]),
        Route("/user/profile", _endpoint("other", _user_profile), methods=["GET"]),
        Route("/orders", _endpoint("orderbook", _orders), methods=["GET"]),
        Route("/orders/{order_id}/trades", _endpoint("orderbook", _order_read(trade_payload)), methods=["GET"]),
        Route("/orders/{order_id}", _endpoint("orderbook", _order_read(lambda order: order.history)), methods=["GET"]),
        Route("/orders/{variety}", _endpoint("orders", _place), methods=["POST"]),
        Route("/orders/{variety}/{order_id}", _endpoint("orders", _modify), methods=["PUT"]),
        Route("/orders/{variety}/{order_id}", _endpoint("orders", _cancel), methods=["DELETE"]),
        Route("/trades", _endpoint("orderbook", _books(payloads.trades_data)), methods=["GET"]),
        # Kite documents no cap of their own for these: "all other endpoints" (other, 10/s).
        Route("/portfolio/positions", _endpoint("other", _books(payloads.positions_data)), methods=["GET"]),
        Route("/portfolio/holdings", _endpoint("other", _books(payloads.holdings_data)), methods=["GET"]),
        Route("/user/margins", _endpoint("other", _books(payloads.margins_data)), methods=["GET"]),
        Route("/user/margins/{segment}", _endpoint("other", _margins_segment), methods=["GET"]),
        Route("/margins/orders", _endpoint("other", _margins), methods=["POST"]),
        Route("/margins/basket", _endpoint("other", _margins), methods=["POST"]),
        Route("/instruments", _endpoint("other", _instruments, auth_optional), methods=["GET"]),
        Route("/instruments/{exchange}", _endpoint("other", _instruments, auth_optional), methods=["GET"]),
        Route("/quote", _endpoint("quote", _quote_handler("full")), methods=["GET"]),
        Route("/quote/ltp", _endpoint("quote", _quote_handler("ltp")), methods=["GET"]),
        Route("/quote/ohlc", _endpoint("quote", _quote_handler("ohlc")), methods=["GET"]),
    ]
