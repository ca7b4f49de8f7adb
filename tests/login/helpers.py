"""Shared bits of the login tests: asking the paper broker whether a token works, and
counting login requests in its request log."""

from __future__ import annotations

from typing import Any

import requests

from common.brokers.angel.login import headers as angel_headers

LOGIN_PATHS = {"kite": "/api/login", "angel": "/rest/auth/angelbroking/user/v1/loginByPassword"}


def token_works(acct: Any, access_token: str) -> bool:
    """True when the paper broker accepts the token (profile endpoint), False on 401/403."""
    if acct.broker == "kite":
        resp = requests.get(
            f"{acct.rest_url}/user/profile",
            headers={"X-Kite-Version": "3", "Authorization": f"token {acct.api_key}:{access_token}"},
            timeout=5,
        )
        return resp.status_code == 200
    resp = requests.get(
        f"{acct.rest_url}/rest/secure/angelbroking/user/v1/getProfile",
        headers=angel_headers(acct, access_token),
        timeout=5,
    )
    body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
    return resp.status_code == 200 and (body.get("status") is True or body.get("success") is True)


def login_requests(paper: Any, acct: Any, *, accepted_only: bool = False) -> list[dict[str, Any]]:
    """The first step of each login flow of this account in the paper broker's log
    (``accepted_only``: not counting answers of the broker's own login rate limit)."""
    return [
        q
        for q in paper.requests()
        if q["path"] == LOGIN_PATHS[acct.broker]
        and q.get("user_id") == acct.user_id
        and (q["status"] == 200 or not accepted_only)
    ]
