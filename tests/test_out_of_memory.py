"""Out of device memory: the cell fails alone, with one line naming it and its batch size."""

import pytest
import torch

from medkd_bench.registry import load_registry
from medkd_bench.run.store import Store
from tests.helpers import QUICK


@pytest.mark.slow
def test_out_of_memory_fails_the_cell_alone_with_its_batch_size(run_cli, tmp_path, monkeypatch):
    import medkd_bench.train.loop as loop

    real_step = loop.Trainer.step

    def step(self, idx, flipped, images):  # the student's steps run out of memory; the teacher's fit
        if type(self.model).__name__ == "MobileNetV3":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 139 GiB total)")
        return real_step(self, idx, flipped, images)

    monkeypatch.setattr(loop.Trainer, "step", step)
    work = tmp_path / "work"
    result = run_cli([*QUICK, "--datasets", "synthetic-cxr", "--explainers", "grad-cam", "--work-dir", str(work),
                      "--leaderboard-dir", str(tmp_path / "boards")])
    assert result.exit_code == 1 and "1 trained, 0 already done, 2 failed" in result.out, result.out  # failed cells: exit 1
    with Store(work / "runs.sqlite") as store:
        cells = {c.method: c for c in store.cells()}
    assert cells["teacher"].status == "done"
    batch = load_registry().get("student", "ofa-595").train.batch_size  # the spec's, named in the message
    for method in ("label-only", "kd"):
        assert cells[method].status == "failed"
        assert cells[method].error.startswith(
            f"out of CPU memory training synthetic-cxr | {'student ofa-595 (labels only)' if method == 'label-only' else 'visformer-s -> ofa-595 (kd)'}"
            f" | seed 0 at batch size {batch} (CUDA out of memory. Tried to allocate 20.00 GiB"), cells[method].error
        assert "\n" not in cells[method].error and "--img-size" in cells[method].error
