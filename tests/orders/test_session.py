"""The adapters' HTTP session reads the environment's proxy settings once, with requests' rules."""

from __future__ import annotations

import pytest

from common.brokers.base import new_session


def test_proxies_are_read_once_for_the_brokers_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "paper.local")
    s = new_session(base_url="https://api.broker.example")
    assert s.proxies.get("https") == "http://proxy.example:3128"
    assert s.trust_env is False  # not re-read (a scan of the whole environment) on every request
    assert new_session(base_url="https://paper.local:8000").proxies == {}  # NO_PROXY honoured


def test_ca_bundle_from_the_environment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert new_session(base_url="https://api.broker.example").verify == "/etc/ssl/certs/ca-certificates.crt"
