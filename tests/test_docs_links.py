"""The documentation's links and the paths it names resolve against the tree.

README.md, docs/*.md and the benchmarks' README.md and RESULTS.md link to each other by relative
paths and GitHub heading anchors, and name modules, scripts and tests by path. A file that moves or
a heading that is renamed breaks a link silently on GitHub; these tests break instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"),
               REPO / "benchmarks" / "README.md", REPO / "benchmarks" / "RESULTS.md"])

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", flags=re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", flags=re.MULTILINE)
#: Repository paths the docs name: modules and folders of the host, plugins, benchmark scripts, tests.
NAMED_PATH = re.compile(r"(?<![\w./<>-])((?:medkd_bench|plugins|benchmarks|tests)/[A-Za-z0-9_./-]*)")


def prose(text: str) -> str:
    """The text without fenced code blocks (a link inside one is not rendered as a link)."""
    return FENCE.sub("", text)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(prose(path.read_text(encoding="utf-8"))):
        slug = github_anchor(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def relative_links(path: Path) -> list[str]:
    return [target for target in LINK.findall(prose(path.read_text(encoding="utf-8")))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto: are not checked here


def test_the_docs_exist():
    for path in DOCS:
        assert path.is_file(), path
    assert len(DOCS) >= 6, "README.md, docs/ and the benchmarks' docs"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(doc: Path):
    broken = []
    for target in relative_links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no such file {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest}")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, f"{doc.relative_to(REPO)}:\n" + "\n".join(broken)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_named_repository_path_exists(doc: Path):
    missing = []
    for named in NAMED_PATH.findall(doc.read_text(encoding="utf-8")):
        path = named.rstrip(".")
        if not (REPO / path).exists():
            missing.append(path)
    assert not missing, f"{doc.relative_to(REPO)} names paths that do not exist: {sorted(set(missing))}"


def test_the_checks_catch_what_they_should(tmp_path: Path):
    assert github_anchor("2026-11-25 (session 5): `run_all.py`") == "2026-11-25-session-5-run_allpy"
    assert github_anchor("What is stored as done, and what is not") == "what-is-stored-as-done-and-what-is-not"
    page = tmp_path / "page.md"
    page.write_text("# A title\n\n[ok](#a-title) [gone](missing.md) [web](https://example.org)\n"
                    "```\n[not a link](nowhere.md)\n```\n## A title\n")
    assert relative_links(page) == ["#a-title", "missing.md"]
    assert anchors(page) == {"a-title", "a-title-1"}
    assert NAMED_PATH.findall("see `medkd_bench/run/nowhere.py` and .medkd/cache/") == ["medkd_bench/run/nowhere.py"]


def test_readme_keeps_the_two_set_up_commands():
    """CI runs the second command; a fresh clone's user runs the first."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert ("pip install torch==2.14.1 torchvision==0.29.1 && pip install -e . && medkd-bench run --matrix full"
            in readme)
    assert 'pip install torch==2.14.1 torchvision==0.29.1 && pip install -e ".[test]" && pytest' in readme
