"""Saliency maps on a fixed, seeded sample of test images, and picture panels.

The sample depends only on the dataset and the seed, so the teacher's maps
and every student's maps are computed on the same images and can be compared
picture by picture (and, in the agreement metrics, number by number).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import PreparedData
from .specs import ExplainerSpec, ModelSpec


def explanation_sample(data: PreparedData, per_class: int, seed: int) -> list[int]:
    """Test indices: the first ``per_class`` images of each class in a seeded order."""
    labels = data.splits["test"].labels
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen: list[int] = []
    for c in range(data.num_classes):
        chosen += [i for i in order if int(labels[i]) == c][:per_class]
    return chosen


def compute_maps(
    spec: ModelSpec,
    model: nn.Module,
    explainer: ExplainerSpec,
    data: PreparedData,
    indices: Sequence[int],
    device: torch.device,
) -> np.ndarray:
    """``(len(indices), H, W)`` float32 maps in [0, 1] for the true class of each image.

    Explaining the ground-truth class (not each model's own prediction) keeps
    teacher and student maps answerable to the same question.
    """
    model = model.to(device).eval()
    test = data.splits["test"]
    images = data.normalise(test.images[list(indices)], device)
    targets = [int(test.labels[i]) for i in indices]
    explain = explainer.build(model, spec.target_layers(model), spec.reshape_transform)
    maps = np.asarray(explain(images, targets), dtype=np.float32)
    return np.nan_to_num(maps, nan=0.0)


def render_panel(
    path: Path,
    data: PreparedData,
    indices: Sequence[int],
    columns: Sequence[tuple[str, np.ndarray]],
    title: str,
    mask_name: str | None = None,
) -> Path:
    """A grid: one row per image; the input (with mask outline), then one map per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = data.splits["test"]
    n_rows, n_cols = len(indices), 1 + len(columns)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.1 * n_cols, 2.45 * n_rows + 0.5), squeeze=False)
    for r, i in enumerate(indices):
        image = test.images[i].float().mean(0).numpy() / 255.0 if test.images.shape[1] == 3 else test.images[i, 0].numpy() / 255.0
        mask = test.masks[mask_name][i].numpy() if mask_name and mask_name in test.masks else None
        cls = data.spec.classes[int(test.labels[i])]
        ax = axes[r, 0]
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        if mask is not None and mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors=["lime"], linewidths=1.0)
        ax.set_title(f"{cls}" + (f"\n({mask_name} outlined)" if mask is not None else ""), fontsize=8)
        for c, (name, maps) in enumerate(columns, start=1):
            ax = axes[r, c]
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            ax.imshow(maps[r], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            if mask is not None and mask.any():
                ax.contour(mask.astype(float), levels=[0.5], colors=["white"], linewidths=0.7)
            if r == 0:
                ax.set_title(name, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path
