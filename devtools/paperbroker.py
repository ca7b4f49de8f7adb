"""A handle on a running paper broker (``python -m paper``): its control API under ``/_paper``.

The tests' ``paper`` fixture (tests/fixtures/paper.py) and the benchmarks' stack (bench/stack.py)
both drive the broker through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyotp
import requests

from devtools.waiting import wait_for

__all__ = ["PaperBroker", "PaperUser"]


@dataclass
class PaperUser:
    broker: str
    user_id: str
    password: str
    totp_secret: str
    api_key: str
    api_secret: str
    caps: dict[str, list[str]] = field(default_factory=dict)
    postback_url: str | None = None
    registered_ip: str | None = None  # the static IP its order requests must come from (None: any)
    registered_algo: bool = False  # a strategy registered with the exchange: > 10 orders/s allowed


class PaperBroker:
    """A handle on the running paper broker (for one test, or one benchmark)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def add_user(self, **kw: Any) -> PaperUser:
        """Register a user; defaults fill in everything but `broker` (default "kite")."""
        broker = kw.pop("broker", "kite")
        user_id = kw.pop("user_id", "PA1234" if broker == "kite" else "P123456")
        data = {
            "broker": broker,
            "user_id": user_id,
            "password": kw.pop("password", "1234" if broker == "angel" else "secret-pass"),
            "totp_secret": kw.pop("totp_secret", pyotp.random_base32()),
            "api_key": kw.pop("api_key", f"key{user_id.lower()}"),
            "api_secret": kw.pop("api_secret", f"secret{user_id.lower()}"),
            "caps": kw.pop("caps", {}),
            "postback_url": kw.pop("postback_url", None),
            "registered_ip": kw.pop("registered_ip", None),
            "registered_algo": kw.pop("registered_algo", False),
        }
        if kw:
            raise TypeError(f"unknown user fields: {sorted(kw)}")
        self._post("users", data)
        return PaperUser(**data)

    def _get(self, what: str, **params: Any) -> Any:
        """``GET /_paper/<what>`` with the query ``params`` that are not None, its JSON answer."""
        r = self.http.get(f"{self.url}/_paper/{what}", params={k: v for k, v in params.items() if v is not None},
                          timeout=10)  # fmt: skip
        r.raise_for_status()
        return r.json()

    def _post(self, what: str, body: dict[str, Any] | None = None) -> Any:
        r = self.http.post(f"{self.url}/_paper/{what}", json=body, timeout=5)
        r.raise_for_status()
        return r.json()

    def requests(self, user_id: str | None = None, since_ns: int | None = None) -> list[dict[str, Any]]:
        """The request log, filtered on the server (by user, from an ``arrival_ns`` on)."""
        return list(self._get("requests", user_id=user_id, since_ns=since_ns))

    def orders(self, tag: str | None = None) -> list[dict[str, Any]]:
        return list(self._get("orders", tag=tag))

    def portfolio(self, broker: str, user_id: str) -> dict[str, Any]:
        """The user's books as the paper broker keeps them (``/_paper/portfolio``): positions,
        holdings, funds and trades, generic names, rupees as decimal strings."""
        return dict(self._get("portfolio", broker=broker, user_id=user_id))

    def fault(self, **kw: Any) -> dict[str, Any]:
        """`fault(kind=..., broker=..., user_id=None, count=None, duration_s=None, delay_s=None)`."""
        return dict(self._post("faults", {k: v for k, v in kw.items() if v is not None}))

    def faults(self) -> list[dict[str, Any]]:
        """The faults still active (``GET /_paper/faults``): one with a count is gone once used up."""
        return list(self._get("faults"))

    def ticks(self, **body: Any) -> None:
        """Pace the tick generator (``POST /_paper/ticks``: interval_ms, paused, steps, slices)."""
        self._post("ticks", body)

    def rule_rejections(self) -> dict[str, int]:
        """Requests the paper broker refused under the 2026 retail-algo rules, by rule name
        (paper/rules.py); empty when none was."""
        return dict(self._get("health").get("rule_rejections") or {})

    def reset(self) -> None:
        self._post("reset")

    def wait_for(self, predicate: Any, timeout_s: float = 5.0, interval_s: float = 0.02) -> Any:
        """Poll `predicate()` until it returns something truthy, or fail after the deadline."""
        return wait_for(predicate, timeout_s, interval_s)
