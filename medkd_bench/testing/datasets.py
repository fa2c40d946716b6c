"""Conformance checks for dataset plugins: splits that are what the trainer slices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from medkd_bench.specs import (
    DatasetSpec,
    SplitData,
)
from medkd_bench.testing.common import check_identity, require, spec_failure, tiny_workload

SPLITS = ("train", "val", "test")


def _load(spec: DatasetSpec, split: str, size: int, root: Path | None, options: Mapping[str, Any]) -> SplitData:
    try:
        data = spec.load(split, size, root, options)
    except Exception as exc:
        raise spec_failure(spec, f"load({split!r}, {size}, ...) raised {type(exc).__name__}: {exc}") from exc
    require(isinstance(data, SplitData), spec,
             f"load({split!r}, {size}, ...) must return a SplitData (got {type(data).__name__})")
    return data


def _check_split(spec: DatasetSpec, split: str, size: int, data: SplitData) -> None:
    """What the trainer slices and the panels draw: uint8 images, int labels in range, (N, H, W) bool masks."""
    where = f"split {split!r} at {size} px"
    require(len(data) > 0, spec, f"{where} is empty")
    images, labels = data.images, data.labels
    require(images.dtype == torch.uint8, spec, f"{where}: images must be uint8, got {images.dtype}")
    expected = (spec.channels, size, size)
    require(tuple(images.shape[1:]) == expected, spec,
             f"{where}: images must be (N, {spec.channels}, {size}, {size}) as declared (channels={spec.channels}), "
             f"got {tuple(images.shape)}")
    require(not labels.dtype.is_floating_point and labels.dtype != torch.bool, spec,
             f"{where}: labels must be integer class indices, got {labels.dtype}")
    if len(labels):
        low, high = int(labels.min()), int(labels.max())
        require(low >= 0 and high < spec.num_classes, spec,
                 f"{where}: labels must lie in [0, {spec.num_classes - 1}], got [{low}, {high}]")
    missing = [m for m in spec.mask_names if m not in data.masks]
    require(not missing, spec, f"{where}: declared mask(s) {', '.join(missing)} missing (has: "
                                f"{', '.join(data.masks) or 'none'})")
    for name, mask in data.masks.items():
        require(mask.dtype == torch.bool and tuple(mask.shape) == (len(data), size, size), spec,
                 f"{where}: mask {name!r} must be bool (N, {size}, {size}), got {mask.dtype} {tuple(mask.shape)}")


def _check_dataset_declaration(spec: DatasetSpec) -> None:
    check_identity(spec)
    require(len(spec.classes) >= 2 and len(set(spec.classes)) == len(spec.classes), spec,
             f"classes must be at least two distinct names, got {spec.classes!r}")
    require(spec.channels in (1, 3), spec, f"channels must be 1 (grey) or 3 (RGB), got {spec.channels}")
    require(spec.img_size > 0, spec, f"img_size must be positive, got {spec.img_size}")
    require(spec.localisation_mask is None or spec.localisation_mask in spec.mask_names, spec,
             f"localisation_mask {spec.localisation_mask!r} is not one of mask_names {spec.mask_names!r}")
    require(isinstance(spec.options, Mapping), spec, "options must be a mapping of defaults")
    require(callable(spec.load), spec, "load must be callable as load(split, img_size, root, options)")
    require(spec.teacher_split is None or spec.teacher_split not in SPLITS, spec,
             f"teacher_split {spec.teacher_split!r} must name a split other than {', '.join(SPLITS)}")


def check_dataset_spec(spec: DatasetSpec, img_sizes: Sequence[int] = (32,), root: Path | None = None,
                       options: Mapping[str, Any] | None = None, check_determinism: bool = True) -> None:
    """Assert that a :class:`DatasetSpec` yields splits the trainer and the panels can use.

    For each image size, train/val/test load as :class:`SplitData` with
    uint8 images of the declared channels and size, labels in range, every
    class present in train, and every declared mask as bool ``(N, H, W)``.
    With ``check_determinism``, loading train twice gives identical data:
    config hashes and cached teachers assume a dataset never changes under
    the same options. ``options`` override the spec's defaults (e.g. smaller
    ``n_train`` to keep the check fast); ``root`` is needed when
    ``spec.needs_root``.
    """
    require(isinstance(spec, DatasetSpec), spec, f"expected a DatasetSpec, got {type(spec).__name__}")
    _check_dataset_declaration(spec)
    require(not spec.needs_root or root is not None, spec,
             "needs a local copy of the data: pass root= to check_dataset_spec")
    unknown = sorted(set(options or {}) - set(spec.options))
    require(not unknown, spec, f"unknown option(s) {', '.join(unknown)} (known: "
                                f"{', '.join(sorted(spec.options)) or 'none'})")
    opts = {**spec.options, **(options or {})}
    with tiny_workload():
        for size in img_sizes:
            for split in SPLITS:
                data = _load(spec, split, size, root, opts)
                _check_split(spec, split, size, data)
                if split == "train":
                    present = set(data.labels.tolist())
                    absent = [c for i, c in enumerate(spec.classes) if i not in present]
                    require(not absent, spec, f"split 'train' at {size} px has no sample of class(es) "
                                               f"{', '.join(map(repr, absent))}: every class must be trainable")
                    if check_determinism:
                        again = _load(spec, split, size, root, opts)
                        require(torch.equal(data.images, again.images) and torch.equal(data.labels, again.labels),
                                 spec, f"loading split 'train' twice at {size} px gives different data: "
                                       "seed the generator from the options")
                    if spec.teacher_split is not None:
                        _check_teacher_split(spec, size, root, opts, data)


def _check_teacher_split(spec: DatasetSpec, size: int, root: Path | None, options: Mapping[str, Any],
                         train: SplitData) -> None:
    """A teacher split loads like any split and begins with the train split's images and labels, in order.

    Teachers see the students' images and more (``DatasetSpec.teacher_split``): a teacher split
    that left some of them out would give the teacher soft targets on images it never trained on.
    """
    name = str(spec.teacher_split)
    more = _load(spec, name, size, root, options)
    _check_split(spec, name, size, more)
    n = len(train)
    require(len(more) >= n and torch.equal(more.images[:n], train.images) and torch.equal(more.labels[:n], train.labels),
            spec, f"split {name!r} at {size} px does not begin with the train split's {n} images and labels: "
                  "a teacher split is the students' training images and more")
