"""Finvasia Shoonya (Noren OMS) at its own paths: QuickAuth, Logout, UserDetails, PlaceOrder,
ModifyOrder, CancelOrder, OrderBook, TradeBook, SingleOrdHist, GetQuotes, the account state
(PositionBook, Holdings, Limits: ``paper/portfolio.py``'s books) and the margin calculators
(GetOrderMargin, GetBasketMargin: ``paper/portfolio.py``'s margin_for) under ``/NorenWClientTP/``,
and the symbol masters ``/NSE_symbols.txt.zip``, ``/BSE_...``, ``/NFO_...`` and ``/BFO_...``
(``paper/shoonya/master.py``).

Every call is a POST whose body is ``jData=<json>`` (plus ``&jKey=<susertoken>`` after login),
as NorenRestApiPy sends it: raw JSON after ``jData=``, read here as a form so a form-encoded body
works too. Answers are HTTP 200 with ``{"stat": "Ok", ...}`` or ``{"stat": "Not_Ok", "emsg":
"<Kind> : <detail>"}``; the books are JSON lists, and an empty one is ``Not_Ok`` with
``Error Occurred : 5 "no data"``, as at Noren. Finvasia documents no rate-limit answer: the paper
broker sends HTTP 429 with ``{"stat": "Not_Ok", "emsg": "Rate limit exceeded : ..."}``, and a
5xx fault is HTTP 503 with a Not_Ok body.

The SDK joins ``host + "/PlaceOrder"``, so a host configured with a trailing slash (as Finvasia's
examples do) requests ``/NorenWClientTP//PlaceOrder``: both spellings are served.

The 2026 rules (paper/rules.py): PlaceOrder and ModifyOrder refuse the MKT and SL-MKT price types
from API clients, as Shoonya does since April 2026 ("Rejected : ALGO_CHK: MKT Order type not
allowed for API order", reported live by public integrations; the SL-MKT text is assumed the same).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import pyotp
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from paper import portfolio
from paper.gateway import Authenticator, Call, Dialect, Handler, Reply, anonymous, make_endpoint
from paper.matching import OrderError, OrderRequest, one_of, rupees_to_units, whole_number
from paper.orders import next_ist_epoch, now_ist
from paper.rules import MARKET_PROTECTION
from paper.shoonya.master import EXCHANGES as SYMBOL_EXCHANGES
from paper.shoonya.master import symbols_zip, trading_symbol
from paper.shoonya.payloads import (
    PRICE_TYPE_OF,
    PRICE_TYPES,
    PRODUCTS,
    SIDES,
    rupees_text,
    shoonya_basket_margin,
    shoonya_holding_row,
    shoonya_limits,
    shoonya_order_margin,
    shoonya_order_payload,
    shoonya_position_row,
)
from paper.universe import PaperInstrument
from paper.users import User

__all__ = ["PREFIX", "SYMBOLS_ZIP_PATH", "routes"]

PREFIX = "/NorenWClientTP"
SYMBOLS_ZIP_PATH = "/{exchange}_symbols.txt.zip"
RETENTIONS = ("DAY", "IOC", "EOS")
SESSION_EXPIRED = "Session Expired : Invalid Session Key"
NO_DATA = 'Error Occurred : 5 "no data"'


def ok(**fields: Any) -> JSONResponse:
    return JSONResponse({"request_time": now_ist().strftime("%H:%M:%S %d-%m-%Y"), "stat": "Ok", **fields})


def not_ok(emsg: str, status: int = 200) -> JSONResponse:
    return JSONResponse({"stat": "Not_Ok", "request_time": now_ist().strftime("%H:%M:%S %d-%m-%Y"), "emsg": emsg},
                        status)  # fmt: skip


DIALECT = Dialect(
    broker="shoonya",
    unavailable=lambda: not_ok("Service Unavailable : try after some time", 503),
    rate_limited=lambda: not_ok("Rate limit exceeded : too many requests", 429),
    # Finvasia publishes no answer for it: Noren's refusal envelope, our wording (docs/brokers.md).
    ip_refused=lambda ip: not_ok(f"Invalid IP : {ip} is not a registered static IP"),
)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _form(call: Call) -> tuple[dict[str, Any], str]:
    """(jData as a dict, jKey) of the request; a body that is not that answers Not_Ok at once."""
    cached = getattr(call.request.state, "noren", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    raw = (await call.request.body()).decode("utf-8", "replace")
    fields = dict(parse_qsl(raw, keep_blank_values=True))
    try:
        values = json.loads(fields.get("jData", ""))
    except ValueError:
        raise Reply(not_ok('Error Occurred : 2 "invalid input"')) from None
    if not isinstance(values, dict):
        raise Reply(not_ok('Error Occurred : 2 "invalid input"'))
    call.request.state.noren = (values, fields.get("jKey", ""))
    return values, fields.get("jKey", "")


# ----- authentication -----
async def auth_jkey(call: Call) -> User | None:
    values, jkey = await _form(call)
    user = call.state.user_for_shoonya_token(jkey)
    if user is None:
        raise Reply(not_ok(SESSION_EXPIRED))
    uid = str(values.get("uid") or "")
    if uid and uid != user.user_id:
        raise Reply(not_ok("Invalid Input : uid does not match the session"))
    return user


async def _login_user(call: Call) -> User | None:
    values, _ = await _form(call)
    call.user_id = str(values.get("uid") or "") or None
    return None


async def _quick_auth(call: Call) -> Response:
    values, _ = await _form(call)
    uid = str(values.get("uid") or "")
    user = call.state.find_user("shoonya", uid)
    if user is None or not secrets.compare_digest(_sha256(user.password), str(values.get("pwd") or "")):
        return not_ok("Invalid Input : Wrong Password")
    if str(values.get("vc") or "") != user.api_key:
        return not_ok("Invalid Input : Invalid Vendor Code")
    if not secrets.compare_digest(_sha256(f"{uid}|{user.api_secret}"), str(values.get("appkey") or "")):
        return not_ok("Invalid Input : Invalid App Key")
    # valid_window=0: the code must be from the current 30 s step.
    if not pyotp.TOTP(user.totp_secret).verify(str(values.get("factor2") or ""), valid_window=0):
        return not_ok("Invalid Input : Invalid OTP")
    user.access_token = secrets.token_hex(32)
    user.token_expires_at = next_ist_epoch(6)  # Finvasia documents no lifetime
    return ok(
        susertoken=user.access_token,
        lastaccesstime=str(int(time.time())),
        actid=user.user_id,
        uid=user.user_id,
        uname=f"PAPER {user.user_id}",
        email="",
        brkname="FINVASIA",
        exarr=["NSE", "BSE", "NFO", "CDS", "MCX"],
        prarr=[{"prd": code, "s_prdt_ali": name, "exch": ["NSE", "BSE"]} for code, name in PRODUCTS.items()],
    )


async def _logout(call: Call) -> Response:
    call.state.expire_tokens("shoonya", call.authed.user_id)
    return ok()


async def _user_details(call: Call) -> Response:
    user_id = call.authed.user_id
    return ok(actid=user_id, uname=f"PAPER {user_id}", exarr=["NSE", "BSE", "NFO"],
              prarr=[{"prd": c, "s_prdt_ali": n} for c, n in PRODUCTS.items()])  # fmt: skip


# ----- orders -----
MARKET_TYPES = ("MKT", "SL-MKT")
MARKET_REFUSED = "Rejected : ALGO_CHK: MKT Order type not allowed for API order"


def _market_refused(call: Call, prctyp: str) -> Response | None:
    """Noren's refusal of an MKT or SL-MKT order from the API, counted; None for the rest."""
    if prctyp not in MARKET_TYPES:
        return None
    call.state.rule_rejections[MARKET_PROTECTION] += 1
    return not_ok(MARKET_REFUSED)


# Noren's fixed answer to each kind of OrderError that has one.
_ORDER_ERRORS = {"not_found": "Rejected : ORA:Order not found", "symbol": "Invalid Input : Invalid Trading Symbol"}


def _order_error(exc: OrderError) -> Response:
    kind = "Invalid Input" if exc.kind == "input" else "Rejected"
    return not_ok(_ORDER_ERRORS.get(exc.kind) or f"{kind} : {exc.message}")


def _quantity(raw: Any) -> int:
    return whole_number(raw, "Invalid qty")


def _instrument(call: Call, values: dict[str, Any]) -> PaperInstrument:
    exch = str(values.get("exch") or "")
    tsym = str(values.get("tsym") or "")
    inst = call.state.by_symbol(exch, tsym)
    if inst is None and values.get("token"):
        inst = call.state.by_shoonya_token(exch, str(values["token"]))
    if inst is None or inst.exchange != exch:
        raise OrderError("symbol", "Invalid Trading Symbol")
    return inst


def _price(values: dict[str, Any], name: str, div: int) -> int:
    raw = values.get(name)
    if raw in (None, "", "None"):  # the SDK sends str(None) for a missing trigger price
        return 0
    return rupees_to_units(raw, div, name)


async def _place(call: Call) -> Response:
    user = call.authed
    values, _ = await _form(call)
    call.tag = str(values["remarks"]) if values.get("remarks") else None
    try:
        if str(values.get("actid") or user.user_id) != user.user_id:
            raise OrderError("input", "Invalid actid")
        prd = one_of(values, "prd", PRODUCTS, "Invalid Product")
        side = SIDES[one_of(values, "trantype", SIDES, "Invalid Transaction Type")]
        prctyp = one_of(values, "prctyp", PRICE_TYPES, "Invalid Price Type")
        if (refused := _market_refused(call, prctyp)) is not None:
            return refused
        ret = one_of(values, "ret", RETENTIONS, "Invalid Retention Type", "DAY")
        inst = _instrument(call, values)
        div = inst.price_divisor
        req = OrderRequest(
            instrument=inst,
            variety="regular",
            transaction_type=side,
            order_type=PRICE_TYPES[prctyp],
            product=PRODUCTS[prd],
            quantity=_quantity(values.get("qty")),
            price=_price(values, "prc", div),
            trigger_price=_price(values, "trgprc", div),
            validity="DAY" if ret == "EOS" else ret,
            disclosed_quantity=0,
            tag=call.tag,
        )
        order = call.paper.engine.place(user, req)
    except OrderError as exc:
        return _order_error(exc)
    call.accepted = True
    return ok(norenordno=order.order_id)


async def _modify(call: Call) -> Response:
    values, _ = await _form(call)
    try:
        order = call.own_order(str(values.get("norenordno") or ""))
        call.tag = order.tag
        div = order.instrument.price_divisor
        prctyp = one_of(values, "prctyp", PRICE_TYPES, "Invalid Price Type", PRICE_TYPE_OF.get(order.order_type, ""))
        if (refused := _market_refused(call, prctyp)) is not None:
            return refused
        ret = str(values.get("ret") or "")
        if ret and ret not in RETENTIONS:
            raise OrderError("input", "Invalid Retention Type")
        call.paper.engine.modify(
            order,
            quantity=_quantity(values["qty"]) if values.get("qty") not in (None, "") else None,
            price=_price(values, "prc", div) if values.get("prc") not in (None, "") else None,
            order_type=PRICE_TYPES[prctyp],
            trigger_price=_price(values, "trgprc", div) if values.get("trgprc") not in (None, "", "None") else None,
            validity=("DAY" if ret == "EOS" else ret) or None,
        )
    except OrderError as exc:
        return _order_error(exc)
    call.accepted = True
    return ok(result=order.order_id)


async def _cancel(call: Call) -> Response:
    values, _ = await _form(call)
    try:
        order = call.own_order(str(values.get("norenordno") or ""))
        call.tag = order.tag
        call.paper.engine.cancel(order)
    except OrderError as exc:
        if exc.kind == "not_found":
            return not_ok("Rejected : ORA:Order not found to Cancel")
        return _order_error(exc)
    call.accepted = True
    return ok(result=order.order_id)


async def _order_book(call: Call) -> Response:
    # Newest first, as Noren lists them.
    rows = [shoonya_order_payload(o) for o in reversed(call.own_orders())]
    return JSONResponse(rows) if rows else not_ok(NO_DATA)


async def _trade_book(call: Call) -> Response:
    rows = []
    for order in reversed(call.own_orders()):
        div = order.instrument.price_divisor
        base = shoonya_order_payload(order)
        for trade in order.trades:
            rows.append({
                **{k: base[k] for k in ("stat", "norenordno", "uid", "actid", "exch", "prctyp", "ret", "prd",
                                        "trantype", "tsym", "qty", "token", "fillshares", "pp", "ls", "ti", "prc",
                                        "norentm")},
                "flid": trade.trade_id,
                "fltm": trade.fill_time.strftime("%d-%m-%Y %H:%M:%S"),
                "flqty": str(trade.quantity),
                "flprc": rupees_text(trade.price, div),
                "remarks": order.tag or "",
                "exchordid": order.exchange_order_id or "",
            })  # fmt: skip
    return JSONResponse(rows) if rows else not_ok(NO_DATA)


async def _account(call: Call, *required: str) -> tuple[str, dict[str, Any]]:
    """(user id, jData) of an account-state call, whose ``uid`` and ``actid`` (and ``required``)
    Noren requires ("Invalid Input : Missing uid or actid or prd." at Holdings)."""
    user_id = call.authed.user_id
    values, _ = await _form(call)
    if any(not values.get(k) for k in ("uid", "actid", *required)):
        raise Reply(not_ok(f"Invalid Input : Missing {' or '.join(('uid', 'actid', *required))}."))
    if str(values["actid"]) != user_id:
        raise Reply(not_ok("Invalid Input : Invalid actid"))
    return user_id, values


async def _position_book(call: Call) -> Response:
    uid, _ = await _account(call)
    rows = [shoonya_position_row(p, uid) for p in call.books(portfolio.positions)]
    return JSONResponse(rows) if rows else not_ok(NO_DATA)


async def _holdings(call: Call) -> Response:
    _, values = await _account(call, "prd")
    # Only delivery holdings exist at the paper broker: another product holds nothing.
    held = call.books(portfolio.holdings) if values["prd"] == "C" else []
    rows = [shoonya_holding_row(h) for h in held]
    return JSONResponse(rows) if rows else not_ok(NO_DATA)


async def _limits(call: Call) -> Response:
    uid, _ = await _account(call)
    return ok(**shoonya_limits(call.books(portfolio.funds), uid))


def _margin_need(call: Call, values: Any) -> Decimal:
    """Rupees one calculator order needs, from margin_for (a market order at the last price)."""
    if not isinstance(values, dict):
        raise OrderError("input", "Invalid basketlists")
    prd = one_of(values, "prd", PRODUCTS, "Invalid Product")
    one_of(values, "trantype", SIDES, "Invalid Transaction Type")
    prctyp = one_of(values, "prctyp", PRICE_TYPES, "Invalid Price Type")
    inst = _instrument(call, values)
    div = inst.price_divisor
    price = 0 if prctyp in MARKET_TYPES else _price(values, "prc", div)
    units = portfolio.margin_for(call.state, inst, prd, _quantity(values.get("qty")), price)
    return Decimal(units) / div


async def _order_margin(call: Call) -> Response:
    _, values = await _account(call)
    try:
        need = _margin_need(call, values)
    except OrderError as exc:
        return _order_error(exc)
    return ok(**shoonya_order_margin(call.books(portfolio.funds), need))


async def _basket_margin(call: Call) -> Response:
    _, values = await _account(call)
    others = values.get("basketlists") or []
    try:
        if not isinstance(others, list):
            raise OrderError("input", "Invalid basketlists")
        # A plain sum: the paper universe has nothing to hedge with (margin_for).
        need = sum((_margin_need(call, v) for v in [values, *others]), Decimal(0))
    except OrderError as exc:
        return _order_error(exc)
    return ok(**shoonya_basket_margin(call.books(portfolio.funds), need))


async def _single_order_history(call: Call) -> Response:
    values, _ = await _form(call)
    try:
        order = call.own_order(str(values.get("norenordno") or ""))
    except OrderError:
        return not_ok(NO_DATA)
    call.tag = order.tag
    return JSONResponse([shoonya_order_payload(order)])


async def _quotes(call: Call) -> Response:
    values, _ = await _form(call)
    inst = call.state.by_shoonya_token(str(values.get("exch") or ""), str(values.get("token") or ""))
    if inst is None:
        return not_ok(NO_DATA)
    q = call.state.prices.quote(inst)
    div = inst.price_divisor
    return ok(exch=inst.exchange, tsym=trading_symbol(inst), token=inst.shoonya_token, pp="2",
              ls=str(inst.lot_size), ti=rupees_text(inst.tick_size_paise, div), lp=rupees_text(q["last_price"], div),
              o=rupees_text(q["open"], div), h=rupees_text(q["high"], div), l=rupees_text(q["low"], div),
              c=rupees_text(q["close"], div), v=str(q["volume"]))  # fmt: skip


def _symbols_zip(exchange: str) -> Handler:
    async def handler(call: Call) -> Response:
        key = f"shoonya_{exchange.lower()}_symbols_zip"
        body = call.paper.cached(key, lambda: symbols_zip(call.state.universe, exchange))
        return Response(body, 200, media_type="application/zip")

    return handler


def _endpoint(endpoint_class: str, handler: Handler, authenticate: Authenticator = auth_jkey) -> Any:
    return make_endpoint(DIALECT, endpoint_class, handler, authenticate)


def routes(state: object = None) -> list[Route]:
    # Every dialect module has routes(state); REST reads its state from the request instead.
    calls: list[tuple[str, str, Handler, Authenticator]] = [
        ("QuickAuth", "login", _quick_auth, _login_user),
        ("Logout", "other", _logout, auth_jkey),
        ("UserDetails", "other", _user_details, auth_jkey),
        ("PlaceOrder", "orders", _place, auth_jkey),
        ("ModifyOrder", "orders", _modify, auth_jkey),
        ("CancelOrder", "orders", _cancel, auth_jkey),
        ("OrderBook", "orderbook", _order_book, auth_jkey),
        ("TradeBook", "orderbook", _trade_book, auth_jkey),
        ("SingleOrdHist", "orderbook", _single_order_history, auth_jkey),
        ("GetQuotes", "quote", _quotes, auth_jkey),
        # Account state and margins: Finvasia publishes no caps, so these count as "other", as the
        # adapter's limiter counts them (its spec caps no "portfolio" class: Account.caps_for falls back).
        ("PositionBook", "other", _position_book, auth_jkey),
        ("Holdings", "other", _holdings, auth_jkey),
        ("Limits", "other", _limits, auth_jkey),
        ("GetOrderMargin", "other", _order_margin, auth_jkey),
        ("GetBasketMargin", "other", _basket_margin, auth_jkey),
    ]
    out = []
    for name, endpoint_class, handler, authenticate in calls:
        endpoint = _endpoint(endpoint_class, handler, authenticate)
        out.append(Route(f"{PREFIX}/{name}", endpoint, methods=["POST"]))
        out.append(Route(f"{PREFIX}//{name}", endpoint, methods=["POST"]))
    for exchange in SYMBOL_EXCHANGES:
        path = SYMBOLS_ZIP_PATH.format(exchange=exchange)
        out.append(Route(path, _endpoint("other", _symbols_zip(exchange), anonymous), methods=["GET"]))
    # Calls the paper broker does not implement still answer as Noren (the SDK parses every answer).
    out.append(Route(f"{PREFIX}/{{name:path}}", _unknown, methods=["GET", "POST"]))
    return out


async def _unknown(request: Request) -> Response:
    paper = request.app.state.paper
    paper.state.log.record("shoonya", None, "other", request.method, request.url.path, 404)
    return not_ok("Not Found : the paper broker does not implement this call", 404)
