"""Reading numbers out of broker payloads, leniently and exactly (shared by every broker's parsers).

Brokers send money as JSON floats, strings or integers; a float goes through its shortest
repr, so 109.4 stays Decimal("109.4"), never 109.400000000000005684...
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any


def money(v: Any) -> Decimal | None:
    """Exact rupees, or None for a missing, non-numeric or non-finite value."""
    if v is None or v == "" or isinstance(v, bool):
        return None
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        v = repr(v)
    try:
        d = Decimal(str(v))
    except ArithmeticError:
        return None
    return d if d.is_finite() else None


def whole(v: Any) -> int:
    """A whole quantity; 0 for a missing or non-numeric value ("10", 10, 10.0 and "10.0" are 10)."""
    if v is None or v == "" or isinstance(v, bool):
        return 0
    try:
        return int(Decimal(str(v)))
    except (ArithmeticError, ValueError):
        return 0
