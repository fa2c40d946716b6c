"""Device and mixed-precision choice, made once per run.

CPU runs in float32 by default, so results are exact and repeatable;
on CUDA, automatic mixed precision (bf16 where supported, else fp16 with a
gradient scaler) and channels-last memory format are on by default.
"""

from __future__ import annotations

import contextlib
import platform
from dataclasses import dataclass

import torch
from torch import nn

from .errors import MedkdError

AMP_CHOICES = ("auto", "off", "bf16", "fp16")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
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
        amp = str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else "fp32"
        return f"{self.device.type} ({amp}{', channels-last' if self.channels_last else ''})"

    def synchronize(self) -> None:
        """Wait for queued GPU work, so wall-clock timings measure it (a no-op on CPU)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def amp_dtype_for(device_type: str, amp: str, bf16_supported: bool) -> torch.dtype | None:
    """The autocast dtype for ``--amp`` on a device: ``None`` means plain float32.

    ``auto`` keeps CPU in float32 (exact, repeatable results) and picks bf16 on
    a GPU that supports it (no gradient scaler needed), else fp16.
    """
    if amp not in AMP_CHOICES:
        raise MedkdError(f"--amp {amp}: expected one of {', '.join(AMP_CHOICES)}")
    if amp == "off" or (amp == "auto" and device_type == "cpu"):
        return None
    if amp == "bf16" or (amp == "auto" and bf16_supported):
        return torch.bfloat16
    if device_type == "cpu":
        raise MedkdError("--amp fp16: only on CUDA; use --amp bf16 on CPU")
    return torch.float16


def resolve_runtime(device: str = "auto", amp: str = "auto", *, cuda_available: bool | None = None,
                    bf16_supported: bool | None = None) -> Runtime:
    """The runtime for ``--device`` and ``--amp``.

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
    # Channels-last speeds up convolutions on tensor cores; on CPU it is no faster and
    # would change float summation order, so CPU keeps the default layout.
    return Runtime(dev, amp_dtype_for(dev.type, amp, bf16_supported), channels_last=dev.type == "cuda")


def machine_description(runtime: Runtime | None = None) -> str:
    """Where a number was measured: recorded with every cell, quoted in leaderboards."""
    if runtime is not None and runtime.device.type == "cuda":
        where = torch.cuda.get_device_name(runtime.device)
    else:
        where = f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    return f"{where}, {runtime.describe() if runtime else 'cpu'}, torch {torch.__version__}"
