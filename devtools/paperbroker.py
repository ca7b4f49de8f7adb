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
        r = self.http.post(f"{self.url}/_paper/users", json=data, timeout=5)
        r.raise_for_status()
        return PaperUser(**data)

    def requests(self) -> list[dict[str, Any]]:
        r = self.http.get(f"{self.url}/_paper/requests", timeout=5)
        r.raise_for_status()
        return list(r.json())

    def orders(self) -> list[dict[str, Any]]:
        r = self.http.get(f"{self.url}/_paper/orders", timeout=5)
        r.raise_for_status()
        return list(r.json())

    def portfolio(self, broker: str, user_id: str) -> dict[str, Any]:
        """The user's books as the paper broker keeps them (``/_paper/portfolio``): positions,
        holdings, funds and trades, generic names, rupees as decimal strings."""
        r = self.http.get(f"{self.url}/_paper/portfolio", params={"broker": broker, "user_id": user_id}, timeout=5)
        r.raise_for_status()
        return dict(r.json())

    def fault(self, **kw: Any) -> dict[str, Any]:
        """`fault(kind=..., broker=..., user_id=None, count=None, duration_s=None, delay_s=None)`."""
        body = {k: v for k, v in kw.items() if v is not None}
        r = self.http.post(f"{self.url}/_paper/faults", json=body, timeout=5)
        r.raise_for_status()
        return dict(r.json())

    def rule_rejections(self) -> dict[str, int]:
        """Requests the paper broker refused under the 2026 retail-algo rules, by rule name
        (paper/rules.py); empty when none was."""
        r = self.http.get(f"{self.url}/_paper/health", timeout=5)
        r.raise_for_status()
        return dict(r.json().get("rule_rejections") or {})

    def reset(self) -> None:
        self.http.post(f"{self.url}/_paper/reset", timeout=5).raise_for_status()

    def wait_for(self, predicate: Any, timeout_s: float = 5.0, interval_s: float = 0.02) -> Any:
        """Poll `predicate()` until it returns something truthy, or fail after the deadline."""
        return wait_for(predicate, timeout_s, interval_s)
