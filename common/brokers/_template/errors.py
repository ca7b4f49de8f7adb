"""The broker's answers mapped to the error tree of ``common/errors.py``, at this one point.

Every documented error code is a row of a table (a test checks each one); a status or body not in
it is Ambiguous when the request may have been acted on, BrokerUnavailable when it certainly
was not (:func:`common.brokers.base.status_error` for answers that are not the broker's own).
First of all (past the rate limit), :func:`common.brokers.egress.refusal` with the broker's message:
an order refused for its source IP is EgressRefused, with the broker's console in the runbook step.
"""

from __future__ import annotations

from typing import Any

from common.errors import BrokerError

__all__ = ["map_error"]


def map_error(http_status: int, body: Any, text: str = "") -> BrokerError:
    """The error for an answer that is not a success (never raises: the caller raises it)."""
    raise NotImplementedError
