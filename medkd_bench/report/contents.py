"""A page's table of contents, built from the headings the page actually has, with GitHub's anchors.

A leaderboard page runs to hundreds of lines; the contents at its top let a
reader jump to the part they need. They are built after the page is rendered,
from its own headings, so a section added, renamed or left out (no failed
cells, no tuning) can never leave a link pointing nowhere. Anchors follow
GitHub's rules (github-slugger, which github.com uses for heading ids):
lower-case; every character that is not a letter, mark, number, connector
(``_``), space or hyphen dropped; spaces to hyphens; a repeated anchor gets
``-1``, ``-2``... in page order, counting every heading, listed or not.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

#: Where the rendered page wants its contents; replaced by :func:`with_contents`.
CONTENTS_MARK = "<!-- contents -->"

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def github_slug(text: str) -> str:
    """The anchor GitHub gives a heading with this text (before de-duplication)."""
    kept = (ch for ch in text.lower()
            if ch in " -" or unicodedata.category(ch)[0] in "LMN" or unicodedata.category(ch) == "Pc")
    return "".join(kept).replace(" ", "-")


def headings(markdown: str) -> Iterator[tuple[int, str]]:
    """(level, text) of each ATX heading, in order, skipping fenced code blocks (a ``# comment`` in a bash block)."""
    fence: str | None = None
    for line in markdown.splitlines():
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            continue
        if opened:
            fence = opened.group(1)
            continue
        match = _HEADING.match(line)
        if match:
            yield len(match.group(1)), match.group(2)


def anchors(markdown: str) -> list[tuple[int, str, str]]:
    """(level, text, anchor) of every heading, with GitHub's ``-1``, ``-2`` suffixes for repeats."""
    seen: dict[str, int] = {}
    out = []
    for level, text in headings(markdown):
        base = slug = github_slug(text)
        while slug in seen:
            seen[base] += 1
            slug = f"{base}-{seen[base]}"
        seen[slug] = 0
        out.append((level, text, slug))
    return out


def contents(markdown: str) -> str:
    """A list of the page's ``##`` sections, each followed by its ``###`` subsections on the same line."""
    sections: list[tuple[str, list[str]]] = []
    for level, text, slug in anchors(markdown):
        if level == 2:
            sections.append((f"[{text}](#{slug})", []))
        elif level == 3 and sections:
            sections[-1][1].append(f"[{text}](#{slug})")
    return "\n".join(f"- {link}" + (": " + " · ".join(subs) if subs else "") for link, subs in sections)


def with_contents(markdown: str) -> str:
    """``markdown`` with :data:`CONTENTS_MARK` replaced by its contents (headed "On this page")."""
    listed = contents(markdown)
    return markdown.replace(CONTENTS_MARK, f"**On this page**\n\n{listed}" if listed else "")
