"""Finding the checkout and adding an entry point to its ``pyproject.toml`` without disturbing the rest."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from medkd_bench.errors import MedkdError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib


PROJECT_NAME = "medkd-bench"


ENTRY_POINT_GROUP = "medkd_bench"
#: The import name the repository's ``plugins/`` folder installs under (unique, unlike ``plugins``).
BUILTIN_PLUGINS_PACKAGE = "medkd_bench_plugins"


def _project_name(pyproject: Path) -> str | None:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    name = data.get("project", {}).get("name") if isinstance(data.get("project"), dict) else None
    return re.sub(r"[-_.]+", "-", name).lower() if isinstance(name, str) else None


def find_repo_root(start: Path, explicit: Path | None = None) -> Path:
    """The medkd-bench checkout: ``explicit`` if given, else the first one at or above ``start``."""
    if explicit is not None:
        root = explicit.resolve()
        if _project_name(root / "pyproject.toml") != PROJECT_NAME:
            raise MedkdError(f"--repo-root {explicit}: no pyproject.toml of project {PROJECT_NAME!r} there")
        return root
    start = start.resolve()
    for directory in (start, *start.parents):
        if _project_name(directory / "pyproject.toml") == PROJECT_NAME:
            return directory
    raise MedkdError(
        f"not inside a medkd-bench checkout ({start} and its parents have no pyproject.toml of project "
        f"{PROJECT_NAME!r}): run from the repository, pass --repo-root DIR, or use --standalone DIR"
    )


_TABLE_HEADER = re.compile(
    r'^\s*\[\s*project\s*\.\s*"?entry-points"?\s*\.\s*"?medkd_bench"?\s*\]\s*(#.*)?$')


_ANY_HEADER = re.compile(r"^\s*\[")


def add_entry_point(text: str, name: str, target: str, where: str) -> str:
    """``text`` with ``name = "target"`` added to ``[project.entry-points.medkd_bench]``.

    The line goes after the table's last entry, so comments and layout are
    kept; a missing table is appended. The result is parsed with tomllib and
    must equal the original plus exactly that entry, else nothing is changed.
    """
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MedkdError(f"{where}: not valid TOML ({exc})") from exc
    table = before.get("project", {}).get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
    if name in table:
        raise MedkdError(f"{where}: entry point {name!r} already exists ({name} = {table[name]!r})")
    newline = "\r\n" if "\r\n" in text else "\n"
    entry = f"{name} = {json.dumps(target)}{newline}"
    lines = text.splitlines(keepends=True)
    header = next((i for i, line in enumerate(lines) if _TABLE_HEADER.match(line)), None)
    if header is None:
        separator = "" if not text or text.endswith("\n") else newline
        new_text = f"{text}{separator}{newline}[project.entry-points.{ENTRY_POINT_GROUP}]{newline}{entry}"
    else:
        end = next((j for j in range(header + 1, len(lines)) if _ANY_HEADER.match(lines[j])), len(lines))
        last = max(j for j in range(header, end) if lines[j].strip() and not lines[j].lstrip().startswith("#"))
        if not lines[last].endswith(("\n", "\r")):
            lines[last] += newline
        lines.insert(last + 1, entry)
        new_text = "".join(lines)
    expected = copy.deepcopy(before)
    expected.setdefault("project", {}).setdefault("entry-points", {}).setdefault(ENTRY_POINT_GROUP, {})[name] = target
    try:
        after = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError:
        after = None
    if after != expected:
        # No brackets in the message: the CLI prints errors as rich markup.
        raise MedkdError(f"{where}: cannot add the entry point automatically; add `{name} = \"{target}\"` to its "
                         f"project.entry-points.{ENTRY_POINT_GROUP} table by hand")
    return new_text
