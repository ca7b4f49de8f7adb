"""Size limits for product code (issue 20): no function over 80 lines, no module over 500.

A long function mixes steps that want names; a long module mixes concepts. Read with ``ast``
so a function's length is its real extent (decorators and docstring included), whatever the
formatting. An exception goes in an allow-list below with a note saying why.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("common", "workers", "beat", "feed", "brokergate", "paper")
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500

# "path::qualified.name": why this function may be longer. Empty: every function fits.
FUNCTION_ALLOW: dict[str, str] = {}
# "path": why this module may be longer. Empty: every module fits.
MODULE_ALLOW: dict[str, str] = {}


def _modules() -> Iterator[Path]:
    for package in PRODUCT:
        yield from sorted((ROOT / package).rglob("*.py"))


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def _length(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return (node.end_lineno or node.lineno) - first + 1


def test_the_product_packages_are_there() -> None:
    # Given the product packages, When listed, Then each has modules (a rename would empty the check)
    for package in PRODUCT:
        assert any((ROOT / package).rglob("*.py")), package


def test_no_function_in_product_code_is_over_80_lines() -> None:
    # Given every function and method of the product packages
    too_long = []
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        for name, node in _functions(ast.parse(path.read_text(), str(path))):
            n = _length(node)
            # When measured, Then none is over the limit unless the allow-list says why
            if n > MAX_FUNCTION_LINES and f"{rel}::{name}" not in FUNCTION_ALLOW:
                too_long.append(f"{rel}:{node.lineno} {name}: {n} lines")
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: split them by step\n" + "\n".join(too_long)


def test_no_module_in_product_code_is_over_500_lines() -> None:
    # Given every module of the product packages, When counted, Then none is over the limit
    too_long = []
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        n = len(path.read_text().splitlines())
        if n > MAX_MODULE_LINES and rel not in MODULE_ALLOW:
            too_long.append(f"{rel}: {n} lines")
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: split them by concept\n" + "\n".join(too_long)


def test_the_allow_lists_name_what_exists() -> None:
    # Given the allow-lists, Then each entry still names a long function or module (stale ones go)
    for key in FUNCTION_ALLOW:
        rel, _, name = key.partition("::")
        tree = ast.parse((ROOT / rel).read_text())
        lengths = {n: _length(f) for n, f in _functions(tree)}
        assert lengths.get(name, 0) > MAX_FUNCTION_LINES, f"{key} is no longer over the limit: drop it"
    for rel in MODULE_ALLOW:
        assert len((ROOT / rel).read_text().splitlines()) > MAX_MODULE_LINES, f"{rel} fits now: drop it"
