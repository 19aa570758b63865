"""Every relative link in the repository's Markdown resolves to a file in it, and none leaves it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIPPED = {".venv", "node_modules", ".git", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"}
# [text](target) and ![alt](target), with an optional "title"; <url> autolinks are never relative.
INLINE = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target reference definitions.
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def repository_files(suffix: str = "") -> list[Path]:
    """The repository's files (ending in `suffix`), without virtualenvs, caches and test artifacts."""
    found = []
    for folder, dirs, files in os.walk(ROOT):
        here = Path(folder)
        dirs[:] = [d for d in dirs if d not in SKIPPED and here / d != ROOT / "tests" / "artifacts"]
        found += [here / name for name in files if name.endswith(suffix)]
    return sorted(found)


def markdown_files() -> list[Path]:
    return repository_files(".md")


def links_in(text: str) -> list[str]:
    """The link targets of a Markdown text, leaving out code blocks and code spans."""
    prose = CODE_SPAN.sub("", FENCE.sub("", text))
    return INLINE.findall(prose) + REFERENCE.findall(prose)


def is_relative(target: str) -> bool:
    return not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) and not target.startswith(("#", "//"))


def broken_links(path: Path, text: str | None = None) -> list[str]:
    """The relative links of `path` (or of `text`, as if it were at `path`) that lead nowhere."""
    broken = []
    for target in links_in(path.read_text(encoding="utf-8") if text is None else text):
        if not is_relative(target):
            continue
        file_part = target.split("#", 1)[0].split("?", 1)[0]
        resolved = (path.parent / file_part).resolve()
        if "shared/" in target or ROOT not in (resolved, *resolved.parents):
            broken.append(f"{target} (outside the repository)")
        elif not resolved.exists():
            broken.append(f"{target} (no such file)")
    return broken


def test_there_is_markdown_to_check() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in markdown_files()}
    assert {"README.md", "docs/contract.md", "offline/README.md"} <= names


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves_inside_the_repository(path: Path) -> None:
    assert broken_links(path) == [], f"{path.relative_to(ROOT)}: broken links"


def test_a_broken_link_and_a_link_out_are_caught() -> None:
    """The checker can fail: a missing file and a link out of the repository are both reported."""
    text = ("See [missing](no-such-page.md), [out](../../outside/page.md), [ok](contract.md#routes),\n"
            "[web](https://example.org/x.md), [here](#routes) and `[code](not-a-link.md)`.\n\n"
            "```\n[fenced](also-not-a-link.md)\n```\n")
    assert broken_links(ROOT / "docs" / "contract.md", text) == [
        "no-such-page.md (no such file)", "../../outside/page.md (outside the repository)"]


def test_no_file_in_the_repository_points_into_shared() -> None:
    """Nothing (code, comments, configs) cites the material outside the repository."""
    offenders = []
    for path in repository_files():
        if path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if re.search(r"\.\./shared|CONTRACT\.md", text):
            offenders.append(path.relative_to(ROOT).as_posix())
    assert offenders == []
