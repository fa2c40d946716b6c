"""In-memory batches from a dataset's splits: normalisation, grey->RGB, flips.

Splits are small ``uint8`` tensors, so batching is plain tensor slicing with
a seeded permutation: no worker processes, no per-image Python work. The only
augmentation is a horizontal flip decided per sample and epoch, which keeps a
teacher's soft targets cacheable (one pass over the original images and one
over the flipped ones).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from medkd_bench.data.prepare import PreparedData


def flip_mask(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) < 0.5


def train_batches(
    data: PreparedData, batch_size: int, generator: torch.Generator, flips: bool = True
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yields ``(indices, flipped, images_uint8)`` in a seeded random order.

    The last incomplete batch is dropped when it would hold a single sample,
    which batch norm cannot train on.
    """
    train = data.splits["train"]
    n = len(train)
    order = torch.randperm(n, generator=generator)
    flipped_all = flip_mask(n, generator) if flips else torch.zeros(n, dtype=torch.bool)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < 2:
            break
        images = train.images[idx]
        flipped = flipped_all[idx]
        if flipped.any():
            images = images.clone()
            images[flipped] = images[flipped].flip(-1)
        yield idx, flipped, images
