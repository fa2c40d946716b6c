"""Where a command may write: a path kept inside its folder, a folder proved writable before any work."""

from __future__ import annotations

from pathlib import Path

from medkd_bench.errors import MedkdError
from medkd_bench.files.atomic import atomic_tmp


def path_inside(base: Path, *parts: str | Path) -> Path:
    """``base / parts...``, refused when it would land outside ``base`` (``..``, an absolute part, a link)."""
    joined = Path(base).joinpath(*parts)
    root = Path(base).resolve()
    if not joined.resolve().is_relative_to(root):
        raise MedkdError(f"{joined}: refused, it would be written outside {base}")
    return joined


def check_writable(directory: Path, what: str) -> None:
    """Create ``directory`` if needed and prove it takes a file: bad input is a one-line error naming ``what``."""
    probe = atomic_tmp(directory / ".medkd-write-test")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        try:
            probe.write_text("ok")
        finally:  # on a full disk the file is created and then its write fails: no empty probe left behind
            probe.unlink(missing_ok=True)
    except OSError as exc:
        raise MedkdError(f"{what} {directory}: not writable ({exc.strerror or exc})") from exc
