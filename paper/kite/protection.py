"""Kite's market-protection rule (docs/brokers.md § "The 2026 retail-algo rules"): since 1 April 2026
a MARKET or SL-M order from the API needs ``market_protection``, -1 (Kite's automatic band) or a
percentage 0 < p <= 100; without it, or with 0, Kite answers HTTP 400 InputException "Market orders
without market protection are not allowed via API. Please set market protection or use a Limit
order." (kite.trade forum, comments 52316 and 52991). A modify that turns an order into a MARKET
or SL-M order needs it too; one that keeps a MARKET order MARKET does not (comment 52331).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from paper.rules import MARKET_PROTECTION
from paper.state import PaperState

MARKET_TYPES = ("MARKET", "SL-M")
REFUSAL = ("Market orders without market protection are not allowed via API. "
           "Please set market protection or use a Limit order.")


def protected(form: Any) -> bool:
    """``market_protection`` is -1 or a percentage 0 < p <= 100."""
    try:
        value = float(str(form.get("market_protection")))
    except ValueError:
        return False
    return value == -1 or 0 < value <= 100


def refusal(state: PaperState, form: Any, order_type: str, current: str | None = None) -> JSONResponse | None:
    """Kite's answer refusing an order of ``order_type`` (``current``: the type of the order a modify
    changes) that the rule forbids, counted in the rule rejections; None when the rule lets it in."""
    if order_type not in MARKET_TYPES or order_type == current or protected(form):
        return None
    state.rule_rejections[MARKET_PROTECTION] += 1
    return JSONResponse({"status": "error", "message": REFUSAL, "data": None, "error_type": "InputException"}, 400)
