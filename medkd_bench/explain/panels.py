"""Picture panels: test images in rows, one column of saliency maps per model, rendered with matplotlib."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medkd_bench.data.prepare import PreparedData
from medkd_bench.system.files import atomic_write


def panel_rows(data: PreparedData, sample: Sequence[int], per_class: int) -> list[int]:
    """Positions in ``sample`` of the first ``per_class`` images of each class, grouped by class."""
    labels = data.splits["test"].labels
    rows: list[int] = []
    for c in range(data.num_classes):
        rows += [pos for pos, i in enumerate(sample) if int(labels[i]) == c][:per_class]
    return rows


def render_panel(
    path: Path,
    data: PreparedData,
    indices: Sequence[int],
    columns: Sequence[tuple[str, np.ndarray]],  # one map per index, in the same order
    title: str,
    mask_name: str | None = None,
) -> Path:
    """A grid: one row per image; the input (with mask outline), then one map per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = data.splits["test"]
    n_rows, n_cols = len(indices), 1 + len(columns)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.7 * n_cols, 1.95 * n_rows + 0.45), squeeze=False)
    for r, i in enumerate(indices):
        colour = test.images.shape[1] == 3
        # Maps are overlaid on a grey version, so the heat colours stay readable on stained tissue.
        image = test.images[i].float().mean(0).numpy() / 255.0 if colour else test.images[i, 0].numpy() / 255.0
        mask = test.masks[mask_name][i].numpy() if mask_name and mask_name in test.masks else None
        cls = data.spec.classes[int(test.labels[i])]
        ax = axes[r, 0]
        if colour:
            ax.imshow(test.images[i].permute(1, 2, 0).numpy())
        else:
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        if mask is not None and mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors=["lime"], linewidths=1.0)
        ax.set_title(f"{cls}" + (f"\n({mask_name} outlined)" if mask is not None else ""), fontsize=7)
        for c, (name, maps) in enumerate(columns, start=1):
            ax = axes[r, c]
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            ax.imshow(maps[r], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            if mask is not None and mask.any():
                ax.contour(mask.astype(float), levels=[0.5], colors=["white"], linewidths=0.7)
            if r == 0:
                ax.set_title(name, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    finally:
        plt.close(fig)
