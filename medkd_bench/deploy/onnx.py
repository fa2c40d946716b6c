"""Students as deployed: exported to ONNX, checked with ONNX Runtime, timed on its CPU provider.

The study's point is a student small enough for a clinic's machine, and such
a machine runs an exported graph, not a PyTorch training stack. Each trained
student is exported with torch's own exporter (``torch.onnx.export``, the
``torch.export``-based path, batch size dynamic), then

* **checked**: ONNX Runtime and PyTorch (float32, eval mode) score the whole
  test split; the export is accepted only if no logit differs by more than
  ``ATOL + RTOL * max|logit|`` and every prediction is the same, except on
  images whose two top PyTorch logits are closer than that tolerance (a tie
  either side may break);
* **timed**: batch-1 latency on ONNX Runtime's CPU provider with as many
  intra-op threads as PyTorch uses, after warm-up, median and inter-quartile
  range of at least ``runs`` calls and one second, as the PyTorch latency is.

The packages are an optional extra (``pip install 'medkd-bench[onnx]'``): a
run asked for ``--onnx`` without them stops with one line before any work.
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medkd_bench.errors import MedkdError
from medkd_bench.files.atomic import atomic_write

#: Absolute and relative (to the largest |logit|) tolerance of ONNX Runtime's logits against PyTorch's.
ATOL = 1e-4
RTOL = 1e-4

#: The packages ``--onnx`` needs (onnxscript: torch's exporter builds the graph with it).
PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def require_onnx() -> None:
    """A one-line error naming what to install, before any work, when the ONNX packages are missing."""
    import importlib.util

    missing = [p for p in PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        raise MedkdError(f"--onnx needs the package(s) {', '.join(missing)}: pip install 'medkd-bench[onnx]'")


def export_onnx(model: nn.Module, img_size: int, path: Path) -> Path:
    """Write ``model`` (eval mode, float32) as a self-contained ONNX file with a dynamic batch; ``path``."""
    model = model.eval().float().to(memory_format=torch.contiguous_format)
    x = torch.zeros(2, 3, img_size, img_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (x,), dynamo=True, input_names=["images"], output_names=["logits"],
                                    dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), verbose=False)
    return atomic_write(path, lambda tmp: program.save(str(tmp), external_data=False))


def session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (default: PyTorch's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class OnnxCheck:
    """ONNX Runtime's logits on the test split against PyTorch's."""

    max_abs_diff: float
    tolerance: float
    disagreements: int  # predictions that differ on images whose top two logits are not within tolerance
    ties: int  # predictions that differ where PyTorch's top two logits are within tolerance
    n: int

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.disagreements == 0

    def problem(self) -> str:
        return (f"ONNX Runtime differs from PyTorch on the test split: max |logit difference| "
                f"{self.max_abs_diff:.2e} (tolerance {self.tolerance:.2e}), {self.disagreements} of {self.n} "
                "predictions differ")


@torch.inference_mode()
def check_onnx(path: Path, model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> OnnxCheck:
    """Score normalised float32 ``images`` with ONNX Runtime and PyTorch; compare logits and predictions."""
    model = model.eval().float().to(memory_format=torch.contiguous_format)
    ort_session = session(path)
    ours, theirs = [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].float().contiguous()
        ours.append(model(x).numpy())
        theirs.append(ort_session.run(["logits"], {"images": x.numpy()})[0])
    a, b = np.concatenate(ours).astype(np.float64), np.concatenate(theirs).astype(np.float64)
    tolerance = ATOL + RTOL * float(np.abs(a).max(initial=0.0))
    differ = a.argmax(1) != b.argmax(1)
    top2 = np.sort(a, axis=1)[:, -2:] if a.shape[1] > 1 else np.zeros((len(a), 2))
    close = (top2[:, 1] - top2[:, 0]) <= tolerance
    return OnnxCheck(float(np.abs(a - b).max(initial=0.0)), tolerance, int((differ & ~close).sum()),
                     int((differ & close).sum()), len(a))


def onnx_latency(path: Path, img_size: int, runs: int = 50, min_seconds: float = 1.0,
                 warmup: int = 10, attempts: int | None = None) -> dict[str, float]:
    """Batch-1 latency on ONNX Runtime's CPU provider: median and IQR in ms, runs, and the CPU share it got.

    Timed again while another process held the CPU, as PyTorch's latency is
    (:func:`~medkd_bench.evaluate.cost.quietest`).
    """
    from medkd_bench.evaluate.cost import LATENCY_ATTEMPTS, cpu_share, quietest

    ort_session = session(path)
    x = np.random.default_rng(0).standard_normal((1, 3, img_size, img_size)).astype(np.float32)

    def measure() -> dict[str, float]:
        times: list[float] = []
        total, i = 0.0, 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while i < warmup + runs or total < min_seconds * 1000.0:
            start = time.perf_counter()
            ort_session.run(["logits"], {"images": x})
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
                total += times[-1]
            i += 1
        share = cpu_share(time.process_time() - cpu0, time.perf_counter() - wall0, torch.get_num_threads())
        q = statistics.quantiles(times, n=4)
        return {"onnx_latency_ms": statistics.median(times), "onnx_latency_iqr_ms": q[2] - q[0],
                "onnx_latency_runs": len(times), "onnx_threads": torch.get_num_threads(),
                "onnx_latency_cpu_share": share}

    return quietest(measure, "onnx_latency_cpu_share", attempts=attempts or LATENCY_ATTEMPTS)
