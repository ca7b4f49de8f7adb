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


def test_at_debug_the_http_and_websocket_libraries_log_too_and_are_redacted(capsys) -> None:
    """Given BROKERGATE_LOG_LEVEL=DEBUG, When urllib3 and websocket-client log a secret, Then their
    lines are written (DEBUG asks for the wire) with the secret redacted; at INFO they are quiet."""
    from common.logs import setup_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in ("urllib3", "websocket")})
    register_secrets(["tok-wire-abcdef987"])
    try:
        setup_logging("DEBUG", json_lines=True)
        logging.getLogger("urllib3.connectionpool").debug('"GET /x?access_token=%s HTTP/1.1" 200', "tok-wire-abcdef987")
        logging.getLogger("websocket").debug("handshake with tok-wire-abcdef987")
        setup_logging("INFO")
        logging.getLogger("urllib3.connectionpool").info("quiet at INFO")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
    err = capsys.readouterr().err
    assert "tok-wire-abcdef987" not in err
    assert '"logger": "urllib3.connectionpool"' in err and '"logger": "websocket"' in err
    assert err.count("***") == 2 and "quiet at INFO" not in err
