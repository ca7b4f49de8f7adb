"""``python -m brokergate``: the ``brokergate`` command line (``common/cli.py``), for images and
virtualenvs where the console script is not on PATH."""

from __future__ import annotations

import sys

from common.cli import main

if __name__ == "__main__":
    sys.exit(main())
