"""In-memory batches from a dataset's splits: normalisation, grey->RGB, flips.

Splits are small ``uint8`` tensors, so batching is plain tensor slicing with
a seeded permutation: no worker processes, no per-image Python work. The only
augmentation is a horizontal flip decided per sample and epoch, which keeps a
teacher's soft targets cacheable (one pass over the original images and one
over the flipped ones).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import MedkdError
from .specs import DatasetSpec, SplitData

SPLITS = ("train", "val", "test")


@dataclass
class PreparedData:
    """The three splits of one dataset at one image size, plus normalisation."""

    spec: DatasetSpec
    img_size: int
    splits: dict[str, SplitData]
    mean: float
    std: float
    #: Per split, :func:`split_checksum` of its images and labels: recorded with every
    #: cell so a reader can tell whether a rerun saw the same data.
    checksums: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def normalise(self, images: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        """uint8 (N, C, H, W) -> float (N, 3, H, W), standardised with the train split's statistics."""
        x = images.to(device, non_blocking=True).float().div_(255.0)
        x = (x - self.mean) / self.std
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # grey: the same plane in every channel
        return x.contiguous()


def prepare(
    spec: DatasetSpec, img_size: int | None, root: Path | None, options: Mapping[str, Any]
) -> PreparedData:
    size = int(img_size or spec.img_size)
    if spec.needs_root and root is None:
        raise MedkdError(f"dataset {spec.name!r} needs a local copy: pass --data-root")
    unknown = set(options) - set(spec.options)
    if unknown:
        raise MedkdError(
            f"dataset {spec.name!r}: unknown option(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(spec.options)) or 'none'})"
        )
    opts = {**spec.options, **options}
    splits: dict[str, SplitData] = {}
    for split in SPLITS:
        try:
            data = spec.load(split, size, root, opts)
        except MedkdError:
            raise
        except Exception as exc:
            raise MedkdError(f"dataset {spec.name!r} failed to load split {split!r}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(data, SplitData) or len(data) == 0:
            raise MedkdError(f"dataset {spec.name!r}: split {split!r} is empty or not a SplitData")
        if tuple(data.images.shape[2:]) != (size, size):
            raise MedkdError(f"dataset {spec.name!r}: split {split!r} images are not {size}x{size}")
        splits[split] = data
    train = splits["train"].images.float().div(255.0)
    return PreparedData(spec, size, splits, float(train.mean()), float(train.std().clamp_min(1e-3)),
                        {name: split_checksum(split) for name, split in splits.items()})


def split_checksum(split: SplitData) -> str:
    """SHA-256 (first 16 hex digits) of a split's image bytes, labels and shapes.

    Labels are hashed as int64 whatever their stored dtype, so only content counts;
    masks are left out (they feed explanations, not the scores).
    """
    h = hashlib.sha256()
    h.update(repr(tuple(split.images.shape)).encode())
    h.update(split.images.contiguous().numpy().tobytes())
    h.update(split.labels.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


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
