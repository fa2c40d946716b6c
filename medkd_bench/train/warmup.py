"""One-time costs paid before timed training, on state that is put back afterwards.

The first training step of a model on a GPU loads and selects kernels (cuDNN
heuristics, autocast's casts, the fused optimiser's kernels) and grows the
caching allocator: on an H200 OFA-595's first bf16 step took 16.9 s against
53-60 ms for the next ones. ``torch.compile`` pays its compilation there too.
Left inside the first epoch, that cost would show up as training speed. So
:func:`warm_up` runs one step per batch shape an epoch will see (full batches
and the last, smaller one) and one evaluation forward pass, times them as the
cell's ``warmup_s``, and then restores the model's and the method's weights,
buffers and random number generators exactly: the cell trains bit for bit as
it would have without the warm-up (a test checks that).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from medkd_bench.data.prepare import PreparedData
from medkd_bench.runtime.device import Runtime
from medkd_bench.specs import TrainSettings
from medkd_bench.train.predict import predict_logits


class Trainer(Protocol):
    """What a warm-up needs of :class:`medkd_bench.train.loop.Trainer` (named here, not imported: no cycle)."""

    model: nn.Module
    data: PreparedData
    settings: TrainSettings
    runtime: Runtime
    distill: Any  # a Distillation or None

    def step(self, idx: torch.Tensor, flipped: torch.Tensor, images: torch.Tensor) -> float: ...


def epoch_batch_sizes(n_train: int, batch_size: int) -> list[int]:
    """The distinct batch sizes an epoch trains on: full batches and the remainder (a lone sample is dropped)."""
    sizes = [min(batch_size, n_train)]
    remainder = n_train % batch_size
    if n_train > batch_size and remainder >= 2:
        sizes.append(remainder)
    return sizes


def warm_up(trainer: Trainer, forward: torch.nn.Module, eval_batch: int = 128) -> float:
    """Run the one-time work of ``trainer``'s model and restore its state; the seconds it took.

    ``forward`` is what evaluation calls (the model, or its compiled wrapper).
    The optimiser, schedule and gradient scaler it touches belong to
    ``trainer``, which the caller throws away and builds anew.
    """
    runtime, data, settings = trainer.runtime, trainer.data, trainer.settings
    started = time.perf_counter()
    restore = _snapshot(trainer)
    devices = [runtime.device] if runtime.device.type == "cuda" else []
    train = data.splits["train"]
    with torch.random.fork_rng(devices=devices):
        trainer.model.train()
        if trainer.distill is not None:
            trainer.distill.train()
        for n in epoch_batch_sizes(len(train), settings.batch_size):
            trainer.step(torch.arange(n), torch.zeros(n, dtype=torch.bool), train.images[:n])
        val = data.splits["val"].images[:eval_batch]
        predict_logits(forward, data, val, runtime, batch_size=eval_batch, what="warm-up logits")
    restore()
    runtime.synchronize()
    return time.perf_counter() - started


def _snapshot(trainer: Trainer) -> Callable[[], None]:
    """A function that puts the model's and the method's weights and buffers back as they are now."""
    modules = [trainer.model] + ([trainer.distill.loss_module] if trainer.distill is not None else [])
    states = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]

    def restore() -> None:
        for module, state in zip(modules, states, strict=True):
            module.load_state_dict(state)
            for p in module.parameters():
                p.grad = None

    return restore
