"""The receiver fuzzed from its own OpenAPI schema (schemathesis): no 5xx, no response that
breaks the schema, valid data accepted, invalid data refused with a 4xx.

Half of the schema-valid bodies are re-signed for a real account, so the fuzzing reaches the
order store too (a random checksum alone would stop every case at the 401).
"""

from __future__ import annotations

import hashlib
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from common.brokers.kite.updates import postback_checksum
from feed.postback import create_app
from tests.updates.conftest import KITE_SECRET


class _SessionRedis:
    """The settings' Redis, looked up on every use: the `redis_url` fixture resets the shared
    clients between tests, and this app outlives a test."""

    def __getattr__(self, name: str) -> Any:
        from common.redis import get_redis

        return getattr(get_redis(), name)


def _app() -> Any:
    from common.settings import parse_accounts
    from tests.updates.conftest import ACCOUNTS_TOML, ENV

    return create_app(
        accounts=parse_accounts(ACCOUNTS_TOML, ENV),
        redis_client=_SessionRedis(),  # type: ignore[arg-type]
        reconcile_on_start=False,
        heartbeat=False,
    )


# Built at import, not with schemathesis.pytest.from_fixture: that loader reads
# `request.node._nodeid`, which pytest 9 no longer has.
# 413 is how the receiver rejects a schema-violating body that is also over its size cap
# (strings past maxLength can add up past 16 KiB): as much a rejection as a 400.
_CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422"]
            }
        }
    }
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app(), config=_CONFIG)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_receiver_conforms_to_its_schema(
    case: Any, redis_url: str, store: Any, reconciles: list[str]
) -> None:
    signed = False
    body = case.body
    if (
        case.path == "/postback/{account}"
        and case.meta is not None
        and case.meta.generation.mode.is_positive
        and isinstance(body, dict)
        and isinstance(body.get("order_id"), str)
        and isinstance(body.get("order_timestamp"), str)
        and hashlib.sha256(repr(sorted(body.items(), key=str)).encode()).digest()[0] % 2 == 0
    ):
        # Re-sign for the real account, so the case goes all the way to the order store.
        case.path_parameters = {"account": "kite1"}
        body["user_id"] = "AB1234"  # kite1's user: another user of the app would be routed or refused
        body["checksum"] = postback_checksum(body["order_id"], body["order_timestamp"], KITE_SECRET)
        signed = True
    response = case.call_and_validate()
    assert response.status_code < 500
    if signed:
        assert response.status_code == 200, response.text
