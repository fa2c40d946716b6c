"""One helper for each file job every layer shares: atomic writes, paths kept inside their folder, digests.

Files are written under a temporary name unique to the host, process and
thread, then renamed into place: a reader never sees half a file, and two
writers of the same path (two runs, two workers, a run and ``leaderboard``)
never interleave their bytes or trip over each other's temporary file.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from medkd_bench.errors import MedkdError


def atomic_tmp(path: Path) -> Path:
    """A temporary sibling of ``path``, unique per host, process and thread."""
    return path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}.tmp")


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to fill a temporary sibling of ``path``, then rename it into place; ``path``.

    The temporary file is removed if ``write`` fails (a full disk, say), so a
    failed write leaves neither half a file nor litter behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_tmp(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


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


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, hex: recorded with every artifact and checked when it is read back.

    Memoised on (path, size, modification time): a rerun checks each checkpoint
    once per process, and VGG19's is half a gigabyte.
    """
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return bytes_sha256(Path(path))


def bytes_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read now: not memoised, for a file just written under a reused name."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
