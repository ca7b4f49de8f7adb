"""Order egress (the 2026 static-IP rule): an account's order requests (place, modify, cancel) leave from
its ``order_source_address`` or through its ``order_proxy``, every other request from the default
route; a broker's refusal of the source IP is EgressRefused (final: one request, no retry storm); the
paper broker refuses order requests from an address other than a user's ``registered_ip``.

End to end on Kite, at a paper user registered from 127.0.0.2 (Linux routes all of 127.0.0.0/8 to the
loopback, so a socket bound to 127.0.0.2 reaches the paper broker on 127.0.0.1); the error mapping of
every broker as pure functions, fed the paper dialects' own refusals.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from common import keys
from common.brokers import broker as broker_record
from common.brokers.base import adapter_for, new_session, send, sending_by
from common.brokers.egress import OrderEgress, refusal, seen_ip
from common.client import cancel_order, place_order
from common.errors import (
    BrokerUnavailable,
    ConfigError,
    EgressRefused,
    OrderRejected,
    RateLimited,
    TokenExpired,
)
from common.health import gather
from common.redis import get_redis
from common.settings import parse_accounts
from devtools.paperbroker import PaperBroker
from devtools.waiting import wait_for
from tests.fixtures.accounts import account_toml, logged_in, paper_user_of

REGISTERED = "127.0.0.2"  # the paper user's registered static IP
DEFAULT = "127.0.0.1"  # where the default route (and so every other request) comes from
LIMIT_ORDER = {"exchange": "NSE", "symbol": "INFY", "side": "BUY", "quantity": 1, "order_type": "LIMIT", "price": "1.00"}


# --- configuration -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("extra", "needle"), [
    ({"order_source_address": "127.0.0.300"}, "a1.extra.order_source_address: must be an IP address"),
    ({"order_source_address": 127}, "a1.extra.order_source_address: must be a string"),
    ({"order_proxy": "socks5://proxy:1080"}, "a1.extra.order_proxy: must be an http:// or https:// proxy URL"),
    ({"order_proxy": "proxy.example:3128"}, "a1.extra.order_proxy: must be an http:// or https:// proxy URL"),
    ({"order_proxy": "http://proxy:port"}, "a1.extra.order_proxy: must be an http:// or https:// proxy URL"),
])
def test_a_bad_egress_is_a_config_error_naming_the_key(extra: dict[str, Any], needle: str) -> None:
    # Given an accounts file whose egress extra is malformed, When it is read, Then the error names the key
    with pytest.raises(ConfigError, match=needle):
        parse_accounts(account_toml("a1", extra=extra), environ={})


def test_a_refused_proxy_url_never_shows_its_password() -> None:
    with pytest.raises(ConfigError) as e:
        parse_accounts(account_toml("a1", extra={"order_proxy": "ftp://u:s3cret@proxy:21"}), environ={})
    assert "s3cret" not in str(e.value) and "u:***@proxy:21" in str(e.value)


def test_the_egress_extras_parse_and_describe_without_the_proxy_password() -> None:
    # Given both egress extras, When read, Then the account keeps them and status shows host and port only
    accts = parse_accounts(account_toml("a1", extra={
        "order_source_address": "203.0.113.7", "order_proxy": "http://bg:s3cret@proxy.example:3128"}), environ={})
    egress = OrderEgress.of(accts["a1"].extra)
    assert egress.describe() == "source 203.0.113.7, proxy http://proxy.example:3128"
    assert "s3cret" not in repr(egress)
    assert OrderEgress.of({}).describe() == "default"


# --- the error mapping of every broker ---------------------------------------------------------------
def _paper_refusal(broker: str, ip: str) -> tuple[int, Any, str]:
    """The paper dialect's answer to an order from ``ip`` (status, parsed body, raw text)."""
    import json

    from paper import app

    dialect = next(m.DIALECT for m in app.DIALECT_MODULES if getattr(m, "DIALECT", None) and m.DIALECT.broker == broker)
    response = dialect.ip_refused(ip)
    text = bytes(response.body).decode()
    return response.status_code, json.loads(text), text


@pytest.mark.parametrize("broker", ["kite", "angel", "fyers", "shoonya"])
def test_each_broker_maps_its_ip_refusal_to_egress_refused_with_the_runbook(broker: str) -> None:
    # Given the paper dialect's refusal of an order from 198.51.100.4
    status, body, text = _paper_refusal(broker, "198.51.100.4")
    # When the broker's error map reads it
    error = broker_record(broker).errors.map_error(status, body, text)
    # Then it is EgressRefused: final (an OrderRejected, not retryable), naming the IP seen and the runbook
    assert isinstance(error, EgressRefused) and isinstance(error, OrderRejected) and not error.retryable
    assert error.seen_ip == "198.51.100.4" and error.http_status == status
    console = broker_record(broker).errors.IP_CONSOLE  # type: ignore[attr-defined]
    for needle in ("source IP 198.51.100.4", "register this host's static egress IP", console,
                   "extra.order_source_address", "extra.order_proxy"):
        assert needle in str(error)
    # and during a login the same words stay a login matter (the login is not an order request)
    assert not isinstance(broker_record(broker).errors.map_error(status, body, text, during_login=True), EgressRefused)


@pytest.mark.parametrize(("broker", "status", "body"), [
    # the one wording seen from Kite ("IP (<address>) is not allowed"), before a 403 could read as a token
    ("kite", 403, {"status": "error", "message": "IP (2402:3a80:1::5) is not allowed", "error_type": "InputException"}),
    ("kite", 403, {"status": "error", "message": "IP (2402:3a80:1::5) is not allowed", "error_type": "Other"}),
    ("angel", 200, {"status": False, "message": "Invalid static IP", "errorcode": "AB9999", "data": None}),
    ("angel", 403, "Request from unregistered IP 203.0.113.9"),  # not JSON
    ("fyers", 400, {"s": "error", "code": -50, "message": "IP address not whitelisted"}),
    ("shoonya", 200, {"stat": "Not_Ok", "emsg": "Rejected : IP 203.0.113.9 not registered"}),
])
def test_other_plausible_refusal_wordings_are_egress_refused(broker: str, status: int, body: Any) -> None:
    text = body if isinstance(body, str) else str(body)
    error = broker_record(broker).errors.map_error(status, None if isinstance(body, str) else body, text)
    assert isinstance(error, EgressRefused), error


@pytest.mark.parametrize(("broker", "status", "body", "kind"), [
    ("kite", 403, {"status": "error", "message": "Incorrect `api_key` or `access_token`.", "error_type": "TokenException"},
     TokenExpired),
    ("kite", 429, {"status": "error", "message": "Too many requests", "error_type": "NetworkException"}, RateLimited),
    ("kite", 400, {"status": "error", "message": "Invalid `tradingsymbol`.", "error_type": "InputException"}, OrderRejected),
    ("angel", 200, {"status": False, "message": "Invalid Token", "errorcode": "AG8001"}, TokenExpired),
    ("fyers", 400, {"s": "error", "code": -310, "message": "Invalid quantity"}, OrderRejected),
    ("shoonya", 200, {"stat": "Not_Ok", "emsg": "Invalid Input : Tip of the day"}, OrderRejected),
])
def test_ordinary_errors_are_not_egress_refusals(broker: str, status: int, body: Any, kind: type) -> None:
    error = broker_record(broker).errors.map_error(status, body, str(body))
    assert type(error) is kind, error


def test_the_seen_address_is_read_when_the_answer_has_one() -> None:
    assert seen_ip("IP (2402:3a80:1::5) is not allowed") == "2402:3a80:1::5"
    assert seen_ip("Request from unregistered IP 203.0.113.9.") == "203.0.113.9"
    assert seen_ip("IP is not whitelisted") == ""
    refused = refusal("X", "static IP mismatch", console="the console")
    assert refused is not None and refused.seen_ip == "" and "source IP," in str(refused)


# --- the order session: bound, proxied, and still deadline-aware --------------------------------------
def test_an_order_session_made_after_its_send_by_moment_sends_nothing(paper: PaperBroker) -> None:
    # Given a session bound to 127.0.0.2 with no connection yet, When a request is made past its moment
    session = new_session(base_url=paper.url, source_address=REGISTERED)
    with pytest.raises(BrokerUnavailable) as e, sending_by(time.monotonic() - 1):
        send(session, "GET", f"{paper.url}/orders")
    # Then it is "not sent" (no connection carried it) and the broker saw nothing
    assert e.value.reached is False
    assert [x for x in paper.requests() if x["path"] == "/orders"] == []
    # and within its moment it leaves from the bound address
    with sending_by(time.monotonic() + 5):
        send(session, "GET", f"{paper.url}/orders")
    (seen,) = [x for x in paper.requests() if x["path"] == "/orders"]
    assert seen["client"] == REGISTERED


def test_order_calls_go_through_the_order_proxy_and_reads_do_not(paper: PaperBroker, make_accounts) -> None:
    # Given a Kite account whose order calls go through a forward proxy
    with _forward_proxy() as proxy:
        accts = make_accounts(kite=1, angel=0, extra={"order_proxy": proxy.url})
        acct = accts["kite1"]
        logged_in(accts)
        adapter = broker_record("kite").rest(acct, _token_of(acct))
        # When it reads its books and places and cancels an order (a limit far from the price: it rests)
        from common.models import Order

        order = Order(account="kite1", **LIMIT_ORDER)  # type: ignore[arg-type]
        adapter.orders()
        adapter.positions()
        with sending_by(time.monotonic() + 5):  # the deadline-aware road holds through the proxy too
            order_id = adapter.place(order, None)
        adapter.cancel(order, order_id)
        # Then the proxy carried exactly the two order calls, and the reads went direct
        assert [(m, urlsplit(u).path) for m, u in proxy.seen] == [
            ("POST", "/orders/regular"), ("DELETE", f"/orders/regular/{order_id}")]
    paths = [(e["method"], e["path"], e["status"]) for e in paper.requests() if e["user_id"] == acct.user_id
             and e["endpoint_class"] != "login"]
    assert paths == [("GET", "/orders", 200), ("GET", "/portfolio/positions", 200), ("POST", "/orders/regular", 200),
                     ("DELETE", f"/orders/regular/{order_id}", 200)]


# --- end to end on Kite with real workers ---------------------------------------------------------------
@pytest.mark.slow
def test_orders_from_the_registered_source_address_go_through_and_reads_keep_the_default_route(
        make_accounts, celery_workers, paper: PaperBroker) -> None:
    # Given a paper user registered from 127.0.0.2, and its account sending orders from 127.0.0.2
    accts = make_accounts(kite=1, angel=0, extra={"order_source_address": REGISTERED})
    acct = _register(paper, accts["kite1"], REGISTERED)
    logged_in(accts)
    celery_workers.start([keys.urgent_queue("kite1"), keys.orders_queue("kite1")])
    # When it places and cancels an order, and its books are read
    h = place_order(account="kite1", **LIMIT_ORDER)
    assert h.wait(15)["state"] == "OPEN"
    cancel_order(h)
    assert h.wait(15, final=True)["state"] == "CANCELLED"
    adapter_for(acct).positions()
    adapter_for(acct).orders()
    # Then every order request came from 127.0.0.2 and was accepted; the book and positions from 127.0.0.1
    log = [e for e in paper.requests() if e["user_id"] == acct.user_id]
    orders = [e for e in log if e["endpoint_class"] == "orders"]
    assert [(e["method"], e["client"], e["status"]) for e in orders] == [
        ("POST", REGISTERED, 200), ("DELETE", REGISTERED, 200)]
    reads = [e for e in log if e["path"] in ("/orders", "/portfolio/positions")]
    assert {e["path"] for e in reads} == {"/orders", "/portfolio/positions"}
    assert {e["client"] for e in log if e["endpoint_class"] != "orders"} == {DEFAULT}
    assert paper.rule_rejections() == {}
    # and brokergate status shows the account's order egress
    assert gather(get_redis(), accts, ask_workers=False)["accounts"]["kite1"]["order_egress"] == f"source {REGISTERED}"


@pytest.mark.slow
@pytest.mark.trips_rules
def test_an_order_from_the_wrong_egress_is_rejected_clearly_after_one_request(
        make_accounts, celery_workers, paper: PaperBroker) -> None:
    # Given the same registration but an account with the default egress (127.0.0.1)
    accts = make_accounts(kite=1, angel=0)
    acct = _register(paper, accts["kite1"], REGISTERED)
    logged_in(accts)
    celery_workers.start([keys.urgent_queue("kite1"), keys.orders_queue("kite1")])
    # When it places an order
    h = place_order(account="kite1", **LIMIT_ORDER)
    got = h.wait(15)
    # Then the order ends REJECTED with the clear message: the IP the broker saw, and the runbook step
    assert got["state"] == "REJECTED", got
    for needle in (f"source IP {DEFAULT}", "developers.kite.trade", "order_source_address", "order_proxy"):
        assert needle in got["error"], got["error"]
    # and the broker saw exactly one order request (no retry, no re-login, no resend after a reconcile)
    wait_for(lambda: (get_redis().hget(keys.stats("kite1"), "egress_refused")) == "1", 5, what="the refusal counted")
    orders = [e for e in paper.requests() if e["user_id"] == acct.user_id and e["endpoint_class"] == "orders"]
    assert [(e["method"], e["client"], e["status"]) for e in orders] == [("POST", DEFAULT, 403)]
    assert [e for e in paper.requests() if e["endpoint_class"] == "login" and e["user_id"] == acct.user_id
            and e["arrival_ns"] > orders[0]["arrival_ns"]] == []
    assert paper.rule_rejections() == {"static_ip": 1}
    # and status shows the default egress and warns with the runbook step
    from common.health import evaluate

    snapshot = gather(get_redis(), accts, ask_workers=False)
    assert snapshot["accounts"]["kite1"]["order_egress"] == "default"
    assert any(p.component == "egress:kite1" for p in evaluate(snapshot).problems)


# --- helpers -------------------------------------------------------------------------------------------
def _register(paper: PaperBroker, acct: Any, ip: str) -> Any:
    """Register ``acct``'s paper user again, now with ``registered_ip`` (before it logs in)."""
    user = paper_user_of(acct)
    paper.add_user(**{**dataclasses.asdict(user), "registered_ip": ip})
    return acct


def _token_of(acct: Any) -> Any:
    from common.brokers.base import default_token_getter

    return default_token_getter(acct)


class _Proxy:
    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[str, str]] = []


class _ForwardHandler(BaseHTTPRequestHandler):
    """A plain-HTTP forward proxy: absolute-URI requests relayed to their host (loopback tests only)."""

    protocol_version = "HTTP/1.1"
    proxy: _Proxy

    def _relay(self) -> None:
        self.proxy.seen.append((self.command, self.path))
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        conn = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=5)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
        conn.request(self.command, url.path + (f"?{url.query}" if url.query else ""), body or None, headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_PUT = do_DELETE = _relay

    def log_message(self, *args: Any) -> None:  # quiet
        pass


@contextlib.contextmanager
def _forward_proxy() -> Iterator[_Proxy]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ForwardHandler)
    proxy = _Proxy(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = type("_H", (_ForwardHandler,), {"proxy": proxy})
    thread = threading.Thread(target=server.serve_forever, name="forward-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
