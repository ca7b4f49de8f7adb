"""No secret reaches a log line or an exception's logged text."""

from __future__ import annotations

import io
import logging

from common.logs import RedactingFilter, register_secrets
from common.settings import parse_accounts, require_secrets
from tests.unit.test_settings import ENV, GOOD


def test_configured_secrets_never_reach_a_log_line() -> None:
    require_secrets(parse_accounts(GOOD, ENV).values())  # registers every resolved secret
    register_secrets(["tok-abcdef123456"])  # tokens are registered as they are issued
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        log.info("login with %s and %s", ENV["K_PASSWORD"], ENV["K_SECRET"])
        log.debug("token=%s", "tok-abcdef123456")
        try:
            raise RuntimeError(f"broker said bad totp seed {ENV['K_TOTP']}")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "***" in text and "failed" in text
    for secret in [*ENV.values(), "tok-abcdef123456"]:
        if len(secret) >= 4:
            assert secret not in text
