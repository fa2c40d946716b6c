"""Device and mixed-precision choice, made once per run and refined per model.

``--amp auto`` follows each model spec's measured fast path. On CPU: bf16
autocast for architectures that gain from it, on CPUs with native bf16 matrix
units (AMX), channels-last for those that gain from that; everything else runs
in float32. On CUDA: the spec's ``gpu_precision`` (fp32, TF32, bf16 or fp16
autocast) and ``gpu_channels_last``; a depthwise-separable student that is
launch-bound at small batches runs faster in plain float32 than in bf16. TF32
is set explicitly for every CUDA model (PyTorch's defaults differ between
matmuls and convolutions), so ``fp32`` means float32 throughout. The precision
each model ran in is part of its cell's config hash, so results from different
precisions are never mixed up. ``--amp off`` forces float32 (TF32 off), and
``--amp bf16``/``fp16`` force that autocast for every model (channels-last on CUDA).
``--amp fp32`` is ``auto`` in float32 throughout (no autocast, TF32 off): each model keeps its
layout fast path, so a CPU run hashes the same on a CPU with AMX as on one without, and a long
run can be resumed, or extended, on either kind of machine.
CUDA results are not bit-repeatable unless ``--deterministic`` asks for
deterministic kernels (:func:`enable_determinism`), at some speed cost.
``--compile`` (off by default) runs each model through ``torch.compile``; its
mode is hashed with the precision, since compiled kernels round differently.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from medkd_bench.errors import MedkdError

if TYPE_CHECKING:
    from medkd_bench.specs import ModelSpec


AMP_CHOICES = ("auto", "fp32", "off", "bf16", "fp16")
#: What a spec may declare as ``gpu_precision``.
GPU_PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
#: What a spec may declare as ``gpu_deploy_dtype``: the weights' dtype of batch-1 latency as deployed.
GPU_DEPLOY_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
#: ``--compile`` modes: ``reduce-overhead`` replays CUDA graphs, which removes per-kernel launch cost.
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    deterministic: bool = False
    #: ``--amp auto`` on CPU: each model's spec picks its fast path (``for_model``).
    cpu_auto: bool = False
    #: ``--amp auto`` on CUDA: each model's spec picks its GPU fast path (``for_model``).
    gpu_auto: bool = False
    #: Whether the GPU may use bf16 (Ampere and later): a spec's ``bf16`` becomes fp16 elsewhere.
    bf16_supported: bool = False
    #: TF32 tensor-core arithmetic for float32 matmuls and convolutions (CUDA only).
    tf32: bool = False
    #: ``--compile`` mode, ``"off"`` for eager PyTorch.
    compile_mode: str = "off"
    #: ``--amp fp32``: the per-model fast path (``cpu_auto``/``gpu_auto``) without reduced precision.
    fp32_only: bool = False

    def for_model(self, spec: ModelSpec) -> Runtime:
        """This runtime as it applies to one architecture (on CUDA, its deployment dtype is checked first)."""
        if self.device.type == "cuda":  # a typo fails before training, not when the trained model is timed
            gpu_deploy_dtype(spec, self.bf16_supported)
        if self.cpu_auto:
            bf16 = spec.cpu_bf16 and not self.fp32_only and cpu_has_native_bf16()
            return replace(self, amp_dtype=torch.bfloat16 if bf16 else None,
                           channels_last=spec.cpu_channels_last, cpu_auto=False)
        if self.gpu_auto:
            if self.fp32_only:
                return replace(self, amp_dtype=None, tf32=False, channels_last=spec.gpu_channels_last, gpu_auto=False)
            return replace(self, amp_dtype=gpu_amp_dtype(spec, self.bf16_supported), tf32=spec.gpu_precision == "tf32",
                           channels_last=spec.gpu_channels_last, gpu_auto=False)
        return self

    @property
    def precision(self) -> str:
        """Numerics that change results (recorded in config hashes): e.g. ``fp32``, ``tf32``, ``bf16+cl``.

        A compiled model adds its mode (``bf16+cl+compile:default``); eager runs keep the
        strings they always had, so their stored results stay valid.
        """
        amp = str(self.amp_dtype).removeprefix("torch.").replace("bfloat16", "bf16").replace("float16", "fp16")
        base = amp if self.amp_dtype else ("tf32" if self.tf32 else "fp32")
        compiled = f"+compile:{self.compile_mode}" if self.compile_mode != "off" else ""
        return base + ("+cl" if self.channels_last else "") + compiled

    def numerics(self) -> contextlib.AbstractContextManager:
        """TF32 on or off for this model's kernels, forward and backward (CUDA only; restored after)."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        return tf32_enabled(self.tf32)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's numerics: autocast to ``amp_dtype`` and, on CUDA, TF32 as chosen."""
        if self.device.type == "cuda":
            stack = contextlib.ExitStack()
            stack.enter_context(self.numerics())
            if self.amp_dtype is not None:
                stack.enter_context(torch.autocast(self.device.type, dtype=self.amp_dtype))
            return stack
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def needs_grad_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has float32's range and needs none."""
        return self.amp_dtype == torch.float16 and self.device.type == "cuda"

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler(self.device.type) if self.needs_grad_scaler else None

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """An input batch in the memory format the model was converted to."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to the device, in channels-last layout where that is on."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def describe(self) -> str:
        compiled = f", torch.compile {self.compile_mode}" if self.compile_mode != "off" else ""
        if self.cpu_auto or self.gpu_auto:
            numerics = ("fp32" if self.fp32_only else
                        "fp32, bf16 where native" if self.cpu_auto else "fp32/tf32/bf16/fp16")
            return f"{self.device.type} (per-model fast path: {numerics}, channels-last{compiled})"
        amp = str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else ("tf32" if self.tf32 else "fp32")
        extras = (", channels-last" if self.channels_last else "") + (", deterministic" if self.deterministic else "")
        return f"{self.device.type} ({amp}{extras}{compiled})"

    def synchronize(self) -> None:
        """Wait for queued GPU work, so wall-clock timings measure it (a no-op on CPU)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def gpu_amp_dtype(spec: ModelSpec, bf16_supported: bool) -> torch.dtype | None:
    """The autocast dtype of a spec's ``gpu_precision``: None for fp32 and tf32; fp16 for bf16 on older GPUs."""
    choice = spec.gpu_precision
    if choice not in GPU_PRECISIONS:
        raise MedkdError(f"model {spec.name!r}: gpu_precision {choice!r} is not one of {', '.join(GPU_PRECISIONS)}")
    if choice in ("fp32", "tf32"):
        return None
    return torch.bfloat16 if choice == "bf16" and bf16_supported else torch.float16


def gpu_deploy_dtype(spec: ModelSpec, bf16_supported: bool) -> torch.dtype:
    """The weights' dtype of a spec's ``gpu_deploy_dtype``; fp16 for bf16 on GPUs without bf16."""
    choice = spec.gpu_deploy_dtype
    if choice not in GPU_DEPLOY_DTYPES:
        raise MedkdError(f"model {spec.name!r}: gpu_deploy_dtype {choice!r} is not one of "
                         f"{', '.join(GPU_DEPLOY_DTYPES)}")
    return torch.float16 if choice == "bf16" and not bf16_supported else GPU_DEPLOY_DTYPES[choice]


@contextlib.contextmanager
def tf32_enabled(enabled: bool) -> Iterator[None]:
    """TF32 for cuBLAS matmuls and cuDNN convolutions, restored after (both are process-wide flags)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def cpu_has_native_bf16() -> bool:
    """AMX tiles (Sapphire Rapids and later): where oneDNN's bf16 convolutions beat float32."""
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # private API: absent on other builds means "no"
        return False


def enable_determinism() -> None:
    """Deterministic kernels for this process (``--deterministic``).

    ``torch.use_deterministic_algorithms`` makes ops without a deterministic
    implementation raise instead of silently varying; cuBLAS needs a fixed
    workspace (``CUBLAS_WORKSPACE_CONFIG``) for repeatable matmuls, and cuDNN
    must neither benchmark (autotuning may pick different kernels per run) nor
    use its nondeterministic algorithms. On CPU, seeded fp32 runs are already
    repeatable; the flag then only guards against a nondeterministic op.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def amp_dtype_for(device_type: str, amp: str, bf16_supported: bool) -> torch.dtype | None:
    """The autocast dtype for ``--amp`` on a device: ``None`` means plain float32.

    ``auto`` on CPU is decided per model (:meth:`Runtime.for_model`), so it maps to
    float32 here; on a GPU it picks bf16 where supported (no gradient scaler
    needed), else fp16. ``fp32`` is float32 everywhere.
    """
    if amp not in AMP_CHOICES:
        raise MedkdError(f"--amp {amp}: expected one of {', '.join(AMP_CHOICES)}")
    if amp in ("off", "fp32") or (amp == "auto" and device_type == "cpu"):
        return None
    if amp == "bf16" or (amp == "auto" and bf16_supported):
        return torch.bfloat16
    if device_type == "cpu":
        raise MedkdError("--amp fp16: only on CUDA; use --amp bf16 on CPU")
    return torch.float16


def resolve_runtime(device: str = "auto", amp: str = "auto", deterministic: bool = False, *,
                    cuda_available: bool | None = None, bf16_supported: bool | None = None,
                    compile_mode: str = "off") -> Runtime:
    """The runtime for ``--device``, ``--amp``, ``--deterministic`` and ``--compile``.

    ``cuda_available`` and ``bf16_supported`` default to what torch reports;
    passing them lets tests check the CUDA choices on a machine without a GPU.
    """
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if device == "auto":
        device = "cuda" if cuda_available else "cpu"
    if device.startswith("cuda") and not cuda_available:
        raise MedkdError(f"--device {device}: CUDA is not available on this machine")
    if device != "cpu" and not device.startswith("cuda"):
        raise MedkdError(f"--device {device}: expected auto, cpu or cuda[:N]")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise MedkdError(f"--device {device}: {exc}") from None
    if bf16_supported is None:
        bf16_supported = dev.type == "cuda" and torch.cuda.is_bf16_supported()
    dtype = amp_dtype_for(dev.type, amp, bf16_supported)  # validates --amp
    if deterministic:
        enable_determinism()
    if compile_mode not in COMPILE_MODES:
        raise MedkdError(f"--compile {compile_mode}: expected one of {', '.join(COMPILE_MODES)}")
    if amp in ("auto", "fp32") and dev.type == "cpu":
        return Runtime(dev, None, channels_last=False, cpu_auto=True, deterministic=deterministic,
                       compile_mode=compile_mode, fp32_only=amp == "fp32")
    # Channels-last speeds up convolutions on tensor cores; on CPU only some architectures gain
    # (their specs opt in under --amp auto), so an explicit CPU choice keeps the default layout.
    return Runtime(dev, dtype, channels_last=dev.type == "cuda", deterministic=deterministic,
                   gpu_auto=amp in ("auto", "fp32") and dev.type == "cuda", bf16_supported=bf16_supported,
                   compile_mode=compile_mode, fp32_only=amp == "fp32")


def recorded_amp(runtime: Runtime, amp: str, specs: Iterable[ModelSpec]) -> str | None:
    """The ``--amp`` a run records as a result setting, or ``None`` where it computes as the reference does.

    The reference numerics are float32 with each model's layout fast path on CPU (``--amp fp32``,
    which is also what ``auto`` gives on a CPU without AMX) and ``auto``'s per-model choice on CUDA.
    The choice is recorded only where it changes some planned model's precision (every cell's
    config hash has it), so cells computed under ``--amp fp32`` on an AMX CPU share a leaderboard
    page with the same cells computed under ``auto`` on a CPU without AMX, and a run split over
    both kinds of machine makes one page; ``auto``'s bf16 teachers on AMX get a page of their own.
    """
    if runtime.device.type == "cpu":
        reference = replace(runtime, amp_dtype=None, tf32=False, channels_last=False, cpu_auto=True,
                            gpu_auto=False, fp32_only=True)
    else:
        reference = replace(runtime, cpu_auto=False, gpu_auto=True, fp32_only=False)
    same = all(runtime.for_model(s).precision == reference.for_model(s).precision for s in specs)
    return None if same else amp


def machine_description(runtime: Runtime | None = None) -> str:
    """Where a number was measured: recorded with every cell, quoted in leaderboards."""
    if runtime is not None and runtime.device.type == "cuda":
        where = torch.cuda.get_device_name(runtime.device)
    else:
        threads = torch.get_num_threads()
        where = f"{platform.machine()} CPU ({cpu_model()}), {threads} thread{'s' if threads != 1 else ''}"
    return f"{where}, {runtime.describe() if runtime else 'cpu'}, torch {torch.__version__}"


def cpu_model() -> str:
    """The CPU's model name and the instruction sets PyTorch's kernels use on it, e.g. ``AMD EPYC; AVX2``.

    The same cell trained on two kinds of CPU gives other weights (other
    kernels, other rounding), and this project's machines alternate between
    Intel with AMX and AMD without: a stored figure must say which it came from.
    """
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            name = next((line.split(":", 1)[1] for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    name = " ".join((name or platform.processor() or "unknown model").split())
    isa = torch.backends.cpu.get_cpu_capability()
    return f"{name}; {isa}{', AMX' if cpu_has_native_bf16() else ''}"


#: Packages whose versions can change a score; quoted in every leaderboard.
PROVENANCE_PACKAGES = ("medkd-bench", "torch", "timm", "ofa", "grad-cam", "fvcore", "numpy")


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`PROVENANCE_PACKAGES` (recorded with every cell)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in PROVENANCE_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out
