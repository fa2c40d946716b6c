"""One run per work dir at a time: an OS file lock held for the whole run.

Two runs on one work dir would both train every unfinished cell and race on
its artifacts. The lock (``filelock``: ``fcntl`` on Unix, released by the OS
when its process dies, so a killed run never leaves a stale lock) is taken
before any work starts; the second run stops with a one-line error naming the
holder's PID, which the holder writes beside the lock.
"""

from __future__ import annotations

import os
from pathlib import Path

import filelock

from medkd_bench.errors import MedkdError
from medkd_bench.files.atomic import atomic_write_text

LOCK_FILE = "run.lock"


class WorkDirLock:
    """``with WorkDirLock(work_dir):`` holds the work dir for one run, or raises :class:`MedkdError`."""

    def __init__(self, work_dir: Path):
        self.work_dir = Path(work_dir)
        self.path = self.work_dir / LOCK_FILE
        self.pid_path = self.work_dir / f"{LOCK_FILE}.pid"
        self._lock = filelock.FileLock(str(self.path))

    def holder(self) -> str:
        try:
            return self.pid_path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def __enter__(self) -> WorkDirLock:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            raise MedkdError(f"work dir {self.work_dir}: another medkd-bench run (PID {self.holder()}) is using it; "
                             "wait for it to finish or use another work dir") from None
        atomic_write_text(self.pid_path, f"{os.getpid()}\n")
        return self

    def __exit__(self, *exc: object) -> None:
        self.pid_path.unlink(missing_ok=True)
        self._lock.release()
