"""The README and docs/ link to files and headings that exist, and README.md reaches every
page in docs/. Anchors are the ones GitHub renders: the heading lowercased, punctuation
dropped, spaces turned into hyphens, a repeated heading numbered."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", REPO / "docker" / "README.md",
                *(REPO / "docs").glob("*.md")])
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+\1")


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """Lines outside fenced code blocks, with their numbers."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(path):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match[2])
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in prose_lines(path):
        for match in LINK.finditer(CODE_SPAN.sub("", line)):
            found.append((number, match[1]))
    return found


def test_the_pages_exist():
    assert (REPO / "docs").is_dir() and len(PAGES) > 3


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_relative_link_and_anchor_resolves(page: Path):
    broken = []
    for number, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        file = (page.parent / unquote(file_part)).resolve() if file_part else page
        if not file.exists():
            broken.append(f"{page.name}:{number}: {target}: no such file")
        elif anchor and file.suffix == ".md" and unquote(anchor) not in anchors(file):
            broken.append(f"{page.name}:{number}: {target}: no heading #{anchor} in "
                          f"{file.relative_to(REPO)}")
    assert not broken, "\n".join(broken)


def test_readme_reaches_every_page_in_docs():
    linked = {(REPO / target.partition("#")[0]).resolve()
              for _, target in links(REPO / "README.md") if not target.startswith("#")}
    missing = [p.name for p in (REPO / "docs").glob("*.md") if p.resolve() not in linked]
    assert not missing, f"README.md links to none of: {missing}"


@pytest.mark.parametrize(("heading", "anchor"), [
    ("Timeouts (`network_timeout`)", "timeouts-network_timeout"),
    ("`apps[]`", "apps"),
    ("The control API and `wxgate ctl`", "the-control-api-and-wxgate-ctl"),
    ("What the page loads itself: media and web-view",
     "what-the-page-loads-itself-media-and-web-view"),
    ("HTTP/2 phones and mitmproxy's connection pool",
     "http2-phones-and-mitmproxys-connection-pool"),
])
def test_slug_is_githubs_anchor(heading: str, anchor: str):
    assert slug(heading) == anchor


def test_a_broken_anchor_is_caught(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Two words\n\n[ok](#two-words) [bad](#three-words)\n"
                    "```\n[in code](#nowhere)\n```\n")
    assert [t for _, t in links(page)] == ["#two-words", "#three-words"]
    assert anchors(page) == {"title", "two-words"}
