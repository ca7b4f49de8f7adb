"""Imports point one way (docs/architecture.md § Folders): the shared core imports no process, the
paper broker shares nothing with what it stands in for, and only tests import tests."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The operator's process entry points: modules of the public package, never imported by the core.
ENTRY_POINTS = {"brokergate.cli", "brokergate.launch", "brokergate.flower", "brokergate.metrics"}
PRODUCT = ["brokergate", "common", "workers", "beat", "feed"]
HARNESS_USERS = ["bench", "examples", "devtools"]
# folder -> the top-level packages (or entry-point modules) its modules must not import
FORBIDDEN: dict[str, set[str]] = {
    "common": {"workers", "beat", "feed", "brokergate", "paper", "bench", "examples", "devtools", "tests"},
    "paper": {*PRODUCT, "bench", "examples", "devtools", "tests"},
    **{pkg: {"paper", "bench", "examples", "devtools", "tests"} for pkg in ["brokergate", "workers", "beat", "feed"]},
    **{pkg: {"tests"} for pkg in HARNESS_USERS},
}


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top, in a function or under TYPE_CHECKING alike
    (``from brokergate import cli`` counts as ``brokergate`` and ``brokergate.cli``)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolved against the module's own package
                package = list(path.relative_to(REPO).parent.parts)
                module = ".".join([*package[: len(package) - node.level + 1], *filter(None, [node.module])])
            out.add(module)
            out |= {f"{module}.{a.name}" for a in node.names}
    return out


def violations(top: str) -> list[str]:
    banned = FORBIDDEN[top]
    found = []
    for path in sorted((REPO / top).rglob("*.py")):
        for name in sorted(imports_of(path)):
            root = name.split(".")[0]
            if root in banned:
                found.append(f"{path.relative_to(REPO)} imports {name}")
    return found


@pytest.mark.parametrize("top", sorted(FORBIDDEN))
def test_each_folder_imports_only_what_its_layer_may(top: str) -> None:
    # Given the folder's modules, parsed
    # When their imports are matched against what the layer may not use
    found = violations(top)
    # Then there are none
    assert not found, f"{top}/ reaches across its layer:\n" + "\n".join(found)


def test_the_entry_points_are_imported_by_no_other_product_package() -> None:
    # Given the product's packages other than the public one
    found = [f"{p.relative_to(REPO)} imports {name}" for top in PRODUCT if top != "brokergate"
             for p in sorted((REPO / top).rglob("*.py")) for name in imports_of(p) if name in ENTRY_POINTS]
    # Then none starts or reads through a process entry point
    assert not found, "\n".join(found)


def test_the_rules_see_the_imports_they_forbid(tmp_path: Path) -> None:
    # Given a module with every kind of import a rule must catch
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import tests.waiting\n"
                     "def f():\n    from workers.app import app\n    from brokergate import cli\n")
    # When it is parsed
    found = imports_of(probe)
    # Then the lazy, the type-only and the from-package imports are all seen
    assert {"tests.waiting", "workers.app", "brokergate.cli"} <= found, found


def test_a_strategy_importing_brokergate_loads_no_process() -> None:
    # Given a fresh interpreter
    # When a strategy imports the public package
    code = "import brokergate, sys; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         timeout=60).stdout.split()
    # Then no entry point, worker, Beat, feed, paper broker or harness came with it
    loaded = [m for m in out if m in ENTRY_POINTS or m.split(".")[0] in {"workers", "beat", "feed", "paper",
                                                                           "devtools", "tests", "bench"}]
    assert not loaded, loaded
