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
    from medkd_bench.files.paths import check_writable

    def full_disk(self, *args, **kwargs):
        self.touch()  # open() succeeded: the file exists, empty
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    target = tmp_path / "boards"
    with pytest.raises(MedkdError, match=r"--leaderboard-dir .*boards: not writable \(No space left on device\)"):
        check_writable(target, "--leaderboard-dir")
    assert list(target.iterdir()) == []


#: PyTorch's CPU allocator refusing, as it words it on Linux and on Windows (a RuntimeError, not an OutOfMemoryError).
CPU_ALLOCATOR_ERRORS = [
    "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate "
    "2147483648 bytes. Error code 12 (Cannot allocate memory)",
    "[enforce fail at C:\\actions-runner\\_work\\pytorch\\c10\\core\\impl\\alloc_cpu.cpp:72] data. "
    "DefaultCPUAllocator: not enough memory: you tried to allocate 2147483648 bytes.",
]


@pytest.mark.parametrize("error", [RuntimeError(m) for m in CPU_ALLOCATOR_ERRORS] + [MemoryError()],
                         ids=["linux-allocator", "windows-allocator", "python-memoryerror"])
def test_a_cpu_out_of_memory_is_the_one_line_batch_size_message(error):
    from types import SimpleNamespace

    import torch

    from medkd_bench.run.cells import Cell
    from medkd_bench.run.memory import out_of_memory_named
    from medkd_bench.specs import TrainSettings

    cell = Cell("synthetic-cxr", "label-only", student="ofa-595")
    runtime = SimpleNamespace(device=torch.device("cpu"))
    with pytest.raises(MedkdError) as caught:
        with out_of_memory_named(cell, TrainSettings(batch_size=32), runtime):  # type: ignore[arg-type]
            raise error
    message = str(caught.value)
    assert message.startswith("out of CPU memory training synthetic-cxr | student ofa-595 (labels only) | seed 0 "
                              "at batch size 32 ("), message
    assert message.endswith("); try a smaller --img-size") and "\n" not in message
    assert "enforce fail" not in message  # the allocator's own words, not its source location
    if isinstance(error, RuntimeError):
        assert "you tried to allocate 2147483648 bytes" in message


def test_other_runtime_errors_pass_through_unchanged():
    from types import SimpleNamespace

    import torch

    from medkd_bench.run.cells import Cell
    from medkd_bench.run.memory import out_of_memory_named
    from medkd_bench.specs import TrainSettings

    runtime = SimpleNamespace(device=torch.device("cpu"))
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        with out_of_memory_named(Cell("synthetic-cxr", "teacher", teacher="vgg19"), TrainSettings(), runtime):  # type: ignore[arg-type]
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)")


def test_a_train_split_of_one_image_is_refused_before_any_training(run_cli, dirs, tmp_path):
    """``n_train=1``: no batch of two exists, so nothing would train; say so before the first cell, not as
    "val logits not finite" in every cell."""
    from tests.helpers import QUICK, assert_one_line_error

    result = run_cli([*QUICK, "--datasets", "synthetic-cxr", "--dataset-option", "synthetic-cxr.n_train=1", *dirs])
    assert_one_line_error(result, "dataset 'synthetic-cxr': the train split has 1 image(s); training needs at least 2",
                          "batch norm")
    assert not (tmp_path / "work" / "checkpoints").exists()
