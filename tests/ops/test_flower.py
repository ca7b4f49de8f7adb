"""Flower is never exposed bare: the launcher's guard, and a real Flower behind basic auth."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import requests

from brokergate.flower import FlowerExposed, check_exposure, is_loopback, main
from tests.fixtures.redis import free_port
from tests.ops.procs import running, wait_for


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_addresses_are_loopback(address: str) -> None:
    assert is_loopback(address)


@pytest.mark.parametrize("address", ["", "0.0.0.0", "::", "10.1.2.3", "192.168.0.5"])
def test_every_interface_and_lan_addresses_are_not_loopback(address: str) -> None:
    assert not is_loopback(address)


def test_on_loopback_flower_may_start_without_credentials() -> None:
    assert check_exposure("127.0.0.1", "", "") is False
    assert check_exposure("127.0.0.1", "admin", "short") is True


@pytest.mark.parametrize("address", ["", "0.0.0.0", "10.1.2.3"])
def test_beyond_loopback_flower_refuses_to_start_without_credentials(address: str) -> None:
    with pytest.raises(FlowerExposed, match="without credentials"):
        check_exposure(address, "", "")


def test_beyond_loopback_half_credentials_a_short_password_or_an_open_api_are_refused() -> None:
    with pytest.raises(FlowerExposed, match="both"):
        check_exposure("0.0.0.0", "admin", "")
    with pytest.raises(FlowerExposed, match="at least"):
        check_exposure("0.0.0.0", "admin", "short")
    with pytest.raises(FlowerExposed, match="UNAUTHENTICATED_API"):
        check_exposure("0.0.0.0", "admin", "a-long-enough-password", unauthenticated_api=True)
    assert check_exposure("0.0.0.0", "admin", "a-long-enough-password") is True


def test_the_launcher_exits_2_before_starting_anything(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("BROKERGATE_FLOWER_USER", raising=False)
    monkeypatch.delenv("BROKERGATE_FLOWER_PASSWORD", raising=False)
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    monkeypatch.setattr(os, "execvpe", lambda *a: pytest.fail("Flower was started"))
    assert main(["--address", "0.0.0.0"]) == 2
    # Credentials on the command line would show in `ps`: refused too.
    assert main(["--address", "127.0.0.1", "--basic-auth=u:p"]) == 2


def test_the_launcher_passes_credentials_in_the_environment_not_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKERGATE_FLOWER_USER", "admin")
    monkeypatch.setenv("BROKERGATE_FLOWER_PASSWORD", "a-long-enough-password")
    seen: dict[str, object] = {}
    monkeypatch.setattr(os, "execvpe", lambda f, argv, env: seen.update(argv=argv, env=env))
    main(["--address", "0.0.0.0", "--port", "5599"])
    assert seen["env"]["FLOWER_BASIC_AUTH"] == "admin:a-long-enough-password"  # type: ignore[index]
    assert not any("a-long-enough-password" in a for a in seen["argv"])  # type: ignore[union-attr]
    assert "--address=0.0.0.0" in seen["argv"] and "--port=5599" in seen["argv"]  # type: ignore[operator]


@pytest.mark.slow
def test_flower_on_loopback_answers_401_without_credentials_and_lists_workers_with_them(
    redis_url: str, tmp_path: Path
) -> None:
    # Given a worker and Flower started by the launcher with generated credentials
    port = free_port()
    env = {**os.environ, "BROKERGATE_REDIS_URL": redis_url, "BROKERGATE_FLOWER_USER": "ops",
           "BROKERGATE_FLOWER_PASSWORD": "s3cret-flower-pw", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    env.pop("FLOWER_BASIC_AUTH", None)
    worker = [sys.executable, "-m", "celery", "-A", "tests.ops.flower_probe_app", "worker", "-n", "probe@%h",
              "-P", "solo", "--without-mingle", "--without-gossip", "-E"]  # fmt: skip
    flower = [sys.executable, "-m", "brokergate.flower", "--app", "tests.ops.flower_probe_app", "--address", "127.0.0.1",
              "--port", str(port)]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with running(worker, env, tmp_path / "worker.log"), running(flower, env, tmp_path / "flower.log") as fp:
        wait_for("flower", lambda: requests.get(f"{base}/healthcheck", timeout=1), 30, fp, tmp_path / "flower.log")
        # When asked without credentials, then refused
        assert requests.get(f"{base}/api/workers", timeout=5).status_code == 401
        assert requests.get(f"{base}/", timeout=5).status_code == 401
        assert requests.get(f"{base}/api/workers", auth=("ops", "wrong-password"), timeout=5).status_code == 401
        # With them, the worker is listed
        listed = wait_for(
            "worker listed",
            lambda: [w for w in requests.get(f"{base}/api/workers?refresh=1", auth=("ops", "s3cret-flower-pw"), timeout=5).json()
                     if w.startswith("probe@")],
            30, fp, tmp_path / "flower.log",
        )  # fmt: skip
        assert listed
        # And the password is not on any command line
        cmdline = Path(f"/proc/{fp.pid}/cmdline").read_bytes()
        assert b"s3cret-flower-pw" not in cmdline


def test_the_refusal_is_one_json_log_line_when_asked_for_json(tmp_path: Path) -> None:
    import json
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKERGATE_FLOWER", "FLOWER_"))}
    env["BROKERGATE_LOG_JSON"] = "1"
    out = subprocess.run([sys.executable, "-m", "brokergate.flower", "--address", "0.0.0.0"], env=env, capture_output=True,
                         text=True, timeout=30)  # fmt: skip
    assert out.returncode == 2
    lines = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0]["level"] == "ERROR" and "without credentials" in lines[0]["msg"]
