"""Atomic writes: a reader never sees half a file.

Files are written under a temporary name unique to the host, process and
thread, then renamed into place: a reader never sees half a file, and two
writers of the same path (two runs, two workers, a run and ``leaderboard``)
never interleave their bytes or trip over each other's temporary file.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path


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
