"""Failures that must say what happened: a full disk's probe, a CPU out of memory, a one-image train split.

Each used to leave litter or a misleading message: a 0-byte probe file after
a full-disk ``check_writable``, the CPU allocator's raw enforce failure
instead of the one-line out-of-memory message, and "val logits not finite"
for a train split of one image (no batch can be trained on it).
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from medkd_bench.errors import MedkdError


def test_a_full_disk_write_probe_leaves_no_file(tmp_path, monkeypatch):
    """The probe file is created, then its write fails (ENOSPC): it must not stay behind as 0 bytes."""
    from medkd_bench.system.files import check_writable

    def full_disk(self, *args, **kwargs):
        self.touch()  # open() succeeded: the file exists, empty
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    target = tmp_path / "boards"
    with pytest.raises(MedkdError, match=r"--leaderboard-dir .*boards: not writable \(No space left on device\)"):
        check_writable(target, "--leaderboard-dir")
    assert list(target.iterdir()) == []
