"""The postback receiver's OpenAPI 3.1 document (``GET /openapi.json``).

The body schema and example come from the brokers' updates modules; the rest describes
:mod:`feed.postback`'s answers.
"""

from __future__ import annotations

import copy
from typing import Any

from feed.postback_input import MAX_BODY_BYTES, postback_modules

__all__ = ["openapi_schema"]

_ERROR = {"$ref": "#/components/schemas/Error"}


def _resp(desc: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


def _postback_path(body: dict[str, Any], example: Any) -> dict[str, Any]:
    return {
        "post": {
            "operationId": "postback",
            "summary": "Receive one broker postback (order update) for an account",
            "parameters": [
                {
                    "name": "account",
                    "in": "path",
                    "required": True,
                    "description": "The account's name in the accounts file",
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body, "example": example}},
            },
            "responses": {
                "200": _resp(
                    "Accepted, or a duplicate of one already accepted",
                    {"$ref": "#/components/schemas/Accepted"},
                ),
                "400": _resp("Not a postback: the message names the field", _ERROR),
                "401": _resp("Unknown account, or the checksum does not match", _ERROR),
                "413": _resp(f"Body larger than {MAX_BODY_BYTES} bytes", _ERROR),
                "503": _resp("Redis is unreachable: nothing was applied; send again", _ERROR),
            },
        }
    }


_HEALTHZ_PATH = {
    "get": {
        "operationId": "healthz",
        "summary": "Liveness and Redis reachability",
        "responses": {
            "200": _resp("Healthy", {"$ref": "#/components/schemas/Health"}),
            "503": _resp("Redis is unreachable", {"$ref": "#/components/schemas/Health"}),
        },
    }
}

_SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["status", "message"],
        "properties": {"status": {"const": "error"}, "message": {"type": "string"}},
    },
    "Accepted": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"enum": ["accepted", "duplicate", "ignored"]},
            "applied": {"type": "boolean"},
            "state": {"type": ["string", "null"]},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"enum": ["ok", "degraded"]},
            "redis": {"type": "boolean"},
            "accepted": {"type": "integer"},
            "refused": {"type": "integer"},
        },
    },
}


def openapi_schema() -> dict[str, Any]:
    """The receiver's OpenAPI 3.1 document; the body schema comes from the brokers' updates modules."""
    mods = postback_modules()
    bodies = [m.POSTBACK_SCHEMA for m in mods.values()]
    body = bodies[0] if len(bodies) == 1 else {"anyOf": bodies}
    example = next(iter(mods.values())).POSTBACK_EXAMPLE
    return {
        "openapi": "3.1.0",
        "info": {"title": "brokergate postback receiver", "version": "1.0.0"},
        "paths": {"/postback/{account}": _postback_path(body, example), "/healthz": copy.deepcopy(_HEALTHZ_PATH)},
        "components": {"schemas": copy.deepcopy(_SCHEMAS)},
    }
