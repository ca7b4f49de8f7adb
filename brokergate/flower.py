"""Start Flower safely: ``python -m brokergate.flower [--address 127.0.0.1] [--port 5555] [flower args]``.

Flower bare is a remote control for the cluster: its HTTP API can submit tasks (place an
order, force a login), and even with ``--basic-auth`` its ``/metrics`` and
``/healthcheck`` stay open. So this launcher refuses to start Flower without
credentials unless it is bound to loopback, and passes the credentials to Flower in
its environment (``FLOWER_BASIC_AUTH``), never on the command line where ``ps`` shows
them to every user of the host.

Credentials come from ``BROKERGATE_FLOWER_USER`` and ``BROKERGATE_FLOWER_PASSWORD``
(the environment or ``.env``).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Sequence

from common.errors import ConfigError

__all__ = ["FlowerExposed", "check_exposure", "flower_command", "is_loopback"]

log = logging.getLogger("brokergate.flower")
MIN_PASSWORD_LEN = 12


class FlowerExposed(ConfigError):
    """Flower would listen beyond this host without credentials."""


def is_loopback(address: str) -> bool:
    """True when ``address`` only ever accepts connections from this host. An empty
    address is Flower's default, every interface: not loopback."""
    a = (address or "").strip().strip("[]")
    if not a:
        return False
    try:
        return ipaddress.ip_address(a).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(a, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def check_exposure(address: str, user: str, password: str, *, unauthenticated_api: bool = False) -> bool:
    """Raise :class:`FlowerExposed` when Flower would serve beyond loopback without
    credentials (or with its API opened up). Returns whether credentials are set."""
    has_creds = bool(user) and bool(password)
    if (user or password) and not has_creds:
        raise FlowerExposed("Flower credentials need both BROKERGATE_FLOWER_USER and BROKERGATE_FLOWER_PASSWORD")
    if ":" in user or "," in user or "," in password:
        raise FlowerExposed("Flower user may not contain ':' or ',' and the password may not contain ','")
    if is_loopback(address):
        return has_creds
    where = address or "every interface"
    if not has_creds:
        raise FlowerExposed(
            f"refusing to start Flower on {where} without credentials: its API can submit tasks. "
            "Set BROKERGATE_FLOWER_USER and BROKERGATE_FLOWER_PASSWORD, or bind to 127.0.0.1"
        )
    if unauthenticated_api:
        raise FlowerExposed(f"refusing FLOWER_UNAUTHENTICATED_API on {where}: it opens the task API to anyone")
    if len(password) < MIN_PASSWORD_LEN:
        raise FlowerExposed(f"the Flower password must have at least {MIN_PASSWORD_LEN} characters when not on loopback")
    return True


def flower_command(address: str, port: int, extra: Sequence[str] = (), app: str = "workers.app") -> list[str]:
    """The Flower command line (credentials go in the environment, see :func:`main`)."""
    return [sys.executable, "-m", "celery", "-A", app, "flower", f"--address={address}", f"--port={port}", *extra]


def main(argv: Sequence[str] | None = None) -> int:
    from common.logs import setup_logging
    from common.settings import load_settings

    p = argparse.ArgumentParser(prog="python -m brokergate.flower", description=__doc__.split("\n\n")[0])
    p.add_argument("--address", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5555)
    p.add_argument("--app", default="workers.app", help="the Celery app (default workers.app)")
    args, extra = p.parse_known_args(argv)
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_json)
    if any(a.startswith(("--basic-auth", "--basic_auth")) for a in extra):
        log.error("pass Flower credentials as BROKERGATE_FLOWER_USER/BROKERGATE_FLOWER_PASSWORD, not on the command line")
        return 2
    user, password = settings.flower_user, settings.flower_password.get()
    if not (user or password) and os.environ.get("FLOWER_BASIC_AUTH"):
        user, _, password = os.environ["FLOWER_BASIC_AUTH"].split(",")[0].partition(":")
    open_api = os.environ.get("FLOWER_UNAUTHENTICATED_API", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        has_creds = check_exposure(args.address, user, password, unauthenticated_api=open_api)
    except FlowerExposed as e:
        log.error("%s", e)
        return 2
    env = dict(os.environ)
    env.pop("FLOWER_BASIC_AUTH", None)
    if has_creds:
        env["FLOWER_BASIC_AUTH"] = f"{user}:{password}"
    else:
        log.warning("Flower on %s without credentials: reachable from this host only", args.address)
    cmd = flower_command(args.address, args.port, extra, args.app)
    log.info("starting Flower on http://%s:%d/ (%s)", args.address, args.port, "basic auth" if has_creds else "no auth")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(cmd[0], cmd, env)  # Flower replaces us: signals reach it directly


if __name__ == "__main__":
    sys.exit(main())
