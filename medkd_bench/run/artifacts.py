"""Files a run writes: atomic writes under a per-process temporary name, and writability checks."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from medkd_bench.errors import MedkdError

if TYPE_CHECKING:
    pass


def check_writable(directory: Path, what: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".medkd-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise MedkdError(f"{what} {directory}: not writable ({exc.strerror or exc})") from exc


def atomic_tmp(path: Path) -> Path:
    """A temporary sibling of ``path``, unique per host and process.

    Files are written there and renamed into place, so a reader never sees half
    a file and two workers (on one machine or sharing a work dir over the
    network) writing the same cache never interleave their bytes.
    """
    return path.with_name(f"{path.name}.{socket.gethostname()}-{os.getpid()}.tmp")
