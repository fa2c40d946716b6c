"""Saliency maps on a fixed, seeded sample of test images.

The sample depends only on the dataset and the seed, so the teacher's maps
and every student's maps are computed on the same images and can be compared
picture by picture (and, in the agreement metrics, number by number).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from medkd_bench.data.prepare import PreparedData
from medkd_bench.runtime.device import Runtime
from medkd_bench.specs import ExplainerSpec, ModelSpec, ReshapeTransform


def explanation_sample(data: PreparedData, n_images: int, seed: int) -> list[int]:
    """``n_images`` test indices, balanced over classes, in a seeded order.

    Classes take turns (class 0, 1, 2, 0, 1, ...), so any prefix of the sample
    is itself balanced: the first ``num_classes`` images are the panel rows,
    the first few the sanity-check subset.
    """
    labels = data.splits["test"].labels
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    queues = [[i for i in order if int(labels[i]) == c] for c in range(data.num_classes)]
    chosen: list[int] = []
    while len(chosen) < min(n_images, len(labels)) and any(queues):
        for q in queues:
            if q and len(chosen) < n_images:
                chosen.append(q.pop(0))
    return chosen


def compute_maps(
    spec: ModelSpec,
    model: nn.Module,
    explainer: ExplainerSpec,
    data: PreparedData,
    indices: Sequence[int],
    runtime: Runtime,
    images_per_call: int = 2,
) -> np.ndarray:
    """``(len(indices), H, W)`` float32 maps in [0, 1] for the true class of each image.

    Explaining the ground-truth class (not each model's own prediction) keeps
    teacher and student maps answerable to the same question. The model runs
    in the precision it was trained and scored in (``runtime``); hooked
    activations and gradients are cast to float32 before grad-cam sees them.
    """
    model = runtime.prepare_model(model).eval()
    test = data.splits["test"]
    explain = explainer.build(model, spec.target_layers(model), float32_maps(spec.reshape_transform))
    chunks = []
    # A few images per call: Score-CAM holds images x channels masked copies of its input at once
    # (6 images x 512 channels at 224 px would be 1.8 GB).
    for start in range(0, len(indices), images_per_call):
        part = list(indices[start:start + images_per_call])
        images = runtime.to_model(data.normalise(test.images[part], runtime.device))
        with runtime.autocast():
            chunks.append(np.asarray(explain(images, [int(test.labels[i]) for i in part]), dtype=np.float32))
    maps = np.concatenate(chunks) if chunks else np.zeros((0, data.img_size, data.img_size), np.float32)
    return np.nan_to_num(maps, nan=0.0)


def float32_maps(transform: ReshapeTransform | None) -> ReshapeTransform:
    """``transform`` (or none) then float32: grad-cam turns hooked tensors into numpy, which has no bfloat16."""
    if transform is None:
        return lambda t: t.float()
    return lambda t: transform(t).float()
