"""The broker's instrument list parsed into generic Instruments (``EXCHANGE:SYMBOL`` <-> token).

Keep the parser a pure function (bytes or text in, Instruments out) beside the download;
:func:`common.instruments.refresh` stores what :func:`fetch` returns.
"""

from __future__ import annotations

import requests

from common.models import Instrument
from common.settings import Account

__all__ = ["fetch"]


def fetch(account: Account, access_token: str | None,
          session: requests.Session | None = None) -> list[Instrument]:
    """Download and parse the list; TokenExpired when the host refuses the token."""
    raise NotImplementedError
