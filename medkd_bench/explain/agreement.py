"""Numbers for "does the student look where the teacher looks, and at the lesion?".

All functions take saliency maps as ``(N, H, W)`` arrays (one per image) and
return per-image values; :func:`summarise` turns those into a mean with a
seeded bootstrap 95% confidence interval. Keeping the per-image step separate
makes every metric checkable against small hand-computed maps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from medkd_bench.evaluate.stats import mean_ci

#: Share of pixels called "most salient" by :func:`top_fraction_iou`.
TOP_FRACTION = 0.2


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image Spearman rank correlation between two sets of maps (NaN where a map is constant)."""
    out = np.full(len(a), np.nan)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        x, y = x.ravel(), y.ravel()
        if np.ptp(x) > 0 and np.ptp(y) > 0:
            out[i] = stats.spearmanr(x, y).statistic
    return out


def top_mask(maps: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray:
    """The ``fraction`` most salient pixels of each map (ties broken by position, so exactly k pixels)."""
    flat = maps.reshape(len(maps), -1)
    k = max(1, int(round(fraction * flat.shape[1])))
    order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    mask = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask.reshape(maps.shape)


def _informative(maps: np.ndarray) -> np.ndarray:
    """A constant map ranks no pixel above another: metrics built on ranks are undefined for it."""
    return np.ptp(maps.reshape(len(maps), -1), axis=1) > 0


def top_fraction_iou(a: np.ndarray, b: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray:
    """Per-image IoU of the two maps' top-``fraction`` pixel sets (NaN where a map is constant)."""
    ma, mb = top_mask(a, fraction), top_mask(b, fraction)
    inter = (ma & mb).reshape(len(a), -1).sum(1)
    union = (ma | mb).reshape(len(a), -1).sum(1)
    return np.where(_informative(a) & _informative(b), inter / np.maximum(union, 1), np.nan)


def _has_mask(masks: np.ndarray) -> np.ndarray:
    return masks.reshape(len(masks), -1).any(1)


def energy_pointing_game(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each map's saliency inside the mask (Wang et al., Score-CAM, 2020).

    NaN for an empty mask or a map with no saliency at all.
    """
    total = maps.reshape(len(maps), -1).sum(1)
    inside = (maps * masks).reshape(len(maps), -1).sum(1)
    valid = _has_mask(masks) & (total > 0)
    return np.where(valid, inside / np.where(total > 0, total, 1), np.nan)


def pointing_game(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """1 where the map's maximum falls inside the mask (Zhang et al., 2018), else 0.

    A maximum tied across several pixels is a hit when ANY of the tied pixels is
    inside the mask: upsampled CAMs have plateaus at their peak, and taking the
    first tied pixel in raster order (``argmax``) would let position, not
    saliency, decide. Ties are exact float equality with the maximum, as in
    Quantus's ``PointingGame.evaluate_instance``
    (quantus/metrics/localisation/pointing_game.py:
    ``np.any(s[np.argwhere(a == np.max(a))])``).

    NaN for an empty mask or a constant map (whose maximum is every pixel).
    """
    flat = maps.reshape(len(maps), -1)
    at_max = flat == flat.max(1, keepdims=True)
    hits = (at_max & masks.reshape(len(masks), -1).astype(bool)).any(1).astype(float)
    return np.where(_has_mask(masks) & _informative(maps), hits, np.nan)


def mask_area_share(masks: np.ndarray) -> np.ndarray:
    """The chance level of both pointing games: a uniform map puts this share inside the mask."""
    share = masks.reshape(len(masks), -1).mean(1).astype(float)
    return np.where(_has_mask(masks), share, np.nan)


def summarise(values: Sequence[float] | np.ndarray, seed: int = 0, resamples: int = 2000) -> dict[str, Any]:
    """Mean and percentile-bootstrap 95% CI over the finite values (NaNs are images a metric skips).

    The bootstrap is :func:`medkd_bench.stats.mean_ci`, the one the accuracy CIs use.
    """
    return mean_ci(values, seed, resamples)


def agreement(teacher: np.ndarray, student: np.ndarray, seed: int = 0) -> dict[str, Any]:
    return {
        "spearman": summarise(spearman(teacher, student), seed),
        "top20_iou": summarise(top_fraction_iou(teacher, student), seed),
    }


def localisation(maps: np.ndarray, masks: np.ndarray, seed: int = 0) -> dict[str, Any]:
    return {
        "energy_pointing_game": summarise(energy_pointing_game(maps, masks), seed),
        "pointing_game": summarise(pointing_game(maps, masks), seed),
        "chance": summarise(mask_area_share(masks), seed),
    }


def format_summary(summary: dict[str, Any] | None, digits: int = 2) -> str:
    """``0.61 [0.55, 0.66]``, ``-0.80 (1 image, no CI)`` or ``-``: how leaderboards print a summarised metric."""
    if not summary or summary.get("mean") is None or (isinstance(summary["mean"], float) and math.isnan(summary["mean"])):
        return "-"
    if not summary.get("ci"):
        return f"{summary['mean']:.{digits}f} ({summary.get('n', 1)} image, no CI)"
    lo, hi = summary["ci"]
    return f"{summary['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
