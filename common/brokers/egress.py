"""The order egress of the SEBI retail-algo rules of 2026: a client's orders must come from its registered
static IP (docs/brokers.md § "The 2026 retail-algo rules"), and only order requests (place, modify,
cancel) are checked; logins, books, positions and the feeds may come from anywhere.

* :class:`OrderEgress` is an account's choice, from its generic extras (checked when the accounts file is
  read): ``order_source_address`` (an IP of this host to bind the order requests' sockets to, for a host
  with several addresses) and ``order_proxy`` (an http(s) proxy whose egress is the registered IP). Both
  may be set (the proxy is then reached from that address). ``common/brokers/base.py`` gives every
  adapter a second keep-alive session for its order calls on it.
* :func:`refusal` is the one reading of "this IP is not registered" answers: each broker's ``errors.py``
  asks it first and gets :class:`common.errors.EgressRefused` (final: never retried, never a re-login)
  with the runbook step and the address the broker says it saw.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from common.brokers import redact_url
from common.errors import EgressRefused

__all__ = ["PROXY_EXTRA", "SOURCE_ADDRESS_EXTRA", "OrderEgress", "refusal", "seen_ip"]

SOURCE_ADDRESS_EXTRA = "order_source_address"
PROXY_EXTRA = "order_proxy"


@dataclass(frozen=True)
class OrderEgress:
    """Where an account's order requests leave from; both empty: the host's default route."""

    source_address: str = ""
    proxy: str = ""

    @classmethod
    def of(cls, extra: dict[str, Any]) -> OrderEgress:
        return cls(str(extra.get(SOURCE_ADDRESS_EXTRA) or ""), str(extra.get(PROXY_EXTRA) or ""))

    @property
    def default(self) -> bool:
        return not self.source_address and not self.proxy

    def describe(self) -> str:
        """For ``brokergate status``: ``default``, ``source 203.0.113.7``, ``proxy proxy.example:3128``
        (the proxy's host and port only: never its user or password), or both."""
        parts = [f"source {self.source_address}"] if self.source_address else []
        if self.proxy:
            url = urlsplit(self.proxy)
            port = f":{url.port}" if url.port else ""
            parts.append(f"proxy {url.scheme}://{url.hostname}{port}")
        return ", ".join(parts) or "default"

    def __repr__(self) -> str:  # never a proxy's password in a log line
        return f"OrderEgress(source_address={self.source_address!r}, proxy={redact_url(self.proxy)!r})"


# The wordings of an IP refusal. None of the four brokers documents its own (notes: /tmp/h17 ->
# docs/brokers.md); the one sighting is Kite's "IP (<address>) is not allowed". So the test is
# deliberately about the words "IP" + a refusal, in either order, and never about a code or a status.
_REFUSED = re.compile(
    r"\bip\b(?:\s*address)?[^\n]{0,60}?\b(?:is\s+)?(?:not\s+(?:allowed|whitelisted|registered|authori[sz]ed|permitted)"
    r"|unregistered|unauthori[sz]ed|mismatch|is\s+invalid)"
    r"|\b(?:unregistered|unauthori[sz]ed|invalid|non\s?whitelisted|not\s+whitelisted|not\s+registered)\s+"
    r"(?:static\s+|source\s+|client\s+|public\s+)?ip\b",
    re.IGNORECASE,
)
_ADDRESS_CANDIDATE = re.compile(r"[0-9A-Fa-f:.]{3,}")


def seen_ip(text: str) -> str:
    """The first IP address written in ``text`` (the one the broker says it saw), or ""."""
    for candidate in _ADDRESS_CANDIDATE.findall(text):
        try:
            return str(ipaddress.ip_address(candidate.strip(".:")))
        except ValueError:
            continue
    return ""


def refusal(broker: str, answer: str, *, console: str, code: str | None = None,
            http_status: int | None = None) -> EgressRefused | None:
    """EgressRefused when ``answer`` (the broker's error message, or its raw body) says the request's IP
    is not the registered one, else None. ``console``: where the operator registers the IP."""
    text = " ".join(str(answer).replace("_", " ").split())
    if not _REFUSED.search(text):
        return None
    return EgressRefused(broker, text[:200], console=console, seen_ip=seen_ip(text), code=code,
                         http_status=http_status)
