"""Precise batch norm: running statistics recomputed from training batches before validation.

A model with unsettled running statistics scores at chance in eval mode; this
answers that failure, measured on networks trained from random weights.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from medkd_bench.data.batches import train_batches
from medkd_bench.data.prepare import PreparedData
from medkd_bench.runtime.device import Runtime


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def recalibrate_batch_norm(model: nn.Module, data: PreparedData, runtime: Runtime, batches: int, seed: int) -> None:
    """Recompute batch-norm running statistics as a true average (fvcore's precise BN)."""
    from fvcore.nn.precise_bn import update_bn_stats

    generator = torch.Generator().manual_seed(seed)
    loader = [
        runtime.to_model(data.normalise(images, runtime.device))
        for _, _, images in itertools.islice(train_batches(data, 32, generator), batches)
    ]
    model.train()
    with torch.no_grad(), runtime.autocast():
        update_bn_stats(model, loader, num_iters=len(loader))
