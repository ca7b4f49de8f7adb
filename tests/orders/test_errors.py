"""Error mapping walk: every error docs/brokers.md lists, and the transport failures, map to one type."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from common.brokers.angel import errors as angel
from common.brokers.base import new_session, send
from common.brokers.kite import errors as kite
from common.errors import (
    Ambiguous,
    BrokerUnavailable,
    LoginFailed,
    OrderRejected,
    RateLimited,
    TokenExpired,
)
from tests.paths import BROKERS_MD

BROKERS_MD = BROKERS_MD.read_text()


def _kite(status: int, error_type: str, message: str = "m") -> object:
    return kite.map_error(status, {"status": "error", "message": message, "error_type": error_type})


def test_every_kite_error_type_in_brokers_md_is_mapped() -> None:
    section = BROKERS_MD.split("## Zerodha")[1].split("## Angel")[0]
    listed = set(re.findall(r"\b([A-Z][a-z]+Exception)\b", section))
    assert {"TokenException", "InputException", "NetworkException", "GeneralException"} <= listed
    assert listed <= set(kite.ERROR_TYPES), f"unmapped: {listed - set(kite.ERROR_TYPES)}"


@pytest.mark.parametrize(("status", "error_type", "expected"), [
    (403, "TokenException", TokenExpired),
    (400, "InputException", OrderRejected),
    (400, "OrderException", OrderRejected),
    (400, "MarginException", OrderRejected),
    (400, "HoldingException", OrderRejected),
    (403, "UserException", OrderRejected),
    (504, "NetworkException", Ambiguous),  # "order request timed out": may have been placed
    (503, "NetworkException", BrokerUnavailable),  # the OMS could not be reached
    (502, "DataException", Ambiguous),
    (500, "GeneralException", Ambiguous),
])
def test_kite_error_types(status: int, error_type: str, expected: type) -> None:
    assert type(_kite(status, error_type)) is expected


def test_kite_429_is_rate_limited_and_bare_gateway_errors() -> None:
    body = {"status": "error", "message": "Too many requests", "error_type": "NetworkException"}
    assert isinstance(kite.map_error(429, body), RateLimited)
    # A proxy's bare 502 may come after it forwarded the order (issue 15, item 14): reconcile.
    assert isinstance(kite.map_error(502, None, "<html>bad gateway</html>"), Ambiguous)
    assert isinstance(kite.map_error(503, None, "<html>service unavailable</html>"), BrokerUnavailable)
    assert isinstance(kite.map_error(504, None, "gateway timeout"), Ambiguous)
    assert isinstance(kite.map_error(200, None, "not json"), Ambiguous)


def test_every_angel_code_in_brokers_md_is_mapped() -> None:
    section = BROKERS_MD.split("## Angel One")[1].split("## Fyers")[0]
    codes = set(re.findall(r"\b(A[BG]\d{4})\b", section))
    assert {"AG8001", "AG8002", "AG8003", "AB1004"} <= codes
    mapped = set(angel.ERROR_CODES)
    # AB00..AB05 are order-update statuses, not errors
    assert {c for c in codes if len(c) == 6} <= mapped


@pytest.mark.parametrize("code", ["AG8001", "AG8002", "AG8003"])
def test_angel_token_codes(code: str) -> None:
    e = angel.map_error(401, {"success": False, "message": "Invalid Token", "errorCode": code, "data": ""})
    assert isinstance(e, TokenExpired) and e.code == code


def test_angel_rate_limit_is_a_plain_text_403() -> None:
    assert isinstance(angel.map_error(403, None, "Access denied because of exceeding access rate"), RateLimited)
    assert not isinstance(angel.map_error(403, None, "Forbidden"), RateLimited)


def test_angel_codes_by_kind() -> None:
    def m(code: str, status: int = 200) -> object:
        return angel.map_error(status, {"status": False, "message": "x", "errorcode": code, "data": None})

    assert isinstance(m("AB1009"), OrderRejected)
    assert isinstance(m("AB4008"), OrderRejected)
    assert isinstance(m("AB1050"), LoginFailed)
    assert isinstance(m("AB1004"), Ambiguous)  # "something went wrong" from the OMS: reconcile
    assert isinstance(m("AB1004", 503), BrokerUnavailable)  # the gateway refused before the OMS
    assert isinstance(m("AB9999"), OrderRejected)  # an unknown refusal is still a refusal
    for code, kind in angel.ERROR_CODES.items():
        assert isinstance(m(code), kind)


# --- transport failures --------------------------------------------------------------------------


def _serve(behaviour: str) -> Iterator[str]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    stop = threading.Event()

    def run() -> None:
        srv.settimeout(0.2)
        conns = []
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.recv(65536)  # the request has arrived
            if behaviour == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()
            else:
                conns.append(conn)  # never answer
        for c in conns:
            c.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}/orders/regular"
    stop.set()
    t.join(2)
    srv.close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    yield from _serve("silent")


@pytest.fixture
def resetting_server() -> Iterator[str]:
    yield from _serve("reset")


def test_connect_refused_is_unavailable() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(BrokerUnavailable):
        send(new_session(), "POST", f"http://127.0.0.1:{port}/orders/regular", data={"a": "1"})


def test_read_timeout_after_send_is_ambiguous(silent_server: str) -> None:
    with pytest.raises(Ambiguous):
        send(new_session(), "POST", silent_server, data={"a": "1"}, read_timeout_s=0.3)


def test_reset_after_send_is_ambiguous(resetting_server: str) -> None:
    with pytest.raises(Ambiguous):
        send(new_session(), "POST", resetting_server, data={"a": "1"})


def test_the_session_never_retries_by_itself(resetting_server: str) -> None:
    # A silent urllib3 retry of an order POST would be a duplicate order.
    adapter = new_session().get_adapter(resetting_server)
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    assert adapter.max_retries.total == 0
