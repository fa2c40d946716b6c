"""Picture panels: test images in rows, one column of saliency maps per model, rendered with matplotlib.

A panel is read by someone deciding whether to trust a model's reasons, often
a clinician rather than the person who trained it, so each map carries what
is needed to read it without the page: a colour bar saying what the colours
mean, the model's own prediction and confidence for that image with a
right/wrong mark against the true label (a map of a wrong answer is read
differently), and a flag on maps that are flat, which show one colour and
point nowhere, so an empty-looking map is not taken for "looks everywhere".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medkd_bench.data.prepare import PreparedData
from medkd_bench.files.atomic import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: A map is *flat* when the middle 98% of its pixels (1st to 99th percentile) span less than this
#: share of the colour scale. The explainers scale each map to [0, 1] (minimum 0, maximum 1), so a
#: map with any structure spans most of the scale; under 5% of it the jet colours are one hue and the
#: map points nowhere. That is a constant map (a ReLU-ed CAM that is negative everywhere: common with
#: undertrained models, and at 32 px, where the last stage is 1x1) or one whose only structure is a
#: few stray pixels (the percentiles ignore up to 1% of pixels at each end). The agreement metrics
#: leave out only exactly constant maps (:func:`medkd_bench.explain.agreement.spearman`): they are
#: numbers, not pictures, and any variation ranks pixels.
FLAT_SPREAD = 0.05

#: Colours of the right / wrong marks: with the marks' glyphs and words, so colour is never the only cue.
RIGHT_COLOUR, WRONG_COLOUR = "#1a7f37", "#c62828"
#: The key under every panel: what the maps, the marks and the flags mean.
LEGEND = ("Maps show where each model found evidence for the TRUE class. Under each map: that model's predicted class "
          "and its softmax confidence,\n✓ right or ✗ wrong against the true class. FLAT MAP: the middle 98% of the "
          f"map's values span under {FLAT_SPREAD:.0%} of the colour scale, so it highlights nothing.")
#: Saliency colour map and its opacity over the grey image.
CMAP, ALPHA = "jet", 0.45


def map_spread(saliency: np.ndarray) -> float:
    """The 1st-to-99th-percentile range of a map's values (see :data:`FLAT_SPREAD`)."""
    low, high = np.percentile(np.asarray(saliency, dtype=np.float64), [1, 99])
    return float(high - low)


def is_flat(saliency: np.ndarray) -> bool:
    """Whether a map is too uniform to show where the model looked (see :data:`FLAT_SPREAD`)."""
    return map_spread(saliency) < FLAT_SPREAD


@dataclass(frozen=True)
class Prediction:
    """A model's predicted class for one image, with its softmax probability (None if only the class is stored)."""

    label: int
    confidence: float | None


@dataclass(frozen=True)
class PanelColumn:
    """One model's column: its name, one map per panel row, and its predictions on those images (None: not stored)."""

    name: str
    maps: np.ndarray
    predictions: Sequence[Prediction] | None = None


def stored_predictions(metrics: Mapping[str, Any], indices: Sequence[int], n_test: int) -> list[Prediction] | None:
    """A finished cell's predictions on test images ``indices``, from what the store recorded when it was scored.

    The panel shows the predictions the leaderboard scored, not a new forward
    pass. Probabilities give the class and its confidence; cells stored before
    probabilities were give the class alone; None when neither is stored for a
    test split of ``n_test`` images (a cell scored on other data must not label
    these images).
    """
    probs = metrics.get("test_probabilities")
    if probs is not None and len(probs) == n_test:
        rows = [np.asarray(probs[i], dtype=np.float64) for i in indices]
        return [Prediction(int(p.argmax()), float(p.max())) for p in rows]
    preds = metrics.get("test_predictions")
    if preds is not None and len(preds) == n_test:
        return [Prediction(int(preds[i]), None) for i in indices]
    return None


def panel_rows(data: PreparedData, sample: Sequence[int], per_class: int) -> list[int]:
    """Positions in ``sample`` of the first ``per_class`` images of each class, grouped by class."""
    labels = data.splits["test"].labels
    rows: list[int] = []
    for c in range(data.num_classes):
        rows += [pos for pos, i in enumerate(sample) if int(labels[i]) == c][:per_class]
    return rows


def verdict(prediction: Prediction | None, truth: int, classes: Sequence[str]) -> tuple[str, str]:
    """The text under a map, and its colour: ``✓ right: Normal (92%)``, ``✗ wrong: ...``, or why there is none."""
    if prediction is None:
        return "prediction not stored", "dimgray"
    confidence = "" if prediction.confidence is None else f" ({100 * prediction.confidence:.0f}%)"
    name = classes[prediction.label] if 0 <= prediction.label < len(classes) else str(prediction.label)
    if prediction.label == truth:
        return f"✓ right: {name}{confidence}", RIGHT_COLOUR
    return f"✗ wrong: {name}{confidence}", WRONG_COLOUR


def panel_figure(
    data: PreparedData,
    indices: Sequence[int],
    columns: Sequence[PanelColumn],
    title: str,
    mask_name: str | None = None,
) -> Figure:
    """The panel as a matplotlib figure: one row per image; the input (with mask outline), then one map per column.

    Each map's x-label is the model's verdict on that image; flat maps carry a
    "flat map" box; one colour bar on the right serves every map (they share
    the [0, 1] scale).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    test = data.splits["test"]
    classes = list(data.spec.classes)
    n_rows, n_cols = len(indices), 1 + len(columns)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.3 * n_cols + 1.1, 2.55 * n_rows + 0.7), squeeze=False,
                             layout="constrained")
    fig.get_layout_engine().set(h_pad=0.08)  # room between one row's verdicts and the next row's titles
    colour = test.images.shape[1] == 3
    for r, i in enumerate(indices):
        # Maps are overlaid on a grey version, so the heat colours stay readable on stained tissue.
        image = test.images[i].float().mean(0).numpy() / 255.0 if colour else test.images[i, 0].numpy() / 255.0
        mask = test.masks[mask_name][i].numpy() if mask_name and mask_name in test.masks else None
        truth = int(test.labels[i])
        ax = axes[r, 0]
        if colour:
            ax.imshow(test.images[i].permute(1, 2, 0).numpy())
        else:
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        if mask is not None and mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors=["lime"], linewidths=1.2)
        ax.set_title(f"true class: {classes[truth]}", fontsize=9, fontweight="bold")
        if mask is not None:
            ax.set_xlabel(f"{mask_name} outlined" if mask.any() else f"no {mask_name} in this image", fontsize=8)
        for c, column in enumerate(columns, start=1):
            ax = axes[r, c]
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            ax.imshow(column.maps[r], cmap=CMAP, alpha=ALPHA, vmin=0, vmax=1)
            if mask is not None and mask.any():
                ax.contour(mask.astype(float), levels=[0.5], colors=["white"], linewidths=0.9)
            if r == 0:
                ax.set_title(column.name, fontsize=9, fontweight="bold")
            text, tint = verdict(column.predictions[r] if column.predictions is not None else None, truth, classes)
            ax.set_xlabel(text, fontsize=9, color=tint, fontweight="bold")
            if is_flat(column.maps[r]):
                ax.text(0.5, 0.5, "FLAT MAP\npoints nowhere", transform=ax.transAxes, ha="center", va="center",
                        fontsize=9, fontweight="bold", color="black", gid="flat-map",
                        bbox=dict(boxstyle="round,pad=0.3", facecolor="white", edgecolor=WRONG_COLOUR, alpha=0.9))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if columns:
        bar = fig.colorbar(ScalarMappable(norm=Normalize(0, 1), cmap=CMAP), ax=axes[:, 1:], shrink=min(0.8, 2.4 / n_rows),
                           ticks=[0, 0.5, 1], aspect=25, pad=0.02)
        bar.ax.set_yticklabels(["0 least", "0.5", "1 most"], fontsize=9)
        bar.set_label("saliency for the true class (each map scaled to 0..1)", fontsize=9)
        fig.supxlabel(LEGEND, fontsize=8.5, color="dimgray")
    fig.suptitle(title, fontsize=11)
    return fig


def render_panel(
    path: Path,
    data: PreparedData,
    indices: Sequence[int],
    columns: Sequence[PanelColumn],
    title: str,
    mask_name: str | None = None,
) -> Path:
    """Write :func:`panel_figure` as a PNG (atomically), sized to be read at 100% where the page links it."""
    import matplotlib.pyplot as plt

    fig = panel_figure(data, indices, columns, title, mask_name)
    try:  # no "Software" metadata: the PNG's bytes do not depend on matplotlib's version
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png", metadata={"Software": None}))
    finally:
        plt.close(fig)
