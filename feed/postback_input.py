"""A postback request's checks, before anything is applied: size, JSON, the account, its owner.

Steps 1 to 3 of :mod:`feed.postback`'s request, and the replay guard's digest. No Redis
here: each check returns what it read or raises :class:`Refused` with the answer to send.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from common.brokers import BROKER_NAMES, broker
from common.settings import Account

__all__ = ["MAX_BODY_BYTES", "Refused", "digest", "owner", "parse", "postback_modules", "read_capped"]

MAX_BODY_BYTES = 16 * 1024  # a real postback is ~1 KiB


class Refused(Exception):
    """A request refused for good: ``status`` and the ``message`` the sender gets."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


def postback_modules() -> dict[str, Any]:
    """The updates module of every broker that sends postbacks, by broker name."""
    return {name: updates for name in BROKER_NAMES if (updates := broker(name).updates).HAS_POSTBACK}


async def read_capped(request: Request, cap: int) -> bytes:
    """The body, refused (413) past ``cap`` bytes whatever Content-Length says."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise Refused(400, "Content-Length is not a number")
        if int(declared) > cap:
            raise Refused(413, f"body larger than {cap} bytes")
    chunks: list[bytes] = []
    size = 0
    # Count what actually arrives: Content-Length may be absent (chunked) or lie.
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise Refused(413, f"body larger than {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse(raw: bytes, validators: Mapping[str, Any]) -> dict[str, Any]:
    """The postback's fields, as the first broker's validator that accepts the JSON body returns them."""
    if not raw:
        raise Refused(400, "empty body: expected a JSON object")
    try:
        body = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # ValueError covers UnicodeDecodeError and digit limits
        raise Refused(400, f"not valid JSON: {str(exc)[:120]}") from None
    errors: list[str] = []
    for mod in validators.values():
        try:
            return mod.validate_postback(body)  # type: ignore[no-any-return]
        except ValueError as exc:
            errors.append(str(exc))
    raise Refused(400, "; ".join(errors) or "not a postback")


def owner(account: Account, body: dict[str, Any], accounts: Mapping[str, Account]) -> Account:
    """The account the postback is about.

    A broker app (one api_key and secret) can serve several users, and its postback URL is
    set once per app, so every user's postbacks arrive at the URL of one account. The body
    names its user: an update for another account of the same app is applied to that
    account; a user that no account of this app has is refused (401), never applied to the
    wrong account's orders.
    """
    user = body.get("user_id")
    if not isinstance(user, str) or not user or user == account.user_id:
        return account
    for other in accounts.values():
        if other.user_id == user and other.broker == account.broker and other.api_key == account.api_key:
            return other
    raise Refused(401, "unauthorized")


def digest(body: dict[str, Any]) -> str:
    """The replay guard's name for a body."""
    # Canonical form, so the same postback re-serialized differently is still a replay.
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canon.encode()).hexdigest()
