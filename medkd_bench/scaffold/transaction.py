"""Writing a scaffold all or nothing: exclusive creates, atomic replace, rollback on failure.

New files are created exclusively (never overwriting), ``pyproject.toml`` is
replaced atomically, and a failure midway removes what was written and
restores the file, so bad input leaves the tree exactly as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from medkd_bench.errors import MedkdError
from medkd_bench.scaffold.request import FileEdit, ScaffoldResult


class _Transaction:
    """Exclusive creates and atomic replaces, undone in reverse order if anything fails."""

    def __init__(self) -> None:
        self.created_files: list[Path] = []
        self.created_dirs: list[Path] = []
        self.replaced: list[tuple[Path, str]] = []

    def make_dirs(self, directory: Path) -> None:
        missing: list[Path] = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            d.mkdir()
            self.created_dirs.append(d)

    def create(self, path: Path, text: str) -> None:
        self.make_dirs(path.parent)
        with path.open("x", encoding="utf-8", newline="") as handle:  # "x": never overwrite
            self.created_files.append(path)
            handle.write(text)

    def replace(self, edit: FileEdit) -> None:
        if edit.path.read_bytes().decode("utf-8") != edit.old:
            raise MedkdError(f"{edit.path} changed while scaffolding: run add-plugin again")
        tmp = edit.path.with_name(f".{edit.path.name}.medkd-tmp")
        tmp.write_bytes(edit.new.encode("utf-8"))
        try:
            shutil.copymode(edit.path, tmp)
            os.replace(tmp, edit.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.replaced.append((edit.path, edit.old))

    def rollback(self) -> None:
        for path, old in reversed(self.replaced):
            path.write_bytes(old.encode("utf-8"))
        for path in reversed(self.created_files):
            path.unlink(missing_ok=True)
        for directory in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                directory.rmdir()


def apply(result: ScaffoldResult) -> None:
    """Write the planned files, then the edits; on any failure leave the tree as it was."""
    transaction = _Transaction()
    try:
        for new_file in result.files:
            transaction.create(new_file.path, new_file.text)
        for edit in result.edits:
            transaction.replace(edit)
    except BaseException as exc:
        transaction.rollback()
        if isinstance(exc, OSError):
            culprit = exc.filename or "a file"
            raise MedkdError(f"writing {culprit} failed ({exc.strerror or exc}); nothing was written") from exc
        raise
