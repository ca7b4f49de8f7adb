"""The helpers every broker package shares: payload readers, the order-book reader, one-off
requests (login steps, instrument files) and the login steps."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from common.brokers import orderbook
from common.brokers.base import get_file, json_or_none, request_once, session_or_new
from common.brokers.loginflow import required, totp_now
from common.brokers.payload import (
    DEFAULT_TICK,
    amount,
    day_and_carried,
    fill_price,
    lot_size,
    text,
    tick_size,
)
from common.errors import BrokerUnavailable, LoginFailed, TokenExpired
from common.models import OrderState, OrderUpdate


@pytest.mark.parametrize("raw, per_rupee, want", [
    ("0.05", 1, Decimal("0.05")), (" 0.0500 ", 1, Decimal("0.05")), (1, 1, Decimal("1")),
    ("5.000000", 100, Decimal("0.05")), (5.0, 100, Decimal("0.05")), ("1", 100, Decimal("0.01")),
])  # fmt: skip
def test_tick_size_in_rupees(raw: Any, per_rupee: int, want: Decimal) -> None:
    got = tick_size(raw, per_rupee)
    assert got == want and str(got) == str(want)


@pytest.mark.parametrize("raw", [None, "", " ", "0", "0.0", "-0.05", "abc", "NaN", "Infinity"])
def test_tick_size_defaults_when_unusable(raw: Any) -> None:
    assert tick_size(raw) == DEFAULT_TICK
    assert tick_size(raw, per_rupee=100) == DEFAULT_TICK


@pytest.mark.parametrize("raw, want", [
    ("75", 75), (" 75 ", 75), ("75.0", 75), (50, 50), (25.0, 25), (None, 1), ("", 1), ("x", 1), ("0", 1), ("NaN", 1),
])  # fmt: skip
def test_lot_size(raw: Any, want: int) -> None:
    assert lot_size(raw) == want


def test_fill_price_is_none_before_a_fill() -> None:
    assert fill_price(0, 0) is None
    assert fill_price("0.0", 0) is None
    assert fill_price(None, 3) is None
    assert fill_price(109.4, 1) == Decimal("109.4")
    assert fill_price("0", 2) == Decimal("0")  # a fill at zero is said, not guessed away


def test_text() -> None:
    assert text(None) == "" and text(0) == "0" and text("a") == "a"


def test_amount_is_exact_and_zero_when_unreadable() -> None:
    assert amount(109.4) == Decimal("109.4") and str(amount("0.00")) == "0.00" and amount(-2) == Decimal(-2)
    assert [amount(v) for v in (None, "", "x", True, "NaN", float("inf"))] == [Decimal(0)] * 6


def test_day_and_carried_quantities() -> None:
    assert day_and_carried(day_buy=5, day_sell=2, carried_buy=10, carried_sell=4) == {
        "buy_quantity": 15, "sell_quantity": 6, "day_buy_quantity": 5, "day_sell_quantity": 2,
        "overnight_quantity": 6}  # fmt: skip


def _known(account: str, row: dict[str, Any], source: str) -> OrderUpdate | None:
    if row.get("st") != "ok":
        return None
    return OrderUpdate(account=account, client_order_id=str(row.get("tag") or ""), broker_order_id=str(row["id"]),
                       state=OrderState.OPEN, source=source)  # fmt: skip


def test_book_rows_known_unknown_tagged_and_untagged() -> None:
    rows = [{"st": "ok", "id": 1, "tag": "a"}, {"st": "weird", "id": 2, "tag": "b", "status": "", "alt": "W"},
            {"st": "weird", "id": 3}, "not a row", {"st": "ok", "id": 4}]  # fmt: skip
    got = orderbook.book_to_updates("acct", rows, "reconcile", to_update=_known,
                                    tag_of=lambda r: str(r.get("tag") or ""), order_id_key="id",
                                    status_keys=("status", "alt"))  # fmt: skip
    assert [(u.broker_order_id, u.client_order_id, u.state, u.broker_status) for u in got] == [
        ("1", "a", OrderState.OPEN, ""), ("2", "b", OrderState.UNKNOWN, "W"), ("4", "", OrderState.OPEN, ""),
    ]  # fmt: skip
    assert all(u.account == "acct" and u.source == "reconcile" for u in got)
    for empty in (None, {}, "x"):
        assert orderbook.book_to_updates("acct", empty, "s", to_update=_known, tag_of=str, order_id_key="id") == []


class _Session:
    def __init__(self, status: int = 200, exc: BaseException | None = None) -> None:
        self.status, self.exc, self.calls, self.closed = status, exc, [], False

    def request(self, method: str, url: str, **kw: Any) -> Any:
        self.calls.append((method, url, kw))
        if self.exc is not None:
            raise self.exc
        return SimpleNamespace(status_code=self.status, content=b"x")

    def close(self) -> None:
        self.closed = True


def test_one_off_request_transport_failure_is_unavailable_without_details() -> None:
    s = _Session(exc=requests.ConnectionError("secret-host?token=abc"))
    with pytest.raises(BrokerUnavailable) as e:
        request_once(s, "POST", "https://h/x?token=abc", "x login: pin", timeout=(1, 2))  # type: ignore[arg-type]
    assert str(e.value).startswith("x login: pin: ConnectionError") and "abc" not in str(e.value)
    assert s.calls[0][2]["timeout"] == (1, 2)


def test_get_file_status_mapping() -> None:
    assert get_file(_Session(), "u", "f", timeout=1).content == b"x"  # type: ignore[arg-type]
    with pytest.raises(BrokerUnavailable) as e:
        get_file(_Session(503), "u", "f", timeout=1)  # type: ignore[arg-type]
    assert e.value.http_status == 503 and "f: HTTP 503" in str(e.value)
    with pytest.raises(BrokerUnavailable):
        get_file(_Session(403), "u", "f", timeout=1)  # type: ignore[arg-type]
    with pytest.raises(TokenExpired) as t:
        get_file(_Session(403), "u", "f", timeout=1, token_refused=403)  # type: ignore[arg-type]
    assert t.value.http_status == 403


def test_session_or_new_closes_only_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    given = _Session()
    with session_or_new(given) as s:  # type: ignore[arg-type]
        assert s is given
    assert not given.closed
    made = _Session()
    monkeypatch.setattr(requests, "Session", lambda: made)
    with pytest.raises(RuntimeError), session_or_new(None) as s:
        assert s is made
        raise RuntimeError
    assert made.closed


def test_json_or_none() -> None:
    def bad() -> Any:
        raise ValueError

    assert json_or_none(SimpleNamespace(json=lambda: {"a": 1})) == {"a": 1}  # type: ignore[arg-type]
    assert json_or_none(SimpleNamespace(json=bad)) is None  # type: ignore[arg-type]


def test_login_steps() -> None:
    account = SimpleNamespace(totp_secret=SimpleNamespace(get=lambda: "S"))
    assert totp_now(account, lambda secret: f"{secret}123", "x login") == "S123"  # type: ignore[arg-type]

    def bad(_secret: str) -> str:
        raise ValueError("not base32")

    with pytest.raises(LoginFailed, match=r"^x login: totp: not base32$"):
        totp_now(account, bad, "x login")  # type: ignore[arg-type]
    assert required({"k": 5}, "k", "x login: pin") == "5"
    for data in ({}, {"k": ""}, {"k": None}):
        with pytest.raises(LoginFailed, match=r"^x login: pin: no k in the answer$"):
            required(data, "k", "x login: pin")
