"""Spec files the host discovers (searched students, added datasets): finding them, reading them, no two alike.

Both kinds follow one rule, so a user learns it once: the files or folders
listed in an environment variable (``os.pathsep``-separated), else one
default folder under ``.medkd/``; an empty variable means none (the tests
rely on that); a listed entry that does not exist is an error naming it; two
files giving one name is an error naming both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from medkd_bench.errors import MedkdError

T = TypeVar("T")


def spec_files(env_var: str, default_dir: Path) -> list[Path]:
    """``$env_var``'s files and the ``*.json`` of its folders, else ``default_dir/*.json``; each once, in order."""
    env = os.environ.get(env_var)
    entries = [Path(p) for p in env.split(os.pathsep) if p] if env is not None else [default_dir]
    files: list[Path] = []
    for entry in entries:
        if entry.is_dir():
            files += sorted(entry.glob("*.json"))
        elif entry.is_file():
            files.append(entry)
        elif env is not None:
            raise MedkdError(f"{env_var} entry {entry}: no such file or folder")
    return list(dict.fromkeys(files))


def read_json_spec(path: Path, what: str) -> Any:
    """A spec file's JSON; unreadable or malformed is one line naming ``what`` and the file."""
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise MedkdError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise MedkdError(f"{what} {path}: not valid JSON ({exc})") from exc


def unique_specs(paths: list[Path], read: Callable[[Path], T], name: Callable[[T], str], what: str) -> Iterator[T]:
    """Each file read in turn; a second file giving a name already seen is an error naming both."""
    seen: dict[str, Path] = {}
    for path in paths:
        spec = read(path)
        if name(spec) in seen:
            raise MedkdError(f"{what}s {seen[name(spec)]} and {path} both name {name(spec)!r}")
        seen[name(spec)] = path
        yield spec
