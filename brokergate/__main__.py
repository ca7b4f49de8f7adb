"""``python -m brokergate``: the ``brokergate`` command line (``brokergate/cli.py``), for images and
virtualenvs where the console script is not on PATH."""

from __future__ import annotations

import sys

from brokergate.cli import main

if __name__ == "__main__":
    sys.exit(main())
