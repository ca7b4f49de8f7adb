"""Redis scripts live in ``common/lua/*.lua``, each with a header naming what it reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "common" / "lua").glob("*.lua"))


def _header_and_body(path: Path) -> tuple[str, str]:
    lines = path.read_text().splitlines()
    n = next((i for i, line in enumerate(lines) if not line.startswith("--")), len(lines))
    return "\n".join(lines[:n]), "\n".join(lines[n:])


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_every_script_header_names_the_keys_and_args_it_uses(path: Path) -> None:
    header, body = _header_and_body(path)
    assert header, f"{path.name} has no header comment"
    used = {f"{kind}[{n}]" for kind, n in re.findall(r"\b(KEYS|ARGV)\[(\d+)\]", body)}
    assert not [u for u in sorted(used) if u not in header], f"{path.name}: header does not name them"


def test_no_python_module_holds_an_inline_script() -> None:
    inline = [str(p.relative_to(REPO)) for top in ("common", "workers", "feed", "beat")
              for p in (REPO / top).rglob("*.py") if "redis.call(" in p.read_text()]
    assert inline == []
