"""The postback receiver over HTTP (ASGI transport), with real Redis and the real order store.

Given a Kite account whose api_secret we know, When postbacks arrive, Then: a good one is
applied and published on orders:<account>; a bad checksum or an unknown account is 401;
malformed is 400; oversized is 413; a replay changes nothing; a late, older update never
moves an order backwards.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis as redis_lib

from common import keys
from common.settings import Account
from feed.postback import MAX_BODY_BYTES, create_app
from tests.updates.conftest import new_order
from tests.updates.payloads import postback


class Client:
    """A synchronous face on httpx's ASGI transport (the app runs in this test's event loop)."""

    def __init__(self, app: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.app = app
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver")

    def post(
        self, path: str, body: Any = None, content: bytes | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        if content is None:
            content = json.dumps(body).encode()
        return self.loop.run_until_complete(self.http.post(path, content=content, headers=headers or {}))

    def get(self, path: str) -> httpx.Response:
        return self.loop.run_until_complete(self.http.get(path))

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()


@pytest.fixture
def client(
    test_accounts: dict[str, Account], r: redis_lib.Redis, store: Any, reconciles: list[str]
) -> Iterator[Client]:
    app = create_app(accounts=test_accounts, redis_client=r, reconcile_on_start=False, heartbeat=False)
    c = Client(app)
    yield c
    c.close()


def test_a_good_postback_is_applied_and_published(
    client: Client, r: redis_lib.Redis, store: Any, channel: Any
) -> None:
    # Given an order the client created, and a subscriber
    oid = new_order(r, "kite1")
    ch = channel("kite1")
    # When its COMPLETE postback arrives
    resp = client.post("/postback/kite1", postback(oid))
    # Then it is accepted, stored and published, with the exact fill price
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "accepted", "applied": True, "state": "COMPLETE"}
    msg = ch.next()
    assert (msg["client_order_id"], msg["state"], msg["average_price"], msg["source"]) == (
        oid,
        "COMPLETE",
        "470",
        "postback",
    )
    assert store.get(r, oid)["state"] == "COMPLETE"


def test_bad_checksum_and_unknown_account_are_the_same_401(
    client: Client, r: redis_lib.Redis, store: Any
) -> None:
    oid = new_order(r, "kite1")
    bad = client.post("/postback/kite1", postback(oid, secret="not-the-secret"))
    unknown = client.post("/postback/nobody", postback(oid))
    angel = client.post("/postback/angel1", postback(oid))  # Angel postbacks are unsigned: refused
    assert bad.status_code == unknown.status_code == angel.status_code == 401
    assert bad.json() == unknown.json() == angel.json()
    assert store.get(r, oid)["state"] == "NEW"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "empty"),
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"a string"', "JSON object"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"order_id": NaN}', "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
        (b'{"order_id": 1' + b"0" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_malformed_bodies_are_400(client: Client, content: bytes, needle: str) -> None:
    resp = client.post("/postback/kite1", content=content, headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert needle in resp.json()["message"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"order_id": 5}, "order_id"),
        ({"filled_quantity": "1"}, "filled_quantity"),
        ({"average_price": "470.5"}, "average_price"),
        ({"checksum": "abc"}, "checksum"),
        ({"tag": ["x"]}, "tag"),
    ],
)
def test_wrong_types_are_400_naming_the_field(client: Client, change: dict[str, Any], field: str) -> None:
    body = postback("t1") | change
    resp = client.post("/postback/kite1", body)
    assert resp.status_code == 400 and field in resp.json()["message"]


def test_validation_comes_before_authentication(client: Client) -> None:
    # A malformed body for an unknown account is 400, exactly as for a known one: no account oracle.
    a = client.post("/postback/nobody", {"x": 1})
    b = client.post("/postback/kite1", {"x": 1})
    assert a.status_code == b.status_code == 400 and a.json() == b.json()


def test_oversized_bodies_are_413(client: Client) -> None:
    body = postback("t1", status_message="x" * (MAX_BODY_BYTES + 1))
    declared = client.post("/postback/kite1", body)
    assert declared.status_code == 413

    async def chunks() -> Any:  # no Content-Length at all: chunked, counted as it arrives
        for _ in range(40):
            yield b" " * 1024

    resp = client.loop.run_until_complete(client.http.post("/postback/kite1", content=chunks()))
    assert resp.status_code == 413


def test_a_replay_changes_nothing(client: Client, r: redis_lib.Redis, store: Any, channel: Any) -> None:
    # Given an order that was filled by a postback
    oid, marker = new_order(r, "kite1"), new_order(r, "kite1")
    ch = channel("kite1")
    body = postback(oid)
    assert client.post("/postback/kite1", body).json()["status"] == "accepted"
    assert ch.next()["client_order_id"] == oid
    before = store.get(r, oid)
    # When the same postback comes again (also re-serialized with other key order and spacing)
    again = client.post("/postback/kite1", body)
    reordered = client.post(
        "/postback/kite1", content=json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
    )
    # Then it is answered 200 but nothing changes and nothing is published
    assert again.status_code == reordered.status_code == 200
    assert again.json()["status"] == reordered.json()["status"] == "duplicate"
    assert store.get(r, oid) == before
    client.post("/postback/kite1", postback(marker, order_id="999"))
    assert ch.next()["client_order_id"] == marker  # the next message is the marker, not a replay


def test_reordered_updates_never_regress(
    client: Client, r: redis_lib.Redis, store: Any, channel: Any
) -> None:
    # Given an order whose COMPLETE postback arrived first
    oid, marker = new_order(r, "kite1", quantity=10), new_order(r, "kite1")
    ch = channel("kite1")
    done = postback(
        oid, "COMPLETE", quantity=10, filled_quantity=10, pending_quantity=0, average_price=470.05
    )
    assert client.post("/postback/kite1", done).json()["applied"] is True
    assert ch.next()["state"] == "COMPLETE"
    # When the older OPEN and partial-fill UPDATE postbacks arrive late
    late_open = postback(
        oid,
        "OPEN",
        quantity=10,
        filled_quantity=0,
        pending_quantity=10,
        average_price=0,
        exchange_update_timestamp="2022-03-03 09:24:20",
    )
    late_part = postback(
        oid,
        "UPDATE",
        quantity=10,
        filled_quantity=4,
        pending_quantity=6,
        average_price=470,
        exchange_update_timestamp="2022-03-03 09:24:22",
    )
    for late in (late_open, late_part):
        resp = client.post("/postback/kite1", late)
        # Then they are accepted (the broker did send them) but change nothing
        assert resp.status_code == 200 and resp.json()["applied"] is False
    stored = store.get(r, oid)
    assert (
        stored["state"] == "COMPLETE"
        and stored["filled_quantity"] == 10
        and stored["average_price"] == "470.05"
    )
    client.post("/postback/kite1", postback(marker, order_id="999"))
    assert ch.next()["client_order_id"] == marker


def test_partial_fill_then_complete_moves_forward(
    client: Client, r: redis_lib.Redis, store: Any, channel: Any
) -> None:
    oid = new_order(r, "kite1", quantity=10)
    ch = channel("kite1")
    part = postback(
        oid,
        "UPDATE",
        quantity=10,
        filled_quantity=4,
        pending_quantity=6,
        average_price=470.1,
        exchange_update_timestamp="2022-03-03 09:24:22",
    )
    client.post("/postback/kite1", part)
    m1 = ch.next()
    assert (m1["state"], m1["filled_quantity"], m1["average_price"]) == ("OPEN", 4, "470.1")
    client.post(
        "/postback/kite1",
        postback(oid, "COMPLETE", quantity=10, filled_quantity=10, pending_quantity=0, average_price=470.2),
    )
    m2 = ch.next()
    assert (m2["state"], m2["filled_quantity"], m2["average_price"]) == ("COMPLETE", 10, "470.2")


def test_health_and_heartbeat(
    test_accounts: dict[str, Account], r: redis_lib.Redis, store: Any, reconciles: list[str]
) -> None:
    # Given a receiver with its heartbeat and its start-up reconcile on
    app = create_app(accounts=test_accounts, redis_client=r, reconcile_on_start=True, heartbeat=True)

    async def run() -> tuple[int, dict[str, Any]]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://x") as c,
        ):
            await c.post("/postback/kite1", json=postback(new_order(r, "kite1")))
            await c.post("/postback/kite1", json={"bad": 1})
            h = await c.get("/healthz")
        return h.status_code, h.json()

    status, health = asyncio.run(run())
    # Then health is ok, the heartbeat hash counts both answers and expires by itself
    assert status == 200 and health["status"] == "ok" and health["redis"] is True
    hb = r.hgetall(keys.RECEIVER_HEARTBEAT)
    assert (
        hb["accepted"] == "1"
        and hb["refused"] == "1"
        and int(hb["last_postback_ms"]) > 0
        and int(hb["started"]) > 0
    )
    assert 0 < r.ttl(keys.RECEIVER_HEARTBEAT) <= 15
    # And a receiver that starts asks for a reconcile of every postback account (a restart is a gap)
    assert sorted(reconciles) == ["kite1", "kite2"]


def test_a_postback_for_another_user_of_the_same_app_goes_to_that_account(
    client: Client, r: redis_lib.Redis, store: Any, channel: Any
) -> None:
    # Given two accounts of one Kite app (one secret, one postback URL: kite1's)
    oid = new_order(r, "kite2")
    ch = channel("kite2")
    # When kite2's update arrives at kite1's URL
    resp = client.post("/postback/kite1", postback(oid, user_id="CD5678"))
    # Then it is applied to kite2's order and published on kite2's channel
    assert resp.status_code == 200 and resp.json()["applied"] is True
    assert ch.next()["account"] == "kite2"
    # And a user no account of this app has is refused, not applied to kite1
    assert client.post("/postback/kite1", postback(oid, user_id="ZZ0000")).status_code == 401


def test_openapi_describes_the_body(client: Client) -> None:
    doc = client.get("/openapi.json").json()
    op = doc["paths"]["/postback/{account}"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) >= {"order_id", "order_timestamp", "status", "checksum"}
    assert set(op["responses"]) >= {"200", "400", "401", "413"}
    assert "/healthz" in doc["paths"]


def test_redis_down_is_503_not_applied(test_accounts: dict[str, Account], reconciles: list[str]) -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    dead = redis_lib.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    c = Client(
        create_app(accounts=test_accounts, redis_client=dead, reconcile_on_start=False, heartbeat=False)
    )
    try:
        resp = c.post("/postback/kite1", postback("t1"))
        assert resp.status_code == 503 and resp.json()["status"] == "error"
        assert c.get("/healthz").status_code == 503
    finally:
        c.close()


def test_body_is_not_mutated_by_reading(client: Client) -> None:
    body = postback("t1")
    snapshot = copy.deepcopy(body)
    client.post("/postback/kite1", body)
    assert body == snapshot
