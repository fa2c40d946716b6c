"""Spine benchmark: full-matrix wall time, and harness vs bare-loop training throughput.

Both figures are measured in this one run, on this machine:

1. ``medkd-bench run --matrix full`` on the embedded default in a fresh work
   directory (wall time, and the per-cell timings from the store).
2. For each model, training images/s of :func:`medkd_bench.distill.fit`
   (the harness: schedule, clipping, BN recalibration excluded since it is
   timed outside the train phase) against a bare PyTorch loop (AdamW +
   cross-entropy) over the same model, data tensors and batch size. The
   ratio is harness / bare; 1.0 means no overhead.

Usage: python benchmarks/bench_spine.py [--skip-matrix] [--models ofa-595,visformer-s] [--epochs 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from medkd_bench.data import prepare, train_batches
from medkd_bench.distill import fit
from medkd_bench.plugins import load_registry
from medkd_bench.runtime import resolve_runtime
from medkd_bench.store import Store


def bare_loop_images_per_s(model, data, batch_size: int, epochs: int, lr: float, seed: int) -> float:
    """The simplest correct loop: same batches, AdamW, cross-entropy, nothing else."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    labels = data.splits["train"].labels
    model.train()
    seen, spent = 0, 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        for idx, _, images in train_batches(data, batch_size, generator):
            loss = F.cross_entropy(model(data.normalise(images)), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(idx)
        spent += time.perf_counter() - start
    return seen / spent


def harness_ratio(models: list[str], epochs: int) -> None:
    registry = load_registry()
    data = prepare(registry.datasets["synthetic-cxr"], None, None, {})
    runtime = resolve_runtime("cpu", "off")
    print(f"{'model':<18}{'batch':>6}{'bare img/s':>12}{'harness img/s':>15}{'ratio':>8}")
    for name in models:
        spec = registry.teachers.get(name) or registry.students[name]
        settings = spec.train.replace(epochs=epochs)
        bare = bare_loop_images_per_s(spec.build(3, data.img_size), data, settings.batch_size, epochs,
                                      settings.lr, seed=0)
        result = fit(spec.build(3, data.img_size), data, settings, runtime, seed=0)
        ratio = result.images_per_second / bare
        print(f"{name:<18}{settings.batch_size:>6}{bare:>12.1f}{result.images_per_second:>15.1f}{ratio:>8.3f}")


def matrix_wall_time() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work, boards = Path(tmp) / "work", Path(tmp) / "boards"
        cmd = [sys.executable, "-m", "medkd_bench.cli", "run", "--matrix", "full",
               "--work-dir", str(work), "--leaderboard-dir", str(boards)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        with Store(work / "runs.sqlite") as store:
            cells = store.cells()
        print(f"full matrix: {len(cells)} cells in {wall:.0f} s wall ({wall / 60:.1f} min)")
        for c in cells:
            t = c.timings
            print(f"  {c.method:<10} {c.teacher or '-':<16} {c.student or '-':<8} acc {c.metrics.get('accuracy', 0):.3f}"
                  f"  train {t.get('train_s', 0):6.1f}s  score {t.get('score_s', 0):5.1f}s"
                  f"  explain {t.get('explain_s', 0):5.1f}s  total {t.get('total_s', 0):6.1f}s")
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        print(f"rerun (all cells finished): {time.perf_counter() - start:.1f} s wall")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-matrix", action="store_true")
    parser.add_argument("--models", default="ofa-595,visformer-s,autoformer-v2-t,vgg19")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    harness_ratio(args.models.split(","), args.epochs)
    if not args.skip_matrix:
        matrix_wall_time()


if __name__ == "__main__":
    main()
