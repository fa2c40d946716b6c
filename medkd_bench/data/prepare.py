"""A dataset plugin's splits, loaded once per run at the training resolution.

:func:`prepare` asks the plugin for each split (through the decoded-split
cache for real datasets), checks that the splits are what the trainer
slices, and records per-split checksums and the normalisation statistics.
:func:`dataset_fingerprint` is what enters a cell's config hash, so a
changed copy of a real dataset trains anew.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from medkd_bench.errors import MedkdError
from medkd_bench.specs import DatasetSpec, SplitData

SPLITS = ("train", "val", "test")


@dataclass
class PreparedData:
    """The three splits of one dataset at one image size, plus normalisation."""

    spec: DatasetSpec
    img_size: int
    splits: dict[str, SplitData]
    mean: float
    std: float
    #: ``(path, problem)`` of every bad file left out under ``skip_bad``.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Per split, :func:`split_checksum` of its images and labels: recorded with every
    #: cell so a reader can tell whether a rerun saw the same data.
    checksums: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def for_teacher(self) -> PreparedData:
        """What a teacher trains on: the spec's ``teacher_split`` as its train split (itself without one).

        Validation, test and the normalisation stay the students' own, so a teacher's soft targets and
        scores are computed on exactly the images, and with exactly the inputs, the students see.
        """
        name = self.spec.teacher_split
        if name is None:
            return self
        return replace(self, splits={**self.splits, "train": self.splits[name]},
                       checksums={**self.checksums, "train": self.checksums[name]})

    def normalise(self, images: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        """uint8 (N, C, H, W) -> float (N, 3, H, W), standardised with the train split's statistics."""
        x = images.to(device, non_blocking=True).float().div_(255.0)
        x = (x - self.mean) / self.std
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # grey: the same plane in every channel
        return x.contiguous()


def dataset_fingerprint(spec: DatasetSpec, root: Path | None, options: Mapping[str, Any]) -> dict[str, Any] | None:
    """The spec's digest of the files it reads (None for datasets without one)."""
    if spec.fingerprint is None:
        return None
    try:
        return dict(spec.fingerprint(root, options))
    except MedkdError:
        raise
    except Exception as exc:
        raise MedkdError(f"dataset {spec.name!r}: reading its file list failed: {type(exc).__name__}: {exc}") from exc


def _warn_skipped(spec: DatasetSpec, split: str, skipped: list[tuple[str, str]]) -> None:
    from rich.console import Console
    from rich.markup import escape

    path, problem = skipped[0]
    why = "datasets add --skip-bad" if spec.skip_bad else "--skip-bad"  # the user's own choice, named
    Console(stderr=True, soft_wrap=True).print(
        f"[yellow]warning:[/] dataset {spec.name!r} split {split!r}: left out {len(skipped)} bad file(s) "
        f"({why}), e.g. {escape(path)}: {escape(problem)}", highlight=False)


def _mean_std(images: torch.Tensor, chunk: int = 1024) -> tuple[float, float]:
    """Pixel mean and standard deviation in [0, 1], a chunk at a time.

    A real training split is gigabytes of uint8 (memory-mapped from the cache);
    converting it to float all at once would need four times that in RAM.
    """
    total = total_sq = 0.0
    count = 0
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].to(torch.float64).div_(255.0)
        total += float(x.sum())
        total_sq += float((x * x).sum())
        count += x.numel()
    mean = total / count
    var = max(total_sq / count - mean * mean, 0.0) * count / max(count - 1, 1)
    return mean, var ** 0.5


#: The smallest train split a model can learn from: a batch of one cannot be batch-normalised, so
#: :func:`~medkd_bench.data.batches.train_batches` never yields one, and a single image would leave
#: the model untrained (its logits NaN, reported as "val logits not finite" far from the cause).
MIN_TRAIN_IMAGES = 2


def prepare(
    spec: DatasetSpec, img_size: int | None, root: Path | None, options: Mapping[str, Any],
    cache_dir: Path | None = None, skip_bad: bool = False, warn_skipped: bool = True,
) -> PreparedData:
    """Load a dataset's three splits at one image size and measure the train split's statistics.

    Datasets read from files (from a root, or from folders their spec names)
    are decoded once into ``cache_dir`` (when given) and read from there
    afterwards, provided they have a ``fingerprint``:
    without one a changed copy of the data could not be told from the
    cached one. Generated datasets are not cached (the default synthetic-cxr
    takes about a second to generate). ``skip_bad``
    leaves out bad files (corrupt images, stray files, unpaired masks) with a
    warning instead of stopping at the first; so does a spec whose own
    ``skip_bad`` is set (``datasets add --skip-bad`` records it).
    """
    from medkd_bench.data.cache import SplitCache
    from medkd_bench.data.imagefiles import bad_file_policy

    skip_bad = skip_bad or spec.skip_bad
    size = int(img_size or spec.img_size)
    if spec.needs_root and root is None:
        raise MedkdError(f"dataset {spec.name!r} needs a local copy: pass --data-root or set MEDKD_DATA")
    unknown = set(options) - set(spec.options)
    if unknown:
        raise MedkdError(
            f"dataset {spec.name!r}: unknown option(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(spec.options)) or 'none'})"
        )
    if spec.teacher_split in SPLITS:
        raise MedkdError(f"dataset {spec.name!r}: teacher_split {spec.teacher_split!r} must name a split other "
                         f"than {', '.join(SPLITS)}")
    opts = {**spec.options, **options}
    cache = None
    if cache_dir is not None and spec.fingerprint is not None:  # files are read: decode them once
        cache = SplitCache(cache_dir, spec, size, root, opts, dataset_fingerprint(spec, root, opts))
    splits: dict[str, SplitData] = {}
    with bad_file_policy(skip_bad) as bad:
        for split in (*SPLITS, *([spec.teacher_split] if spec.teacher_split else [])):
            cached = cache.load(split) if cache is not None else None
            if cached is not None:
                data, skipped = cached
                for path, problem in skipped:  # a strict run stops at a file the cache left out
                    bad.report(path, problem)
            else:
                before = len(bad.problems)
                try:
                    data = spec.load(split, size, root, opts)
                except MedkdError:
                    raise
                except Exception as exc:
                    raise MedkdError(f"dataset {spec.name!r} failed to load split {split!r}: "
                                     f"{type(exc).__name__}: {exc}") from exc
                skipped = bad.problems[before:]
            if not isinstance(data, SplitData) or len(data) == 0:
                raise MedkdError(f"dataset {spec.name!r}: split {split!r} is empty or not a SplitData")
            if tuple(data.images.shape[2:]) != (size, size):
                raise MedkdError(f"dataset {spec.name!r}: split {split!r} images are not {size}x{size}")
            if cache is not None and cached is None:
                cache.save(split, data, skipped)
            if skipped and warn_skipped:
                _warn_skipped(spec, split, skipped)
            splits[split] = data
    if len(splits["train"]) < MIN_TRAIN_IMAGES:
        raise MedkdError(f"dataset {spec.name!r}: the train split has {len(splits['train'])} image(s); training "
                         f"needs at least {MIN_TRAIN_IMAGES} (batch norm cannot train on a batch of one)")
    mean, std = _mean_std(splits["train"].images)
    return PreparedData(spec, size, splits, mean, max(std, 1e-3), skipped=list(bad.problems),
                        checksums={name: split_checksum(split) for name, split in splits.items()})


def split_checksum(split: SplitData) -> str:
    """SHA-256 (first 16 hex digits) of a split's image bytes, labels and shapes.

    Labels are hashed as int64 whatever their stored dtype, so only content counts;
    masks are left out (they feed explanations, not the scores).
    """
    h = hashlib.sha256()
    h.update(repr(tuple(split.images.shape)).encode())
    h.update(split.images.contiguous().numpy())  # the buffer itself: no copy of a memory-mapped split
    h.update(split.labels.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
