"""The `/_paper` control API: users, the request log, orders, faults, reset, and the landing
page of the Kite login redirect. Not part of any broker's API, so never logged or capped."""

from __future__ import annotations

import ipaddress
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from paper import portfolio
from paper.angel.payloads import angel_order_payload
from paper.caps import parse_cap
from paper.faults import FAULT_KINDS, Fault
from paper.fyers.payloads import fyers_order_payload
from paper.gateway import Paper
from paper.kite.payloads import kite_order_payload
from paper.orders import PaperOrder
from paper.shoonya.payloads import shoonya_order_payload
from paper.users import BROKERS, User

# Each dialect's order body (its order-book row), shown by /_paper/orders as broker_payload.
ORDER_PAYLOADS = {
    "kite": kite_order_payload,
    "angel": angel_order_payload,
    "fyers": fyers_order_payload,
    "shoonya": shoonya_order_payload,
}


def user_from_mapping(data: dict[str, Any]) -> User:
    """Build a User from a `POST /_paper/users` body or a config `[[users]]` table."""
    missing = [k for k in ("broker", "user_id", "password", "totp_secret", "api_key") if not data.get(k)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    if data["broker"] not in BROKERS:
        raise ValueError(f"broker must be one of {', '.join(BROKERS)}")
    caps = data.get("caps") or {}
    if not isinstance(caps, dict) or not all(isinstance(v, list) for v in caps.values()):
        raise ValueError('caps must look like {"orders": ["10/s", "400/min"]}')
    for values in caps.values():
        for cap in values:
            parse_cap(cap)
    registered_ip = data.get("registered_ip") or None
    if registered_ip is not None:
        try:
            registered_ip = str(ipaddress.ip_address(str(registered_ip)))
        except ValueError:
            raise ValueError(f"registered_ip must be an IP address, got {registered_ip!r}") from None
    registered_algo = data.get("registered_algo", False)
    if not isinstance(registered_algo, bool):
        raise ValueError(f"registered_algo must be true or false, got {registered_algo!r}")
    return User(
        broker=str(data["broker"]),
        user_id=str(data["user_id"]),
        password=str(data["password"]),
        totp_secret=str(data["totp_secret"]),
        api_key=str(data["api_key"]),
        api_secret=str(data.get("api_secret") or ""),
        caps={str(k): [str(c) for c in v] for k, v in caps.items()},
        postback_url=data.get("postback_url") or None,
        registered_ip=registered_ip,
        registered_algo=registered_algo,
    )


def _paper(request: Request) -> Paper:
    return request.app.state.paper  # type: ignore[no-any-return]


async def _json(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def add_user(request: Request) -> Response:
    body = await _json(request)
    if body is None:
        return JSONResponse({"error": "body must be a JSON object"}, 400)
    try:
        user = user_from_mapping(body)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, 400)
    _paper(request).state.add_user(user)
    return JSONResponse(user.public_dict(), 201)


async def list_users(request: Request) -> Response:
    return JSONResponse([u.public_dict() for u in _paper(request).state.users.values()])


async def requests_log(request: Request) -> Response:
    """All entries; optional filters `since_ns` (arrival_ns > since_ns), `broker`, `user_id`,
    `endpoint_class`, so long benchmark runs can fetch only what is new."""
    entries = _paper(request).state.log.entries()
    params = request.query_params
    try:
        since = int(params["since_ns"]) if "since_ns" in params else None
    except ValueError:
        return JSONResponse({"error": "since_ns must be an integer"}, 400)
    if since is not None:
        entries = [e for e in entries if e["arrival_ns"] > since]
    for key in ("broker", "user_id", "endpoint_class"):
        if key in params:
            entries = [e for e in entries if e[key] == params[key]]
    return JSONResponse(entries)


def order_summary(order: PaperOrder) -> dict[str, Any]:
    body = ORDER_PAYLOADS[order.broker](order)
    return {
        "broker": order.broker,
        "user_id": order.user_id,
        "order_id": order.order_id,
        "unique_order_id": order.unique_order_id,
        "tag": order.tag,
        "status": order.status,
        "exchange": order.instrument.exchange,
        "symbol": order.instrument.symbol,
        "transaction_type": order.transaction_type,
        "order_type": order.order_type,
        "quantity": order.quantity,
        "filled_quantity": order.filled_quantity,
        "price": order.price / order.instrument.price_divisor,
        "trigger_price": order.trigger_price / order.instrument.price_divisor,
        "average_price": order.average_price(),
        "modify_count": order.modify_count,
        "created_ns": order.created_ns,
        "fill_wall_ns": order.fill_wall_ns,
        "broker_payload": body,
    }


async def orders(request: Request) -> Response:
    """All orders of every user, in placement order; optional filters `broker`, `user_id`, `tag`."""
    selected = list(_paper(request).state.orders.values())
    params = request.query_params
    for key in ("broker", "user_id", "tag"):
        if key in params:
            selected = [o for o in selected if getattr(o, key) == params[key]]
    return JSONResponse([order_summary(o) for o in selected])


def _rupees(units: float, divisor: int = 100) -> str:
    """Integer (or averaged) 1/divisor rupees as an exact-enough decimal string for comparisons."""
    return f"{units / divisor:.4f}"


async def portfolio_books(request: Request) -> Response:
    """The books of one user (`broker`, `user_id`), generic names (products as CNC/MIS/NRML, whatever
    code the dialect keeps), rupees as decimal strings: what every dialect's positions, holdings,
    funds and trades endpoints serve (tests compare brokergate and the official SDKs with them)."""
    state, params = _paper(request).state, request.query_params
    broker, user_id = params.get("broker", ""), params.get("user_id", "")
    positions = [{"exchange": p.instrument.exchange, "symbol": p.instrument.symbol,
                  "product": portfolio.product_kind(p.product),
                  "quantity": p.quantity, "average_price": _rupees(p.average_price, p.instrument.price_divisor),
                  "buy_quantity": p.buy_quantity, "sell_quantity": p.sell_quantity,
                  "buy_value": _rupees(p.buy_value, p.instrument.price_divisor),
                  "sell_value": _rupees(p.sell_value, p.instrument.price_divisor),
                  "last_price": _rupees(p.last_price, p.instrument.price_divisor),
                  "pnl": _rupees(p.pnl, p.instrument.price_divisor)}
                 for p in portfolio.positions(state, broker, user_id)]
    holdings = [{"exchange": h.instrument.exchange, "symbol": h.instrument.symbol, "quantity": h.quantity,
                 "t1_quantity": h.t1_quantity, "average_price": _rupees(h.average_price)}
                for h in portfolio.holdings(state, broker, user_id)]
    f = portfolio.funds(state, broker, user_id)
    funds = {"opening_balance": _rupees(f.opening_balance), "used_margin": _rupees(f.used_margin),
             "available_margin": _rupees(f.available_margin), "realised": _rupees(f.realised)}
    trades = [{"trade_id": t.trade_id, "order_id": o.order_id, "tag": o.tag, "exchange": o.instrument.exchange,
               "symbol": o.instrument.symbol, "product": portfolio.product_kind(o.product), "side": o.transaction_type,
               "quantity": t.quantity, "price": _rupees(t.price, o.instrument.price_divisor)}
              for o, t in portfolio.trades(state, broker, user_id)]
    return JSONResponse({"positions": positions, "holdings": holdings, "funds": funds, "trades": trades})


async def add_fault(request: Request) -> Response:
    body = await _json(request)
    if body is None:
        return JSONResponse({"error": "body must be a JSON object"}, 400)
    kind = body.get("kind")
    broker = body.get("broker")
    if kind not in FAULT_KINDS:
        return JSONResponse({"error": f"unknown kind {kind!r}", "kinds": sorted(FAULT_KINDS)}, 400)
    if broker not in BROKERS:
        return JSONResponse({"error": f"broker must be one of {', '.join(BROKERS)}"}, 400)
    try:
        count = None if body.get("count") is None else int(body["count"])
        duration_s = None if body.get("duration_s") is None else float(body["duration_s"])
        delay_s = None if body.get("delay_s") is None else float(body["delay_s"])
        status = None if body.get("status") is None else int(body["status"])
    except (TypeError, ValueError):
        return JSONResponse({"error": "count, duration_s, delay_s and status must be numbers"}, 400)
    user_id = body.get("user_id")
    try:
        fault = _paper(request).state.add_fault(Fault(kind, broker, user_id, count, duration_s, delay_s, status))
    except ValueError as exc:  # a status on another kind, or not a 5xx
        return JSONResponse({"error": str(exc)}, 400)
    return JSONResponse(fault.to_dict(), 201)


async def list_faults(request: Request) -> Response:
    return JSONResponse(_paper(request).state.faults.active())


async def reset(request: Request) -> Response:
    _paper(request).reset()
    return JSONResponse({"status": "ok"})


async def redirect_landing(request: Request) -> Response:
    """Where the Kite login redirects: shows the request_token like an app's redirect URL would."""
    return JSONResponse(dict(request.query_params))


async def health(request: Request) -> Response:
    paper = _paper(request)
    return JSONResponse(
        {
            "status": "ok",
            "seed": paper.state.seed,
            "instruments": len(paper.state.universe),
            "postbacks_sent": paper.postbacks.sent,
            "postbacks_failed": paper.postbacks.failed,
            "rule_rejections": dict(paper.state.rule_rejections),  # paper/rules.py
        }
    )


def routes() -> list[Route]:
    return [
        Route("/_paper/users", add_user, methods=["POST"]),
        Route("/_paper/users", list_users, methods=["GET"]),
        Route("/_paper/requests", requests_log, methods=["GET"]),
        Route("/_paper/orders", orders, methods=["GET"]),
        Route("/_paper/portfolio", portfolio_books, methods=["GET"]),
        Route("/_paper/faults", add_fault, methods=["POST"]),
        Route("/_paper/faults", list_faults, methods=["GET"]),
        Route("/_paper/reset", reset, methods=["POST"]),
        Route("/_paper/redirect", redirect_landing, methods=["GET"]),
        Route("/_paper/health", health, methods=["GET"]),
    ]
