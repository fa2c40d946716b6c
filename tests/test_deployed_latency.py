"""Batch-1 latency as deployed on CUDA, tested on CPU: conversion, the float32 check, fallbacks, the method.

No test needs a GPU. The only CUDA-only step, graph capture, is a parameter of
:func:`measure_deployed`: here a stand-in returns the converted model's eager
forward on the static input (what a replay computes), or raises as a failed
capture does. Everything else (the deep copy, fp16/bf16 weights, channels-last,
the argmax check against float32, timing with a synchronise around each run)
runs for real on real timm models, since CPU PyTorch has fp16 and bf16 convolutions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
import timm
import torch
from torch import nn

from medkd_bench.deploy.cuda import (
    CHECK_INPUTS,
    WARMUP,
    compare_argmax,
    deployed_latency,
    measure_deployed,
)
from medkd_bench.errors import MedkdError
from medkd_bench.evaluate.cost import timed_metrics
from medkd_bench.evaluate.timing import median_iqr
from medkd_bench.runtime.device import Runtime, gpu_deploy_dtype, resolve_runtime
from medkd_bench.specs import StudentSpec

IMG = 32


@dataclass(frozen=True)
class CountingRuntime(Runtime):
    """A CPU runtime that records the synchronise hook (a CUDA sync on a GPU)."""

    syncs: list[int] = field(default_factory=list)

    def synchronize(self) -> None:
        self.syncs.append(1)


def _spec(**fields) -> StudentSpec:
    return StudentSpec(name="m", build=lambda c, s: nn.Linear(1, c), target_layers=lambda m: [m], **fields)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet10t", num_classes=3).eval()


class Captured:
    """Stands in for :func:`capture_cuda_graph` on CPU: records what it was given, replays eagerly."""

    def __init__(self, transform=lambda y: y):
        self.seen: list[tuple[torch.dtype, bool, bool]] = []
        self.transform = transform

    def __call__(self, module: nn.Module, x: torch.Tensor):
        weight = next(module.parameters())
        self.seen.append((weight.dtype, x.is_contiguous(memory_format=torch.channels_last), module.training))
        return lambda: self.transform(module(x))


def test_cpu_has_no_deployed_latency_and_cpu_pages_keep_their_keys(model, monkeypatch):
    """On CPU the deployment figure is ONNX Runtime's: nothing is timed here and no key is added."""
    monkeypatch.setattr("medkd_bench.evaluate.cost.QUIET_CPU_SHARE", 0.0)  # no retries on a busy machine
    assert deployed_latency(model, _spec(), IMG, Runtime(torch.device("cpu"))) == {}
    small = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    timed = timed_metrics(small, 8, Runtime(torch.device("cpu")), latency_runs=3, latency_seconds=0.0, spec=_spec())
    assert "latency_ms" in timed and not any(k.startswith("latency_deployed") for k in timed)


def test_deploy_dtype_per_spec_and_a_typo_is_one_line():
    assert gpu_deploy_dtype(_spec(), True) == torch.float16  # the default
    assert gpu_deploy_dtype(_spec(gpu_deploy_dtype="bf16"), True) == torch.bfloat16
    assert gpu_deploy_dtype(_spec(gpu_deploy_dtype="bf16"), False) == torch.float16  # GPUs without bf16
    assert gpu_deploy_dtype(_spec(gpu_deploy_dtype="fp32"), False) == torch.float32
    cuda = resolve_runtime("cuda", "auto", cuda_available=True, bf16_supported=True)
    # Checked when the runtime is made for the model, before training, on CUDA whatever --amp says.
    for rt in (cuda, resolve_runtime("cuda", "off", cuda_available=True, bf16_supported=True)):
        with pytest.raises(MedkdError, match=r"^model 'm': gpu_deploy_dtype 'half' is not one of fp16, bf16, fp32$"):
            rt.for_model(_spec(gpu_deploy_dtype="half"))
    resolve_runtime("cpu", "auto").for_model(_spec(gpu_deploy_dtype="half"))  # unused on CPU


def test_graph_path_converts_a_copy_checks_it_and_times_each_replay_synchronised(model):
    rt = CountingRuntime(torch.device("cpu"))
    capture = Captured()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = measure_deployed(model, IMG, rt, torch.float16, True, runs=5, min_seconds=0.0, capture=capture)
    assert out["latency_deployed_method"] == "CUDA graph, fp16, channels-last"
    assert capture.seen == [(torch.float16, True, False)]  # fp16 weights, channels-last input, eval mode
    assert out["latency_deployed_checked"] == CHECK_INPUTS and out["latency_deployed_agree"] == CHECK_INPUTS
    assert 0 < out["latency_deployed_max_abs_logit_diff"] < 0.05
    assert out["latency_deployed_runs"] == 5 and out["latency_deployed_ms"] > 0
    assert out["latency_deployed_iqr_ms"] >= 0
    assert len(rt.syncs) == 2 * (WARMUP + 5)  # before and after every replay, warm-up included
    # The model the cell scored is untouched: a deep copy was converted.
    assert next(model.parameters()).dtype == torch.float32
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_failed_capture_falls_back_to_eager_in_the_same_dtype_and_says_why(model):
    def refuses(module, x):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nCUDA kernel errors ...")

    out = measure_deployed(model, IMG, Runtime(torch.device("cpu")), torch.bfloat16, False, runs=3,
                           min_seconds=0.0, capture=refuses)
    assert out["latency_deployed_method"] == ("eager, bf16 (graph capture failed: RuntimeError: CUDA error: "
                                              "operation not permitted when stream is capturing)")
    assert out["latency_deployed_agree"] == CHECK_INPUTS and out["latency_deployed_ms"] > 0


class Overflows(nn.Module):
    """A real CNN whose logits exceed fp16's range (65504), as an unnormalised VGG's activations can."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3)
        self.head = nn.Linear(8, 3)
        with torch.no_grad():  # logits near 1e6 in float32 (finite); fp16 makes them inf
            self.conv.weight.mul_(100.0)
            self.head.weight.mul_(1e5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def test_a_conversion_that_breaks_the_model_is_timed_in_fp32_with_a_warning():
    capture = Captured()
    out = measure_deployed(Overflows().eval(), IMG, Runtime(torch.device("cpu")), torch.float16, True, runs=3,
                           min_seconds=0.0, capture=capture)
    assert [dtype for dtype, _, _ in capture.seen] == [torch.float16, torch.float32]
    assert out["latency_deployed_method"] == "CUDA graph, fp32, channels-last (fp16 gave non-finite logits ⚠)"
    assert out["latency_deployed_agree"] == CHECK_INPUTS and out["latency_deployed_ms"] > 0


def test_a_graph_that_changes_answers_in_every_dtype_publishes_no_number(model):
    """A replay that does not compute the float32 model's answers (here: negated logits) is never timed."""
    out = measure_deployed(model, IMG, Runtime(torch.device("cpu")), torch.float16, True, runs=3,
                           min_seconds=0.0, capture=Captured(transform=lambda y: -y))
    assert "latency_deployed_ms" not in out
    assert re.fullmatch(r"not published: fp16 changed the argmax on \d+/16 inputs; "
                        r"fp32 changed the argmax on \d+/16 inputs ⚠", out["latency_deployed_method"])
    assert "/16 inputs; fp32 changed the argmax on 0/16" not in out["latency_deployed_method"]


def test_argmax_check_excuses_only_near_ties_and_rejects_non_finite_logits():
    reference = torch.tensor([[5.0, 1.0, 0.0], [2.0, 1.99, 0.0], [1.0, 3.0, 0.5]])
    same = compare_argmax(reference, reference + 0.01)
    assert same.ok and (same.agree, same.ties) == (3, 0) and same.max_abs_diff == pytest.approx(0.01, rel=1e-4)
    # Input 2's classes 0 and 1 are 0.01 apart in float32 (0.5% of its largest logit): a flip there is rounding.
    tie = compare_argmax(reference, torch.tensor([[5.0, 1.0, 0.0], [1.99, 2.0, 0.0], [1.0, 3.0, 0.5]]))
    assert tie.ok and (tie.agree, tie.ties) == (2, 1)
    flip = compare_argmax(reference, torch.tensor([[1.0, 5.0, 0.0], [2.0, 1.99, 0.0], [1.0, 3.0, 0.5]]))
    assert not flip.ok and flip.problem("fp16") == "fp16 changed the argmax on 1/3 inputs"
    inf = compare_argmax(reference, torch.tensor([[float("inf"), 1.0, 0.0], *reference[1:].tolist()]))
    assert not inf.ok and inf.problem("fp16") == "fp16 gave non-finite logits"


def test_a_failure_on_the_device_is_named_never_raised(model, capsys):
    """A CUDA runtime on a machine without CUDA: the measurement fails for real; the cell keeps its scores."""
    fake_cuda = Runtime(torch.device("cuda"))
    out = deployed_latency(model, _spec(), IMG, fake_cuda, runs=3, min_seconds=0.0)
    assert set(out) == {"latency_deployed_method"}
    assert out["latency_deployed_method"].startswith("not measured: ") and out["latency_deployed_method"].endswith("⚠")
    assert "m: latency as deployed not measured" in capsys.readouterr().err.replace("\n", " ")


def test_median_and_iqr():
    assert median_iqr([1.0, 2.0, 3.0, 4.0, 100.0]) == (3.0, 52.0 - 1.5)  # quartiles, 'exclusive' method
    assert median_iqr([2.0]) == (2.0, 0.0)


@pytest.mark.slow
def test_every_cells_cost_gets_it_with_the_cells_own_spec(tmp_path, monkeypatch):
    """``CellComputer.cost_of`` hands the cell's spec to ``timed_metrics``: on a GPU the spec picks the dtype.

    ``deployed_latency`` is replaced by what it does on CUDA (the capture step
    being the CPU stand-in), since this machine has no GPU.
    """
    import medkd_bench.deploy.cuda as deployed
    import medkd_bench.evaluate.cost as cost
    from medkd_bench.registry import load_registry
    from medkd_bench.run.cells import Cell
    from medkd_bench.run.computer import CellComputer
    from medkd_bench.run.run_options import RunOptions

    def as_on_a_gpu(model, spec, img_size, runtime, runs, min_seconds):
        return measure_deployed(model, img_size, runtime, gpu_deploy_dtype(spec, True), spec.gpu_channels_last,
                                runs, 0.0, capture=Captured())

    monkeypatch.setattr(deployed, "deployed_latency", as_on_a_gpu)
    monkeypatch.setattr(cost, "QUIET_CPU_SHARE", 0.0)  # one eager timing even on a busy CI machine
    registry = load_registry()
    computer = CellComputer(registry, RunOptions(work_dir=tmp_path, img_size=IMG, latency_runs=3, latency_seconds=0),
                            resolve_runtime("cpu", "off"))
    student = registry.get("student", "ofa-595")
    out = computer.cost_of(Cell("synthetic-cxr", "label-only", student="ofa-595"), student.build(3, IMG).eval())
    # OFA-595 trains contiguous on the GPU (its spec), so it is deployed contiguous, in the default fp16.
    assert out["latency_deployed_method"] == "CUDA graph, fp16" and out["latency_deployed_ms"] > 0
    assert out["latency_ms"] > 0 and out["gmacs"] > 0


def test_stored_timings_are_redone_once_for_what_the_device_records():
    """A GPU store from before latency as deployed gets it on the next run, as CPU stores got the CPU share."""
    from medkd_bench.run.runner import needs_timing

    assert needs_timing({}, "cpu") and needs_timing({}, "cuda")
    assert needs_timing({"latency_ms": 5.0}, "cpu")
    assert not needs_timing({"latency_ms": 5.0, "latency_cpu_share": 1.0}, "cpu")
    # A timing taken beside other work (flagged busy on the pages) is retaken until one is quiet.
    assert needs_timing({"latency_ms": 5.0, "latency_cpu_share": 0.55}, "cpu")
    assert needs_timing({"latency_ms": 5.0}, "cuda")
    assert not needs_timing({"latency_ms": 5.0, "latency_deployed_method": "not measured: ... ⚠"}, "cuda")
