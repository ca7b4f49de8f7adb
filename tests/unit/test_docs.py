"""The docs the code cites are in the repo, and every cited section exists."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["brokergate", "common", "workers", "beat", "feed", "paper", "bench", "examples", "devtools", "tests"]
CITATION = re.compile(r"docs/(architecture|brokers)\.md(?: § ([A-Z][\w .-]*?))?(?=[,:;)\s]|$)")


def cited() -> list[tuple[Path, str, str | None]]:
    out = []
    for top in SOURCES:
        for path in (ROOT / top).rglob("*"):
            if path.suffix not in (".py", ".toml") or "__pycache__" in path.parts:
                continue
            for m in CITATION.finditer(path.read_text()):
                out.append((path, m.group(1), m.group(2)))
    return out


def test_every_cited_doc_and_section_exists() -> None:
    citations = cited()
    assert len(citations) >= 20  # the adapters, workers and benchmarks cite them
    missing = []
    for path, doc, section in citations:
        text = (ROOT / "docs" / f"{doc}.md").read_text()
        headings = [h.strip() for h in re.findall(r"^#+ (.+)$", text, re.M)]
        if section and not any(h.startswith(section.strip().rstrip(".")) for h in headings):
            missing.append(f"{path.relative_to(ROOT)}: docs/{doc}.md § {section}")
    assert not missing, "cited sections that do not exist:\n" + "\n".join(missing)


def test_nothing_cites_files_outside_the_repo() -> None:
    stale = [f"{p.relative_to(ROOT)}:{n}" for top in SOURCES for p in (ROOT / top).rglob("*.py")
             if p != Path(__file__).resolve() for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"(?<![\w/])(DESIGN|BROKERS)\.md", line) or "../shared" in line]  # fmt: skip
    assert not stale, stale


def test_the_license_file_matches_pyproject() -> None:
    license_field = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    spdx = license_field["text"] if isinstance(license_field, dict) else license_field
    assert spdx == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
