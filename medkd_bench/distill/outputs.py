"""What a distillation method's loss module sees of the student and the teacher, and what it is built from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class ModelOutputs:
    """One model's outputs on a batch.

    ``logits`` is ``(N, classes)``; ``features`` holds one ``(N, C, H, W)`` map per
    feature layer (the model's target layers unless a method option names
    others); ``class_maps`` is ``(N, classes, H, W)``: the classifier head applied
    at every location of the last feature map, minus its output for an all-zero
    location (for a linear head the CAM ``W f`` without the bias, see
    :func:`~medkd_bench.distill.taps.head_at_locations`). Both are filled only when the
    method's spec ``needs`` them. The teacher's side carries no gradient.
    """

    logits: torch.Tensor
    features: tuple[torch.Tensor, ...] = ()
    class_maps: torch.Tensor | None = None


@dataclass(frozen=True)
class MethodContext:
    """What a method's ``build`` gets: its options and the shapes it must fit its own modules to.

    Shapes are per image, ``(C, H, W)``, one per feature layer; ``epochs`` and
    ``steps_per_epoch`` let a loss schedule its terms (DKD's warm-up).
    """

    options: Mapping[str, Any]
    num_classes: int
    epochs: int
    steps_per_epoch: int
    student_features: tuple[tuple[int, ...], ...] = ()
    teacher_features: tuple[tuple[int, ...], ...] = ()
    student_class_maps: tuple[int, ...] | None = None
    teacher_class_maps: tuple[int, ...] | None = None
