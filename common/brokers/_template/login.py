"""The headless login: credentials and TOTP in, an access token out (no browser, no human).

:func:`common.tokens.login_and_store` calls :func:`login` within its deadline, retrying only
BrokerUnavailable and RateLimited; a refused credential is LoginFailed (never retried). Map
the broker's answers with its ``errors.map_error`` (one map), and put no secret or token into
a log line or an exception. The helpers of ``common/brokers/loginflow.py`` do the common steps.
"""

from __future__ import annotations

from typing import Any

import requests

from common.settings import Account

__all__ = ["login", "token_expiry_ms"]


def login(account: Account, session: requests.Session | None = None) -> dict[str, Any]:
    """Log ``account`` in; returns ``access_token`` and ``user_id``, plus ``feed_token`` and
    ``refresh_token`` where the broker has them (everything returned is stored with the token)."""
    raise NotImplementedError


def token_expiry_ms(issued_at_ms: int) -> int:
    """When a token issued at ``issued_at_ms`` dies (epoch ms): the broker's documented rule."""
    raise NotImplementedError
