"""Login errors walk: every login refusal docs/brokers.md names, and every answer a login step
meets, maps through the broker's one ``map_error(..., during_login=True)`` to one type:
LoginFailed for refused credentials (retrying cannot help, and may lock the account),
BrokerUnavailable / RateLimited for what the login retries within its deadline.

Each row is checked twice: through the map itself, and through the broker's ``login()`` fed that
answer at its first step (no network: a session that answers every request with it)."""

from __future__ import annotations

import importlib
import json
import re
from typing import Any

import pytest
import requests

from common.errors import BrokerError, BrokerUnavailable, LoginFailed, RateLimited, TokenExpired
from common.settings import Account, parse_accounts
from tests.paths import BROKERS_MD

BROKERS_MD_TEXT = BROKERS_MD.read_text()
Row = tuple[int, Any, str, type[BrokerError]]  # status, JSON body (None: text), text, expected


def _kite(error_type: str, message: str = "m") -> dict[str, str]:
    return {"status": "error", "message": message, "error_type": error_type}


def _angel(code: str, message: str = "m") -> dict[str, Any]:
    return {"status": False, "message": message, "errorcode": code, "data": None}


def _fyers(code: int, message: str = "m") -> dict[str, Any]:
    return {"s": "error", "code": code, "message": message}


def _noren(emsg: str) -> dict[str, str]:
    return {"stat": "Not_Ok", "emsg": emsg}


HTML = "<html>bad gateway</html>"
KITE_TYPES = ["TokenException", "PermissionException", "UserException", "OrderException", "InputException",
              "MarginException", "HoldingException", "NetworkException", "DataException", "GeneralException"]  # fmt: skip

ROWS: dict[str, list[Row]] = {
    "kite": [
        (400, _kite("InputException", "Invalid `user_id` or `password`."), "", LoginFailed),
        (400, _kite("InputException", "Invalid TOTP. Please try again."), "", LoginFailed),
        (403, _kite("TokenException", "Invalid `checksum`."), "", LoginFailed),
        # any Kite refusal of a login step is final: the same credentials fail again
        *[(400, _kite(t), "", LoginFailed) for t in KITE_TYPES],
        *[(403, _kite(t), "", LoginFailed) for t in KITE_TYPES],
        (200, _kite("GeneralException"), "", LoginFailed),
        (404, {"detail": "not found"}, "", LoginFailed),
        (429, _kite("NetworkException", "Too many requests"), "", RateLimited),
        (429, None, "Too many requests", RateLimited),
        (500, _kite("GeneralException"), "", BrokerUnavailable),
        (500, _kite("InputException"), "", BrokerUnavailable),
        (502, None, HTML, BrokerUnavailable),
        (503, _kite("NetworkException"), "", BrokerUnavailable),
        (504, _kite("NetworkException", "timed out"), "", BrokerUnavailable),
        (200, None, HTML, BrokerUnavailable),
        (401, None, HTML, BrokerUnavailable),
    ],
    "angel": [
        (200, _angel("AB1007", "Invalid clientcode or password"), "", LoginFailed),
        (200, _angel("AB1050", "Invalid totp"), "", LoginFailed),
        (200, _angel("AG8004", "Invalid API Key"), "", LoginFailed),
        *[(401, {"success": False, "message": "Invalid Token", "errorCode": c, "data": ""}, "", LoginFailed)
          for c in ("AG8001", "AG8002", "AG8003")],
        (200, _angel(""), "", LoginFailed),
        (200, _angel("AB9999"), "", LoginFailed),
        # Angel's "try after sometime" codes: nothing was refused, log in again
        (200, _angel("AB1004", "Something Went Wrong, Please Try After Sometime"), "", BrokerUnavailable),
        (200, _angel("AB2000", "Error not specified"), "", BrokerUnavailable),
        # AB2001 "Internal Error, Please try after sometime" was LoginFailed before (login.py kept
        # its own list, with AB1012 "invalid product type" where AB2001 belonged).
        (200, _angel("AB2001", "Internal Error, Please try after sometime"), "", BrokerUnavailable),
        (200, _angel("AB1012", "Invalid Product Type"), "", LoginFailed),
        (403, None, "Access denied because of exceeding access rate", RateLimited),
        (500, _angel("AB1007"), "", BrokerUnavailable),
        (502, None, HTML, BrokerUnavailable),
        (503, None, HTML, BrokerUnavailable),
        (200, None, HTML, BrokerUnavailable),
    ],
    "fyers": [
        (400, _fyers(-1006, "Please provide a valid fyers id"), "", LoginFailed),
        (400, _fyers(-1007, "Invalid OTP"), "", LoginFailed),
        (400, _fyers(-1008, "Invalid PIN"), "", LoginFailed),
        (400, _fyers(-1019, "Invalid request key. Please login again"), "", LoginFailed),
        (401, _fyers(-16, "Could not authenticate the user"), "", LoginFailed),
        (400, _fyers(-352, "Please provide a valid appId"), "", LoginFailed),
        (400, _fyers(-371, "Please provide sha256 hash of appId and app secret"), "", LoginFailed),
        (400, _fyers(-374, "Please provide a valid authorization code"), "", LoginFailed),
        (200, _fyers(-99), "", LoginFailed),
        (404, {"detail": "not found"}, "", LoginFailed),
        (429, _fyers(-429, "request limit reached"), "", RateLimited),
        (200, _fyers(-353, "API limit exceeded"), "", RateLimited),
        (400, _fyers(-1, "Request limit reached"), "", RateLimited),
        (429, None, "Too many requests", RateLimited),
        (500, _fyers(-96, "an unexpected error occurred"), "", BrokerUnavailable),
        (502, None, HTML, BrokerUnavailable),
        (503, None, HTML, BrokerUnavailable),
        (200, None, HTML, BrokerUnavailable),
    ],
    "shoonya": [
        (200, _noren("Invalid Input : Wrong Password"), "", LoginFailed),
        (200, _noren("Invalid Input : Invalid OTP"), "", LoginFailed),
        (200, _noren("Invalid Input : Invalid Vendor Code"), "", LoginFailed),
        (200, _noren("Invalid Input : Invalid App Key"), "", LoginFailed),
        (200, _noren("Session Expired : Invalid Session Key"), "", LoginFailed),
        (200, _noren("Something Noren never said : x"), "", LoginFailed),
        (200, _noren("Server Timeout :  "), "", BrokerUnavailable),
        (200, _noren("Rate limit exceeded : too many requests"), "", RateLimited),
        (429, _noren("Rate limit exceeded : too many requests"), "", RateLimited),
        (429, None, HTML, RateLimited),
        (500, _noren("Something Noren never said : x"), "", BrokerUnavailable),
        (503, _noren("Service Unavailable : try after some time"), "", BrokerUnavailable),
        (500, None, HTML, BrokerUnavailable),
        # a bare 502 was Ambiguous before (login.py's own pre-check predated issue 15's 502);
        # a login places nothing, so it is retried like every other gateway error
        (502, None, HTML, BrokerUnavailable),
        (503, None, HTML, BrokerUnavailable),
        (200, None, HTML, BrokerUnavailable),
    ],
}
CASES = [(b, *row) for b, rows in ROWS.items() for row in rows]


def broker_module(broker: str, module: str) -> Any:
    return importlib.import_module(f"common.brokers.{broker}.{module}")


class OneAnswer(requests.Session):
    """A session that answers every request with the same response (and counts them)."""

    def __init__(self, status: int, body: Any, text: str) -> None:
        super().__init__()
        self.answer = requests.Response()
        self.answer.status_code = status
        self.answer._content = (json.dumps(body) if body is not None else text).encode()
        self.answer.headers["Content-Type"] = "application/json" if body is not None else "text/html"
        self.sent = 0

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kw: Any) -> requests.Response:
        self.sent += 1
        return self.answer


def _account(broker: str) -> Account:
    toml = (f'[accounts.a]\nbroker = "{broker}"\nuser_id = "U1"\napi_key = "APP1-100"\n'
            'password = "env:P"\ntotp_secret = "env:T"\napi_secret = "env:S"\n'
            'rest_url = "http://127.0.0.1:9"\nlogin_url = "http://127.0.0.1:9"\n')  # fmt: skip
    return parse_accounts(toml, environ={"P": "pw-1234", "T": "JBSWY3DPEHPK3PXP", "S": "sec-5678"})["a"]


def _id(case: tuple[Any, ...]) -> str:
    broker, status, body, _, expected = case
    what = body and (body.get("error_type") or body.get("errorcode") or body.get("errorCode")
                     or body.get("code") or body.get("emsg"))  # fmt: skip
    return f"{broker}-{status}-{what or 'page'}-{expected.__name__}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_every_login_answer_maps_to_one_type(case: tuple[Any, ...]) -> None:
    broker, status, body, text, expected = case
    # Given a login step answered with that
    errors = broker_module(broker, "errors")
    # When the broker's one map reads it during a login
    mapped = errors.map_error(status, body, text, during_login=True)
    # Then it is exactly the type the login acts on
    assert type(mapped) is expected, mapped
    if expected is RateLimited:
        assert mapped.retry_after_s > 0


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_the_login_flow_raises_what_the_map_says(case: tuple[Any, ...]) -> None:
    broker, status, body, text, expected = case
    session = OneAnswer(status, body, text)
    with pytest.raises(BrokerError) as caught:
        broker_module(broker, "login").login(_account(broker), session, totp_code=lambda secret: "123456")
    assert type(caught.value) is expected, caught.value
    assert session.sent == 1  # the first step failed, and nothing after it was sent
    assert str(caught.value).startswith(f"{broker} login"), str(caught.value)
    for secret in ("pw-1234", "JBSWY3DPEHPK3PXP", "sec-5678", "123456"):
        assert secret not in str(caught.value)


@pytest.mark.parametrize("broker", ["kite", "angel", "fyers", "shoonya"])
def test_a_refused_totp_is_named_in_the_message(broker: str) -> None:
    # (the one log line of a failed daily login says what to fix)
    refusal = {"kite": (400, _kite("InputException", "Invalid TOTP. Please try again.")),
               "angel": (200, _angel("AB1050", "Invalid totp")),
               "fyers": (400, _fyers(-1007, "Invalid OTP")),
               "shoonya": (200, _noren("Invalid Input : Invalid OTP"))}[broker]  # fmt: skip
    session = OneAnswer(*refusal, "")
    if broker == "fyers":  # the TOTP is the second vagator step: the first one passes
        first = OneAnswer(200, {"s": "ok", "code": 200, "request_key": "k1"}, "").answer
        answers = iter([first, session.answer])
        session.request = lambda *a, **kw: next(answers)  # type: ignore[method-assign]
    if broker == "kite":  # the same: /api/login passes, /api/twofa refuses
        first = OneAnswer(200, {"status": "success", "data": {"request_id": "r1"}}, "").answer
        answers = iter([first, session.answer])
        session.request = lambda *a, **kw: next(answers)  # type: ignore[method-assign]
    with pytest.raises(LoginFailed, match=r"(?i)totp"):
        broker_module(broker, "login").login(_account(broker), session, totp_code=lambda secret: "123456")


def test_every_error_code_in_brokers_md_is_walked() -> None:
    def section(start: str, end: str) -> str:
        return BROKERS_MD_TEXT.split(start)[1].split(end)[0]

    def walked(broker: str, *keys: str) -> set[Any]:
        return {r[1].get(k) for r in ROWS[broker] if isinstance(r[1], dict) for k in keys} - {None}

    kite = set(re.findall(r"\b([A-Z][a-z]+Exception)\b", section("## Zerodha", "## Angel")))
    assert kite and kite <= walked("kite", "error_type")
    angel = set(re.findall(r"\b(A[BG]\d{4})\b", section("## Angel One", "## Fyers")))
    assert angel and angel <= walked("angel", "errorcode", "errorCode")
    fyers = {int(c) for c in re.findall(r"error code (-\d+)", section("## Fyers", "## Finvasia"))}
    assert fyers and fyers <= walked("fyers", "code")


@pytest.mark.parametrize(("broker", "status", "body", "order_path"), [
    ("kite", 403, _kite("TokenException"), TokenExpired),
    ("angel", 401, {"success": False, "message": "Invalid Token", "errorCode": "AG8001", "data": ""}, TokenExpired),
    ("fyers", 401, _fyers(-16), TokenExpired),
    ("shoonya", 200, _noren("Session Expired : Invalid Session Key"), TokenExpired),
])  # fmt: skip
def test_one_map_serves_the_order_path_and_the_login(broker: str, status: int, body: Any, order_path: type) -> None:
    # A refused session is TokenExpired on the order path (log in again), and LoginFailed during
    # the login itself (logging in again is what just failed).
    errors = broker_module(broker, "errors")
    assert type(errors.map_error(status, body, "")) is order_path
    assert type(errors.map_error(status, body, "", during_login=True)) is LoginFailed
