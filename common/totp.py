"""TOTP codes for the daily login (RFC 6238: 30 s steps, 6 digits, SHA-1).

Brokers accept a code only in its own 30 s step, so a code generated in the last
moments of a step may arrive after the step ended and be refused. :func:`code` waits
for the next step when less than ``min_remaining_s`` of the current one is left. The
clock and the sleep are parameters, so tests decide what "now" is.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pyotp

__all__ = ["STEP_S", "code", "seconds_left"]

STEP_S = 30


def seconds_left(now_s: float, step_s: int = STEP_S) -> float:
    """Seconds until the step that contains ``now_s`` ends."""
    return step_s - (now_s % step_s)


def code(
    secret: str,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    min_remaining_s: float = 2.0,
) -> str:
    """The TOTP code for ``secret`` that stays valid for at least ``min_remaining_s``.

    May sleep up to ``min_remaining_s`` (waiting for the next step). Raises
    ``ValueError`` for a secret that is not base32 (the caller maps it to LoginFailed).
    """
    totp = pyotp.TOTP(secret)
    now = clock()
    left = seconds_left(now)
    if left < min_remaining_s:
        # A hair past the boundary, so float rounding cannot leave us in the old step.
        sleep(left + 0.01)
        now = clock()
    try:
        return totp.at(now)
    except Exception as e:  # binascii.Error for a secret that is not base32
        raise ValueError("the TOTP secret is not valid base32") from e
