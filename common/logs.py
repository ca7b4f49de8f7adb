"""Logging, set up once per process: one line per event, optional JSON, secrets redacted.

Every secret the process learns (from the accounts file, and tokens as they are issued)
is registered here; the filter replaces each occurrence in the formatted message and in
exception text with ``***`` before any handler writes it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable

_lock = threading.Lock()
_secrets: set[str] = set()
_MIN_LEN = 4  # redacting very short strings would mangle ordinary words


def register_secrets(values: Iterable[str]) -> None:
    with _lock:
        for v in values:
            if v and len(v) >= _MIN_LEN:
                _secrets.add(v)


def redact(text: str) -> str:
    if not _secrets:
        return text
    # Longest first, so a secret that contains another is replaced whole.
    for s in sorted(_secrets, key=len, reverse=True):
        if s in text:
            text = text.replace(s, "***")
    return text


class RedactingFilter(logging.Filter):
    """Renders the record's message and exception once, redacted, so no handler sees a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = redact(record.getMessage())
        record.msg, record.args = msg, None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(text)
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        d = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_text:
            d["exc"] = record.exc_text
        return json.dumps(d, ensure_ascii=False)


def setup_logging(level: str = "INFO", json_lines: bool = False) -> None:
    """Configure the root logger once: a single stderr handler with redaction."""
    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(RedactingFilter())
    root.handlers[:] = [handler]
    root.setLevel(level)
    # At INFO the HTTP and WebSocket libraries add a line per connection, so they start at
    # WARNING; asking for DEBUG asks for the wire too (redacted like every other line).
    lib_level = logging.DEBUG if root.level <= logging.DEBUG else max(logging.WARNING, root.level)
    for noisy in ("urllib3", "websocket"):
        logging.getLogger(noisy).setLevel(lib_level)
