"""`python -m paper [--host 127.0.0.1] [--port 8700] [--config paper.toml] [--seed N]`

Binds first, prints one line with `http://HOST:PORT` (flushed), then serves until killed.
`--port 0` picks a free port; the printed line names the one chosen.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import tomllib
from pathlib import Path

import uvicorn

from paper.app import create_app
from paper.control import user_from_mapping
from paper.server import uvicorn_kwargs
from paper.state import PaperState
from paper.users import User


def load_users(path: Path) -> list[User]:
    with path.open("rb") as fh:
        config = tomllib.load(fh)
    return [user_from_mapping(table) for table in config.get("users", [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paper", description="Paper broker: Kite, Angel, Fyers and Shoonya")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--config", type=Path, default=None, help="TOML with [[users]] tables")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    users = load_users(args.config) if args.config else []
    state = PaperState(seed=args.seed, users=users)

    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    base = f"http://{host}:{port}"

    app = create_app(state)
    logging.basicConfig(level=args.log_level.upper())
    config = uvicorn.Config(app, log_level=args.log_level, **uvicorn_kwargs())
    server = uvicorn.Server(config)
    # The socket is already listening, so clients that read this line can connect at once.
    print(
        f"paper broker listening on {base} (kite ws://{host}:{port}/kite-ticker, "
        f"angel ws://{host}:{port}/smart-stream, control {base}/_paper)",
        flush=True,
    )
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
