"""``medkd-bench datasets preview``: a grid of images per class, exactly as the model receives them.

A decoder that clips 16-bit images to white, a wrong window, an inverted
MONOCHROME1 film or a class folder full of the wrong pictures all pass every
count and checksum; they show at a glance. So the preview draws the pixels
after every step a run applies (decoding, resizing, grey repeated into three
channels, standardising with the train split's mean and standard deviation:
:meth:`~medkd_bench.data.prepare.PreparedData.normalise`) and maps them back
to 0-1 for display with the same mean and standard deviation, not with a
per-image stretch that could hide a washed-out image. The one thing not shown
is training's random left-right flip.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medkd_bench.data.prepare import PreparedData
from medkd_bench.errors import MedkdError
from medkd_bench.files.atomic import atomic_tmp, atomic_write


@dataclass(frozen=True)
class ClassRow:
    """One class of the grid: its name, how many images the split has, and the chosen images."""

    name: str
    count: int
    #: Indices into the split.
    indices: list[int]
    #: (n, H, W, 3) floats in [0, 1]: the model's input mapped back for display.
    images: np.ndarray


def model_view(data: PreparedData, images: torch.Tensor) -> np.ndarray:
    """uint8 (N, C, H, W) -> (N, H, W, 3) in [0, 1]: normalised as for the model, then mapped back."""
    x = data.normalise(images)  # exactly the tensor a model gets
    back = x * data.std + data.mean
    return back.clamp_(0.0, 1.0).permute(0, 2, 3, 1).numpy()


def preview_rows(data: PreparedData, split: str, per_class: int, seed: int = 0) -> list[ClassRow]:
    """Up to ``per_class`` images of each class of ``split``, picked by a seeded shuffle (the same every time)."""
    part = data.splits[split]
    order = torch.randperm(len(part), generator=torch.Generator().manual_seed(seed))
    labels = part.labels[order]
    rows = []
    for label, name in enumerate(data.spec.classes):
        chosen = order[labels == label]
        picked = sorted(chosen[:per_class].tolist())
        images = model_view(data, part.images[picked]) if picked else np.zeros((0, data.img_size, data.img_size, 3))
        rows.append(ClassRow(name, len(chosen), picked, images))
    return rows


def check_out_file(out: Path) -> None:
    """``--out`` must name a .png file in a folder that can be written: one line otherwise, before any decoding."""
    if out.suffix.lower() != ".png":
        raise MedkdError(f"--out {out}: give a file name ending in .png")
    if out.is_dir():
        raise MedkdError(f"--out {out}: is a folder; give a file name ending in .png")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = atomic_tmp(out)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise MedkdError(f"--out {out}: cannot be written ({exc.strerror or exc})") from exc


def render_preview(data: PreparedData, split: str, per_class: int, out: Path) -> Path:
    """Draw the grid (one row per class) and write it to ``out`` as a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = preview_rows(data, split, per_class)
    cols = max(1, min(per_class, max(len(r.indices) for r in rows)))
    width = max(1.5 * cols + 1.6, 5.0)  # room for the title and the caption however few columns
    channels = "grey, repeated into 3 channels" if data.spec.channels == 1 else "RGB"
    caption = textwrap.fill(
        f"Decoded and resized to {data.img_size} px, {channels}, standardised with the train split's "
        f"mean {data.mean:.3f} and sd {data.std:.3f}, mapped back to 0-1 for display. Training also "
        "flips images left-right at random (not shown).", int(width * 13))
    height = 1.6 * len(rows) + 0.6 + 0.15 * (caption.count("\n") + 1)
    # Constrained layout makes room for every title, label, the heading and the caption (supxlabel).
    fig, axes = plt.subplots(len(rows), cols, figsize=(width, height), squeeze=False, layout="constrained")
    for r, row in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(row.indices):
                ax.imshow(row.images[c], vmin=0.0, vmax=1.0, interpolation="nearest")
                ax.set_title(f"#{row.indices[c]}", fontsize=7)
            else:
                for side in ax.spines.values():
                    side.set_visible(False)
                if c == 0:
                    ax.text(0.5, 0.5, "no images", ha="center", va="center", fontsize=8, transform=ax.transAxes)
        axes[r][0].set_ylabel(f"{row.name}\n({row.count} in {split})", fontsize=8)
    fig.suptitle(f"{data.spec.name}, {split} split:\nimages as the model receives them", fontsize=9)
    fig.supxlabel(caption, fontsize=7)
    try:
        return atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=100, format="png", metadata={"Software": None}))
    except OSError as exc:
        raise MedkdError(f"--out {out}: cannot be written ({exc.strerror or exc})") from exc
    finally:
        plt.close(fig)
