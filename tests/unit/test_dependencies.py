"""pyproject.toml declares what the product imports, and imports what it declares."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ["brokergate", "common", "workers", "beat", "feed", "paper"]
# Declared but never imported by name, each for a reason.
USED_WITHOUT_IMPORT = {
    "python-multipart": "starlette's form parser (the paper broker's form-encoded order requests)",
    "flower": "run as a program by brokergate/flower.py",
}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imported_top_level() -> set[str]:
    mods: set[str] = set()
    for pkg in PRODUCT:
        for path in (REPO / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    mods |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    mods.add(node.module.split(".")[0])
    return {m for m in mods if m not in sys.stdlib_module_names and m not in PRODUCT and m != "tests"}


def test_runtime_dependencies_are_exactly_what_the_product_imports() -> None:
    requirements = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {_name(d) for d in requirements}
    # A package named as an extra is declared too (redis[hiredis]); extras are never required imports.
    extras = {_name(x) for d in requirements for group in re.findall(r"\[([^\]]+)\]", d) for x in group.split(",")}
    dists = packages_distributions()
    imported = {_name(dists[m][0]) for m in _imported_top_level() if m in dists}
    assert imported - declared - extras == set(), "imported by the product but not declared"
    assert declared - imported - set(USED_WITHOUT_IMPORT) == set(), "declared but never imported"
