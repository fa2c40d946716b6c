"""synthetic-cxr: the embedded default, a procedurally generated chest X-ray task.

Mirrors COVID-QU-Ex's three classes with the radiological pattern that tells
them apart: COVID-19 shows bilateral, peripheral ground-glass opacities;
non-COVID pneumonia a unilateral lobar consolidation; normal lungs are clear.
Every image comes with its lung mask and lesion mask, so localisation can be
scored. Each sample is generated from ``(seed, split, index)`` alone, so the
data is identical on every machine and any split size is a prefix-stable
extension of a smaller one. Lesion contrast varies from faint to obvious, so
the task is learnable but not trivial.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medkd_bench import DatasetSpec, SplitData, hookimpl

CLASSES = ("COVID-19", "Non-COVID", "Normal")
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
DEFAULTS = {"n_train": 360, "n_val": 120, "n_test": 240, "seed": 0}


def _blob(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2) / 2.0)


def _lungs(xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Left and right lung fields: tilted ellipses cut by a domed diaphragm."""
    fields = []
    gap = rng.uniform(0.13, 0.2)
    for side in (-1, 1):
        cx = side * (gap + rng.uniform(0.25, 0.3))
        cy = rng.uniform(-0.12, -0.02)
        ax, ay = rng.uniform(0.24, 0.3), rng.uniform(0.52, 0.62)
        tilt = side * rng.uniform(0.05, 0.2)
        u = (xx - cx) * np.cos(tilt) + (yy - cy) * np.sin(tilt)
        v = -(xx - cx) * np.sin(tilt) + (yy - cy) * np.cos(tilt)
        inside = (u / ax) ** 2 + (v / ay) ** 2 <= 1.0
        dome = cy + ay * rng.uniform(0.55, 0.75) - 0.25 * ((xx - cx) / ax) ** 2
        fields.append(inside & (yy <= dome))
    return fields[0], fields[1]


def _lesions(
    label: int, xx: np.ndarray, yy: np.ndarray, lungs: tuple[np.ndarray, np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """Opacity map in [0, 1]: where and how much the lesions raise the density."""
    opacity = np.zeros_like(xx)
    if label == 0:  # COVID-19: several peripheral ground-glass blobs in both lungs
        for side, lung in zip((-1, 1), lungs, strict=True):
            ys, xs = np.nonzero(lung)
            if len(xs) == 0:
                continue
            xcoords, ycoords = xx[ys, xs], yy[ys, xs]
            outer = xcoords * side  # larger = more lateral (peripheral)
            periphery = outer >= np.quantile(outer, 0.55)
            lower = ycoords >= np.quantile(ycoords, 0.3)
            candidates = np.nonzero(periphery & lower)[0]
            for _ in range(rng.integers(2, 4)):
                k = candidates[rng.integers(len(candidates))]
                s = rng.uniform(0.06, 0.1)
                opacity = np.maximum(opacity, _blob(xx, yy, xcoords[k], ycoords[k], s, s * rng.uniform(1.0, 1.6)))
    elif label == 1:  # non-COVID pneumonia: one dense lobe in one lung
        lung = lungs[rng.integers(2)]
        ys, xs = np.nonzero(lung)
        if len(xs):
            ycoords = yy[ys, xs]
            lo, hi = ycoords.min(), ycoords.max()
            if rng.random() < 0.6:  # lower lobe
                edge = lo + (hi - lo) * rng.uniform(0.45, 0.6)
                lobe = yy >= edge
            else:  # upper lobe
                edge = lo + (hi - lo) * rng.uniform(0.35, 0.5)
                lobe = yy <= edge
            region = (lung & lobe).astype(np.float64)
            # Soften the lobe's edge so it reads as consolidation, not a cut-out.
            k = np.array([1, 4, 6, 4, 1], dtype=np.float64) / 16.0
            for axis in (0, 1):
                region = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), axis, region)
            opacity = np.maximum(opacity, region)
    return opacity


def make_sample(seed: int, split: str, index: int, label: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One grey image (uint8, HxW) with its lung and lesion masks (bool, HxW)."""
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    lin = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    yy, xx = np.meshgrid(lin, lin, indexing="ij")
    body = _blob(xx, yy, 0.0, 0.05, rng.uniform(0.62, 0.75), 1.1)
    image = 0.08 + 0.5 * np.clip(body * 1.6, 0, 1)
    image += 0.25 * np.exp(-((xx / rng.uniform(0.1, 0.14)) ** 2)) * (yy > -0.7)  # mediastinum/spine
    lungs = _lungs(xx, yy, rng)
    lung = lungs[0] | lungs[1]
    image = np.where(lung, image - rng.uniform(0.3, 0.38), image)
    ribs = 0.05 * (np.sin((yy + 0.15 * np.abs(xx) ** 2) * rng.uniform(26, 32) + rng.uniform(0, 6.3)) > 0.55)
    image += ribs * (body > 0.3)
    opacity = _lesions(label, xx, yy, lungs, rng) * lung
    strength = rng.uniform(0.1, 0.32)
    image += strength * opacity
    # Mild distractors every class has: a heart shadow and soft vignetting.
    image += 0.12 * _blob(xx, yy, rng.uniform(0.05, 0.15), rng.uniform(0.2, 0.35), 0.18, 0.16)
    image *= rng.uniform(0.85, 1.15)
    image += rng.normal(0.0, rng.uniform(0.03, 0.06), image.shape)
    pixels = np.clip(image, 0.0, 1.0) * 255.0
    return pixels.astype(np.uint8), lung, (opacity > 0.35) & lung


def load(split: str, img_size: int, root: Path | None, options: Mapping[str, Any]) -> SplitData:
    opts = {**DEFAULTS, **options}
    n = int(opts[f"n_{split}"])
    seed = int(opts["seed"])
    order = np.random.default_rng([seed, SPLIT_IDS[split], 10**6]).permutation(n)
    labels = order % len(CLASSES)  # balanced classes, shuffled
    images = np.empty((n, 1, img_size, img_size), dtype=np.uint8)
    lung = np.empty((n, img_size, img_size), dtype=bool)
    lesion = np.empty_like(lung)
    for i, label in enumerate(labels):
        images[i, 0], lung[i], lesion[i] = make_sample(seed, split, i, int(label), img_size)
    return SplitData(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels.astype(np.int64)),
        masks={"lung": torch.from_numpy(lung), "lesion": torch.from_numpy(lesion)},
    )


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            name="synthetic-cxr",
            classes=CLASSES,
            load=load,
            img_size=64,
            channels=1,
            mask_names=("lung", "lesion"),
            localisation_mask="lesion",
            options=DEFAULTS,
            citation="medkd-bench embedded data, modelled on COVID-QU-Ex (Tahir et al., 2021, "
            "Comput. Biol. Med. 139:105002)",
            description="Generated chest X-rays: COVID-19 (bilateral peripheral opacities), "
            "non-COVID pneumonia (unilateral lobar consolidation), normal; lung and lesion masks.",
        )
    )
