"""Spec files the host discovers (searched students, added datasets): finding them, reading them, no two alike.

Both kinds follow one rule, so a user learns it once: the files or folders
listed in an environment variable (``os.pathsep``-separated), else one
default folder under ``.medkd/``; an empty variable means none of those (the
tests rely on that); a listed entry that does not exist is an error naming
it; two files giving one name is an error naming both.

On top of that, a command given ``--work-dir W`` also reads ``W``'s folder of
that kind (``W/datasets/``, ``W/students/``): that is where ``datasets add
--work-dir W`` and ``student search --work-dir W`` write, so what a user adds
with a work dir is found by every command given the same work dir, with no
environment variable to set. The work dir reaches discovery through
:func:`specs_in_work_dir`, which :func:`medkd_bench.registry.load_registry`
wraps around the plugins' hooks: plugins keep calling ``iter_folder_datasets()``
with no argument, and worker processes pass the run's work dir the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from medkd_bench.errors import MedkdError

T = TypeVar("T")


#: The work dir of the command loading the registry (None: no work dir, e.g. ``plugins`` without one).
_WORK_DIR: ContextVar[Path | None] = ContextVar("medkd_spec_work_dir", default=None)


@contextlib.contextmanager
def specs_in_work_dir(work_dir: Path | None) -> Iterator[None]:
    """Within the block, :func:`spec_files` also reads ``work_dir``'s folder of each kind (None: no change).

    A context variable rather than a parameter: the plugins that register spec
    files are called through pluggy hooks whose signature third-party plugins
    implement too, and the work dir is a property of the command, not of a plugin.
    """
    token = _WORK_DIR.set(Path(work_dir) if work_dir is not None else None)
    try:
        yield
    finally:
        _WORK_DIR.reset(token)


def spec_files(env_var: str, default_dir: Path) -> list[Path]:
    """``$env_var``'s files and the ``*.json`` of its folders, else ``default_dir/*.json``; each once, in order.

    Then, inside :func:`specs_in_work_dir`, the ``*.json`` of the work dir's
    folder named like ``default_dir`` (``W/datasets`` for ``.medkd/datasets``),
    when it exists: a work dir with nothing added yet is not an error.
    """
    env = os.environ.get(env_var)
    listed = [Path(p) for p in env.split(os.pathsep) if p] if env is not None else []
    entries = listed if env is not None else [default_dir]
    work_dir = _WORK_DIR.get()
    if work_dir is not None:
        entries = [*entries, work_dir / default_dir.name]
    files: list[Path] = []
    for entry in entries:
        if entry.is_dir():
            files += sorted(entry.glob("*.json"))
        elif entry.is_file():
            files.append(entry)
        elif entry in listed:  # only what the user listed must exist
            raise MedkdError(f"{env_var} entry {entry}: no such file or folder")
    unique: dict[Path, Path] = {}  # one file reached twice (the default folder is the default work dir's) counts once
    for path in files:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


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
