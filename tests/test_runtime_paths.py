"""GPU-readiness without a GPU: the device, AMP and channels-last choices, and the timing hooks.

No test here needs CUDA. The CUDA branches of :func:`resolve_runtime` are reached by
telling it what the machine has; the training and timing code then runs for real on
CPU with the same runtime methods a GPU run calls (channels-last layout, bf16
autocast, the synchronize hook), so a CPU-only CI covers those code paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from medkd_bench.data.prepare import prepare
from medkd_bench.errors import MedkdError
from medkd_bench.evaluate.cost import measure_latency, measure_throughput
from medkd_bench.registry import load_registry
from medkd_bench.runtime.device import Runtime, amp_dtype_for, resolve_runtime
from medkd_bench.specs import TrainSettings
from medkd_bench.train.loop import fit


@pytest.mark.parametrize(("device", "amp", "bf16", "expected"), [
    ("cpu", "auto", False, None),             # CPU stays exact float32 unless asked
    ("cpu", "off", False, None),
    ("cpu", "bf16", False, torch.bfloat16),
    ("cuda", "auto", True, torch.bfloat16),   # Ampere and later
    ("cuda", "auto", False, torch.float16),   # older GPUs: fp16 (with a gradient scaler)
    ("cuda", "fp16", True, torch.float16),
    ("cuda", "off", True, None),
])
def test_amp_choice(device, amp, bf16, expected):
    assert amp_dtype_for(device, amp, bf16) == expected


def test_amp_rejects_fp16_on_cpu_and_unknown_modes():
    with pytest.raises(MedkdError, match="--amp fp16: only on CUDA"):
        amp_dtype_for("cpu", "fp16", False)
    with pytest.raises(MedkdError, match="--amp fp8"):
        amp_dtype_for("cuda", "fp8", True)


def test_cuda_runtime_without_a_gpu():
    fp16 = resolve_runtime("cuda", "auto", cuda_available=True, bf16_supported=False)
    assert fp16.device.type == "cuda" and fp16.amp_dtype == torch.float16 and fp16.channels_last
    assert fp16.needs_grad_scaler and isinstance(fp16.grad_scaler(), torch.amp.GradScaler)
    assert fp16.describe() == "cuda (per-model fast path: fp32/tf32/bf16/fp16, channels-last)"
    forced = resolve_runtime("cuda", "fp16", cuda_available=True, bf16_supported=True)
    assert forced.describe() == "cuda (float16, channels-last)" and not forced.gpu_auto
    bf16 = resolve_runtime("cuda:1", "auto", cuda_available=True, bf16_supported=True)
    assert bf16.device == torch.device("cuda", 1) and bf16.amp_dtype == torch.bfloat16
    assert not bf16.needs_grad_scaler and bf16.grad_scaler() is None  # bf16 has float32's range

    cpu = resolve_runtime("auto", "auto", cuda_available=False)
    assert cpu.device.type == "cpu" and cpu.amp_dtype is None and not cpu.channels_last
    assert cpu.grad_scaler() is None
    with pytest.raises(MedkdError, match="--device cuda: CUDA is not available"):
        resolve_runtime("cuda", cuda_available=False)
    with pytest.raises(MedkdError, match="--device tpu: expected auto, cpu or cuda"):
        resolve_runtime("tpu", cuda_available=False)


@dataclass(frozen=True)
class CountingRuntime(Runtime):
    """A CPU runtime that records calls of the synchronize hook (a no-op on CPU, a CUDA sync on GPU)."""

    syncs: list[int] = field(default_factory=list)

    def synchronize(self) -> None:
        self.syncs.append(1)


def test_latency_and_throughput_wait_for_the_device_around_every_timed_run():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    rt = CountingRuntime(torch.device("cpu"))
    measure_latency(model, 16, rt, warmup=2, runs=5)
    assert len(rt.syncs) == 2 * (2 + 5)  # before and after each run, warm-up included
    rt.syncs.clear()
    measure_throughput(model, 16, rt, batch_size=4, runs=3)
    assert len(rt.syncs) == 2 * (3 + 1)


class Probe(nn.Module):
    """A small real CNN that notes the layout and dtype its convolution sees."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, num_classes)
        self.seen: set[tuple[bool, torch.dtype]] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        self.seen.add((x.is_contiguous(memory_format=torch.channels_last), y.dtype))
        return self.head(torch.relu(self.bn(y)).mean((2, 3)))


@pytest.fixture(scope="module")
def tiny_data():
    spec = load_registry().get("dataset", "synthetic-cxr")
    return prepare(spec, 32, None, {"n_train": 16, "n_val": 6, "n_test": 6})


@pytest.mark.parametrize(("amp_dtype", "channels_last"), [(None, True), (torch.bfloat16, False)])
def test_training_uses_the_runtime_layout_and_precision(tiny_data, amp_dtype, channels_last):
    model = Probe(tiny_data.num_classes)
    rt = CountingRuntime(torch.device("cpu"), amp_dtype, channels_last=channels_last)
    result = fit(model, tiny_data, TrainSettings(epochs=1, batch_size=8), rt, seed=0)
    assert len(result.history) == 1 and result.train_seconds > 0
    assert rt.syncs, "training time must be taken after the device finished"
    assert model.seen == {(channels_last, amp_dtype or torch.float32)}
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last) == channels_last


def _spec(**gpu):
    from medkd_bench.specs import StudentSpec

    return StudentSpec(name="m", build=lambda c, s: torch.nn.Linear(1, c), target_layers=lambda m: [m], **gpu)


@pytest.mark.parametrize(("choice", "channels_last", "bf16", "amp_dtype", "tf32", "precision"), [
    ("fp32", False, True, None, False, "fp32"),
    ("tf32", False, True, None, True, "tf32"),
    ("bf16", True, True, torch.bfloat16, False, "bf16+cl"),
    ("bf16", True, False, torch.float16, False, "fp16+cl"),  # a GPU without bf16 falls back to fp16
    ("fp16", False, True, torch.float16, False, "fp16"),
])
def test_gpu_auto_follows_each_spec(choice, channels_last, bf16, amp_dtype, tf32, precision):
    """``--amp auto`` on CUDA: each architecture's measured GPU choice, hashed through ``precision``."""
    auto = resolve_runtime("cuda", "auto", cuda_available=True, bf16_supported=bf16)
    rt = auto.for_model(_spec(gpu_precision=choice, gpu_channels_last=channels_last))
    assert (rt.amp_dtype, rt.tf32, rt.channels_last, rt.precision) == (amp_dtype, tf32, channels_last, precision)
    assert not rt.gpu_auto and rt.needs_grad_scaler == (amp_dtype == torch.float16)
    # An explicit --amp overrides every spec; --amp off is float32 without TF32.
    off = resolve_runtime("cuda", "off", cuda_available=True, bf16_supported=bf16).for_model(_spec(gpu_precision=choice))
    assert (off.amp_dtype, off.tf32, off.precision) == (None, False, "fp32+cl")


@pytest.mark.parametrize("amx", [False, True])
def test_amp_fp32_keeps_the_fast_layout_and_hashes_alike_with_and_without_amx(monkeypatch, amx):
    """``--amp fp32``: auto's layouts in float32, so an AMX CPU computes the cells a CPU without AMX does.

    Recorded as a page setting only where it changes some model's numerics: a run split over
    both kinds of machine (``auto`` here, ``fp32`` there) makes one leaderboard page.
    """
    from medkd_bench.runtime import device
    from medkd_bench.runtime.device import recorded_amp

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: amx)
    teacher = _spec(cpu_bf16=True, cpu_channels_last=True)
    student = _spec(cpu_channels_last=True)
    auto, fp32, off = (resolve_runtime("cpu", a) for a in ("auto", "fp32", "off"))
    assert fp32.describe() == "cpu (per-model fast path: fp32, channels-last)"
    assert [fp32.for_model(s).precision for s in (teacher, student)] == ["fp32+cl", "fp32+cl"]
    assert auto.for_model(teacher).precision == ("bf16+cl" if amx else "fp32+cl")
    assert recorded_amp(fp32, "fp32", [teacher, student]) is None
    assert recorded_amp(auto, "auto", [teacher, student]) == ("auto" if amx else None)
    assert recorded_amp(auto, "auto", [student]) is None  # no planned model takes bf16: the same cells
    assert recorded_amp(off, "off", [teacher]) == "off"  # the default layout rounds differently

    gpu = {a: resolve_runtime("cuda", a, cuda_available=True, bf16_supported=True) for a in ("auto", "fp32")}
    tf32 = _spec(gpu_precision="tf32", gpu_channels_last=True)
    assert gpu["fp32"].for_model(tf32).precision == "fp32+cl" and gpu["auto"].for_model(tf32).precision == "tf32+cl"
    assert recorded_amp(gpu["auto"], "auto", [tf32]) is None and recorded_amp(gpu["fp32"], "fp32", [tf32]) == "fp32"


def test_gpu_precision_typo_and_compile_mode_are_named():
    auto = resolve_runtime("cuda", "auto", cuda_available=True, bf16_supported=True)
    with pytest.raises(MedkdError, match="model 'm': gpu_precision 'bfloat16' is not one of fp32, tf32, bf16, fp16"):
        auto.for_model(_spec(gpu_precision="bfloat16"))
    with pytest.raises(MedkdError, match="--compile fast: expected one of off, default, reduce-overhead"):
        resolve_runtime("cpu", "auto", compile_mode="fast")
    compiled = resolve_runtime("cpu", "off", compile_mode="default")
    assert compiled.precision == "fp32+compile:default" and "torch.compile default" in compiled.describe()
    assert resolve_runtime("cpu", "off").precision == "fp32"  # eager strings unchanged: stored cells stay valid


def test_tf32_flags_are_set_for_the_model_and_restored():
    """TF32 is process-wide in PyTorch: the runtime sets it around each model's work and puts it back."""
    from medkd_bench.runtime.device import tf32_enabled

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with tf32_enabled(True):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        with tf32_enabled(False):
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
