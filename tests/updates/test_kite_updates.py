"""Kite payload -> OrderUpdate, the postback's validation and checksum: pure, no I/O."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.brokers import broker
from common.brokers.kite import updates as kite
from common.models import OrderState
from tests.paths import KITE_FIXTURES

FIXTURES = KITE_FIXTURES
SECRET = "s3cret-api-secret"


def fixture_postback() -> dict[str, Any]:
    return json.loads((FIXTURES / "postback.json").read_text())  # type: ignore[no-any-return]


def signed(body: dict[str, Any], secret: str = SECRET) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["checksum"] = kite.postback_checksum(body["order_id"], body["order_timestamp"], secret)
    return body


def test_reached_through_the_broker_registry() -> None:
    assert broker("kite").updates is kite


def test_checksum_is_sha256_of_order_id_timestamp_and_secret() -> None:
    # Given the fixture's order and our own secret (the fixture was signed with an unknown one)
    body = signed(fixture_postback())
    import hashlib

    expected = hashlib.sha256(b"220303000308932" + b"2022-03-03 09:24:25" + SECRET.encode()).hexdigest()
    assert body["checksum"] == expected
    assert kite.verify_postback(body, SECRET)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b.update(order_id="220303000308933"),
        lambda b: b.update(order_timestamp="2022-03-03 09:24:26"),
        lambda b: b.update(checksum="0" * 64),
        lambda b: b.pop("checksum"),
        lambda b: b.update(checksum=None),
        lambda b: b.update(order_id=123),
    ],
)
def test_a_tampered_postback_does_not_verify(tamper: Any) -> None:
    body = signed(fixture_postback())
    tamper(body)
    assert not kite.verify_postback(body, SECRET)


def test_wrong_or_empty_secret_does_not_verify() -> None:
    body = signed(fixture_postback())
    assert not kite.verify_postback(body, "another-secret")
    assert not kite.verify_postback(signed(fixture_postback(), ""), "")


def test_upper_case_hex_checksum_verifies() -> None:
    body = signed(fixture_postback())
    body["checksum"] = body["checksum"].upper()
    assert kite.verify_postback(body, SECRET)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["order_id", "order_timestamp", "checksum", "x"]),
        st.one_of(st.none(), st.text(), st.integers()),
    )
)
def test_verify_never_raises(body: dict[str, Any]) -> None:
    assert kite.verify_postback(body, SECRET) in (True, False)


def test_fixture_postback_normalizes_exactly() -> None:
    # Given the golden postback with a tag
    body = fixture_postback()
    body["tag"] = "abc123"
    # When it is normalized
    u = kite.parse_message("kite1", body, "postback")
    # Then every field is exact
    assert u is not None
    assert (u.account, u.client_order_id, u.broker_order_id) == ("kite1", "abc123", "220303000308932")
    assert u.state is OrderState.COMPLETE
    assert (u.filled_quantity, u.pending_quantity) == (1, 0)
    assert u.average_price == Decimal("470") and isinstance(u.average_price, Decimal)
    assert u.exchange_ts == "2022-03-03 09:24:25"
    assert u.source == "postback" and u.broker_status == "COMPLETE"


def test_float_prices_stay_exact() -> None:
    body = fixture_postback() | {"average_price": 109.4, "tag": "t1"}
    u = kite.parse_message("k", body, "postback")
    assert u is not None and u.average_price == Decimal("109.4") and str(u.average_price) == "109.4"
    body = fixture_postback() | {"average_price": 0.05 * 3, "tag": "t1"}  # 0.15000000000000002 as a float
    u = kite.parse_message("k", body, "postback")
    assert u is not None and u.average_price == Decimal(repr(0.05 * 3))


def test_no_fill_means_no_price() -> None:
    body = fixture_postback() | {"status": "OPEN", "average_price": 0, "filled_quantity": 0, "tag": "t"}
    u = kite.parse_message("k", body, "socket")
    assert u is not None and u.average_price is None and u.state is OrderState.OPEN


def test_tags_list_is_used_when_tag_is_empty() -> None:
    body = fixture_postback() | {"tag": None, "tags": ["fromlist"]}
    u = kite.parse_message("k", body, "postback")
    assert u is not None and u.client_order_id == "fromlist"


def test_ticker_order_message_is_unwrapped_and_others_ignored() -> None:
    data = fixture_postback() | {"tag": "x1"}
    u = kite.parse_message("k", {"type": "order", "data": data}, "socket")
    assert u is not None and u.broker_order_id == "220303000308932" and u.source == "socket"
    assert kite.parse_message("k", {"type": "error", "data": "token expired"}, "socket") is None
    assert kite.parse_message("k", {"type": "message", "data": "hello"}, "socket") is None
    assert kite.parse_message("k", {"type": "order", "data": "nope"}, "socket") is None


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("OPEN", OrderState.OPEN),
        ("COMPLETE", OrderState.COMPLETE),
        ("CANCELLED", OrderState.CANCELLED),
        ("CANCEL", OrderState.CANCELLED),
        ("REJECTED", OrderState.REJECTED),
        ("TRIGGER PENDING", OrderState.OPEN),
        ("UPDATE", OrderState.OPEN),
        ("OPEN PENDING", OrderState.OPEN),
        ("MODIFY PENDING", OrderState.OPEN),
        ("PUT ORDER REQ RECEIVED", OrderState.OPEN),
        ("VALIDATION PENDING", OrderState.OPEN),
        ("AMO REQ RECEIVED", OrderState.OPEN),
        ("cancel pending", OrderState.OPEN),
        ("  trigger   pending ", OrderState.OPEN),
        ("SOMETHING NEW", None),
        ("", None),
    ],
)
def test_status_mapping(status: str, state: OrderState | None) -> None:
    assert kite.status_to_state(status) is state


def test_unknown_status_is_ignored_not_guessed() -> None:
    assert kite.parse_message("k", fixture_postback() | {"status": "WEIRD"}, "postback") is None


def test_transient_statuses_never_outrank_a_terminal_state() -> None:
    from common.orderstate import RANK

    for status in (
        "OPEN PENDING",
        "MODIFY PENDING",
        "PUT ORDER REQ RECEIVED",
        "VALIDATION PENDING",
        "UPDATE",
    ):
        state = kite.status_to_state(status)
        assert state is not None
        assert all(
            RANK[state] < RANK[t] for t in (OrderState.COMPLETE, OrderState.CANCELLED, OrderState.REJECTED)
        )


def test_fixture_postback_is_valid() -> None:
    assert kite.validate_postback(fixture_postback())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"order_id": 220303000308932}, "order_id"),
        ({"order_id": ""}, "order_id"),
        ({"status": None}, "status"),
        ({"filled_quantity": "1"}, "filled_quantity"),
        ({"filled_quantity": True}, "filled_quantity"),
        ({"filled_quantity": -1}, "filled_quantity"),
        ({"filled_quantity": 1.5}, "filled_quantity"),
        ({"average_price": "470"}, "average_price"),
        ({"average_price": float("inf")}, "average_price"),
        ({"checksum": "xyz"}, "checksum"),
        ({"checksum": "g" * 64}, "checksum"),
        ({"tag": 5}, "tag"),
        ({"tag": "\ud800"}, "tag"),
        ({"tags": [1]}, "tags"),
        ({"order_id": "9" * 65}, "order_id"),
        ({"quantity": 10**16}, "quantity"),
    ],
)
def test_validation_names_the_field(change: dict[str, Any], field: str) -> None:
    body = fixture_postback() | change
    with pytest.raises(kite.InvalidPostback) as e:
        kite.validate_postback(body)
    assert e.value.field == field and field in str(e.value)


@pytest.mark.parametrize("missing", ["order_id", "order_timestamp", "status", "checksum"])
def test_required_fields(missing: str) -> None:
    body = fixture_postback()
    del body[missing]
    with pytest.raises(kite.InvalidPostback, match=missing):
        kite.validate_postback(body)


def test_unknown_fields_are_allowed_and_integral_floats_are_integers() -> None:
    assert kite.validate_postback(fixture_postback() | {"new_field": [1, 2], "quantity": 1.0})


def test_schema_and_validator_agree_on_required_fields() -> None:
    assert set(kite.POSTBACK_SCHEMA["required"]) == {"order_id", "order_timestamp", "status", "checksum"}
    assert kite.validate_postback(kite.POSTBACK_EXAMPLE)
