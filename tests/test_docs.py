"""What users read links only inside the repo, to places that exist, and speaks their words.

Every Markdown file we ship (README, docs/, runbooks/, benchmarks/, examples/) is
checked: relative links resolve to a file in the checkout, a ``#fragment`` into a
Markdown file names one of its headings (GitHub's slugs), nothing links outside the
repository, and no internal planning code or issue number shows.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INTERNAL = re.compile(r"\b[FM]\d{1,2}\b|[Ss]eed guide|DESIGN\.md|\bissue #?\d+|§")


def shipped_markdown() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()
    return [REPO / p for p in listed if not p.startswith("tests/")]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+)$", text, re.M)}


FILES = shipped_markdown()


def test_there_is_markdown_to_check() -> None:
    names = {p.relative_to(REPO).as_posix() for p in FILES}
    assert {"README.md", "docs/architecture.md", "docs/fleet.md", "benchmarks/README.md"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_links_stay_inside_the_repo_and_resolve(path: Path) -> None:
    text = FENCE.sub("", path.read_text())
    for target in LINK.findall(text):
        assert not re.match(r"[a-z]+:", target), f"{path.name}: links outside the repo: {target}"
        file_part, _, fragment = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        assert resolved.exists(), f"{path.name}: broken link {target}"
        assert REPO in resolved.parents or resolved == REPO, f"{path.name}: {target} leaves the repo"
        if fragment and resolved.suffix == ".md":
            assert fragment in anchors(resolved), f"{path.name}: no heading for #{fragment} in {target}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_internal_codes_or_issue_numbers(path: Path) -> None:
    found = INTERNAL.search(path.read_text())
    assert found is None, f"{path.name}: {found.group(0)!r}" if found else ""
