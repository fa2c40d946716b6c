"""synthetic-cxr: the embedded default, a procedurally generated chest X-ray task.

Mirrors COVID-QU-Ex's three classes with the radiological pattern that tells
them apart: COVID-19 shows bilateral, peripheral ground-glass opacities;
non-COVID pneumonia a unilateral lobar consolidation; normal lungs are clear.
Every image comes with its lung mask and lesion mask, so localisation can be
scored. Each sample is generated from ``(seed, split, index)`` alone, so the
data is identical on every machine and any split size is a prefix-stable
extension of a smaller one.

Revision 2 makes the task harder, because at revision 1 a label-only OFA-595
trained to a plateau reached 99.6% test accuracy and no comparison could separate
anything (issue 26). The class evidence overlaps, as in real radiographs:

* lesion contrast varies from faint to obvious (``lesion_contrast`` scales it; 1.0 is revision 1's range);
* every class carries class-neutral nodular and vascular opacities (``distractors`` per
  image on average) that look like ground glass but lie anywhere in the lungs, so presence
  of an opacity is not enough: its pattern and place are the evidence;
* a share of cases is atypical (``atypical``): COVID-19 with unilateral predominance (one
  faint blob in the other lung), pneumonia as patchy multifocal opacities in one lung;
* acquisition varies: rotation, scale and position of the chest, exposure, noise.

Revision 3 keeps revision 2's evidence as the default and adds what a fair KD testbed
needed (issue 26):

* a teacher split (``teacher_train_factor``, 3 by default then, 6 since session 16; ``teacher_split.py``): trained on the
  student's few hundred images alone, no teacher ever beat the label-only OFA-595 on a chest
  variant (revisions 1-3, at 360, 1,080 and 2,000 shared images), because what makes a real
  teacher worth distilling from is mostly what it has seen (the source study's are ImageNet-
  pretrained). Seed 0, 600 test images: OFA-595 on 360 images 70.3%, Visformer-S on 1,080
  84.5%, a margin of +14.2 pp [+9.8, +18.0];
* options for visible, learnable evidence (``lung_scale``, ``lesion_scale``, ``texture_scale``,
  ``noise``; 1.0 is revision 2's evidence): at revision 2's settings many lesions are invisible
  under the noise. The lungs' placement now follows their width (so ``lung_scale`` widens them
  outward), which moved revision 2's lungs slightly: hence the new revision.

Split sizes (session 16; the generator is unchanged): the students train on 180 images, the
teachers on 1,080 (``teacher_train_factor`` 6), with 600 validation and 2,400 test images. Once
the student trained to its plateau (batches of 16, 400 steps of patience), it reached on 360
images what Visformer-S reaches on 1,080 (validation 0.81 vs 0.83, seed 0), and 0.79 on 240,
so no method could show a gain against a teacher no better than the baseline; on 180 images it
sat at 0.57-0.61 (seeds 0 and 1), the few-labels regime where distillation is used. Since session 18
the student trains with weight decay 0.5 (OFA-595's spec) and reaches validation 0.72-0.76 on 180
images (three seeds; test 74.0%), against Visformer-S's 0.847 (test 83.0%, a margin of +9.1 pp). At 80% power
a paired difference of 1.8-2.6 pp is detectable on 2,400 test images (3.7-5.2 pp on 600), for
10-20% of images on which the two models disagree (``evaluate.power.detectable_difference``).

``benchmarks/RESULTS.md`` (2026-12-04, 2026-12-05 sessions 12, 13 and 16) has every variant measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from medkd_bench import DatasetSpec, SplitData, hookimpl
from medkd_bench_plugins.datasets.teacher_split import EXTRA_STREAM, TEACHER_SPLIT, load_split

CLASSES = ("COVID-19", "Non-COVID", "Normal")
SPLIT_IDS = {"train": 0, "val": 1, "test": 2, EXTRA_STREAM: 3}
DEFAULTS = {"n_train": 180, "n_val": 600, "n_test": 2400, "seed": 0, "teacher_train_factor": 6.0, "lesion_contrast": 1.0, "distractors": 3.0,
            "atypical": 0.3, "texture": 1.0, "texture_scale": 1.0, "lung_scale": 1.0, "noise": 1.0, "lesion_scale": 1.0}
#: What ``run --matrix quick`` uses unless given: a smoke run, teachers on the students' images.
QUICK_OPTIONS = {"teacher_train_factor": 1.0, "n_val": 240, "n_test": 600}
#: Images per split at most: generated in memory, 100,000 64 px images with their masks take about 1 GB.
MAX_IMAGES = 100_000
RANGES = {"n_train": (0, MAX_IMAGES), "n_val": (0, MAX_IMAGES), "n_test": (0, MAX_IMAGES),
          "seed": (0, 2**31 - 1), "teacher_train_factor": (1.0, 20.0), "lesion_contrast": (0.0, 4.0), "distractors": (0.0, 20.0), "atypical": (0.0, 1.0),
          "texture": (0.0, 1.0), "texture_scale": (0.5, 4.0), "lung_scale": (0.8, 1.4), "noise": (0.0, 2.0), "lesion_scale": (0.5, 2.5)}


def _blob(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2) / 2.0)


def _lungs(xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator,
           scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Left and right lung fields: tilted ellipses cut by a domed diaphragm."""
    fields = []
    gap = rng.uniform(0.13, 0.2)
    for side in (-1, 1):
        ax, ay = rng.uniform(0.24, 0.3) * scale, rng.uniform(0.52, 0.62) * min(scale, 1.25)
        cx = side * (gap + ax + rng.uniform(0.0, 0.03))
        cy = rng.uniform(-0.12, -0.02)
        tilt = side * rng.uniform(0.05, 0.2)
        u = (xx - cx) * np.cos(tilt) + (yy - cy) * np.sin(tilt)
        v = -(xx - cx) * np.sin(tilt) + (yy - cy) * np.cos(tilt)
        inside = (u / ax) ** 2 + (v / ay) ** 2 <= 1.0
        dome = cy + ay * rng.uniform(0.55, 0.75) - 0.25 * ((xx - cx) / ax) ** 2
        fields.append(inside & (yy <= dome))
    return fields[0], fields[1]


def _peripheral_blobs(opacity: np.ndarray, xx: np.ndarray, yy: np.ndarray, lung: np.ndarray, side: int,
                      count: int, rng: np.random.Generator, size: float = 1.0) -> np.ndarray:
    """``count`` ground-glass blobs in the lateral, lower part of one lung (COVID-19's distribution)."""
    ys, xs = np.nonzero(lung)
    if len(xs) == 0:
        return opacity
    xcoords, ycoords = xx[ys, xs], yy[ys, xs]
    outer = xcoords * side  # larger = more lateral (peripheral)
    periphery = outer >= np.quantile(outer, 0.55)
    lower = ycoords >= np.quantile(ycoords, 0.3)
    candidates = np.nonzero(periphery & lower)[0]
    for _ in range(count):
        k = candidates[rng.integers(len(candidates))]
        s = rng.uniform(0.06, 0.1) * size
        opacity = np.maximum(opacity, _blob(xx, yy, xcoords[k], ycoords[k], s, s * rng.uniform(1.0, 1.6)))
    return opacity


def _lesions(
    label: int, xx: np.ndarray, yy: np.ndarray, lungs: tuple[np.ndarray, np.ndarray], rng: np.random.Generator,
    atypical: bool = False, size: float = 1.0,
) -> np.ndarray:
    """Opacity map in [0, 1]: where and how much the lesions raise the density.

    ``atypical``: COVID-19 with unilateral predominance (one faint blob in the other
    lung), pneumonia as patchy multifocal opacities in one lung instead of a lobe.
    """
    opacity = np.zeros_like(xx)
    if label == 0:  # COVID-19: several peripheral ground-glass blobs in both lungs
        heavy = rng.integers(2)
        for side, lung, index in zip((-1, 1), lungs, (0, 1), strict=True):
            if atypical and index != heavy:
                faint = _peripheral_blobs(np.zeros_like(xx), xx, yy, lung, side, 1, rng, size)
                opacity = np.maximum(opacity, 0.5 * faint)
            else:
                opacity = _peripheral_blobs(opacity, xx, yy, lung, side, int(rng.integers(2, 4)), rng, size)
    elif label == 1 and atypical:  # pneumonia, patchy: several blobs anywhere in one lung
        lung = lungs[rng.integers(2)]
        ys, xs = np.nonzero(lung)
        for _ in range(rng.integers(3, 6) if len(xs) else 0):
            k = rng.integers(len(xs))
            s = rng.uniform(0.05, 0.09) * size
            opacity = np.maximum(opacity, _blob(xx, yy, xx[ys[k], xs[k]], yy[ys[k], xs[k]], s, s))
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


def _zero_lines(size: int, sigma_px: float, width: float, rng: np.random.Generator) -> np.ndarray:
    """A network of thin lines in [0, 1]: where a smoothed random field crosses zero (polygons, branches)."""
    field = gaussian_filter(rng.normal(size=(size, size)), max(sigma_px, 0.5))
    field /= field.std() + 1e-9
    return np.exp(-((field / width) ** 2))


def _lesion_texture(label: int, size: int, weight: float, rng: np.random.Generator,
                    feature_scale: float = 1.0) -> np.ndarray:
    """How a lesion's density is patterned: the radiological texture that tells the classes apart.

    COVID-19's ground glass carries a fine reticular network (interlobular lines, "crazy
    paving"); a pneumonia's consolidation is homogeneous, crossed by a few dark air
    bronchograms. ``weight`` 0 gives revision 1's smooth opacities, 1 the full pattern.
    """
    scale = size / 64.0 * feature_scale
    if label == 0:
        pattern = 0.35 + 0.65 * _zero_lines(size, 0.9 * scale, 0.35, rng)
    elif label == 1:
        pattern = 1.0 - 0.7 * _zero_lines(size, 2.5 * scale, 0.12, rng)
    else:
        return np.ones((size, size))
    return (1.0 - weight) + weight * pattern


def _distractors(xx: np.ndarray, yy: np.ndarray, lung: np.ndarray, mean_count: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Class-neutral opacities every class has: small nodules and vascular markings anywhere in the lungs."""
    out = np.zeros_like(xx)
    ys, xs = np.nonzero(lung)
    for _ in range(rng.poisson(mean_count) if len(xs) else 0):
        k = rng.integers(len(xs))
        cx, cy = xx[ys[k], xs[k]], yy[ys[k], xs[k]]
        if rng.random() < 0.5:  # a nodule
            s = rng.uniform(0.03, 0.06)
            out = np.maximum(out, _blob(xx, yy, cx, cy, s, s))
        else:  # a vessel: an elongated streak pointing roughly at the hilum
            t = np.arctan2(cy - 0.0, cx) + rng.normal(0, 0.3)
            u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
            v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
            out = np.maximum(out, np.exp(-((u / rng.uniform(0.1, 0.18)) ** 2 + (v / 0.02) ** 2) / 2.0))
    return out * lung


def make_sample(seed: int, split: str, index: int, label: int, size: int,
                options: Mapping[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One grey image (uint8, HxW) with its lung and lesion masks (bool, HxW)."""
    opts = {**DEFAULTS, **(options or {})}
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    lin = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    yy, xx = np.meshgrid(lin, lin, indexing="ij")
    # Acquisition: the chest rotated, scaled and shifted in the field of view (masks follow).
    angle, zoom = rng.normal(0.0, 0.08), rng.uniform(0.9, 1.1)
    shift = rng.normal(0.0, 0.04, 2)
    xx, yy = ((xx * np.cos(angle) - yy * np.sin(angle)) / zoom + shift[0],
              (xx * np.sin(angle) + yy * np.cos(angle)) / zoom + shift[1])
    body = _blob(xx, yy, 0.0, 0.05, rng.uniform(0.62, 0.75), 1.1)
    image = 0.08 + 0.5 * np.clip(body * 1.6, 0, 1)
    image += 0.25 * np.exp(-((xx / rng.uniform(0.1, 0.14)) ** 2)) * (yy > -0.7)  # mediastinum/spine
    lungs = _lungs(xx, yy, rng, float(opts["lung_scale"]))
    lung = lungs[0] | lungs[1]
    image = np.where(lung, image - rng.uniform(0.3, 0.38), image)
    ribs = 0.05 * (np.sin((yy + 0.15 * np.abs(xx) ** 2) * rng.uniform(26, 32) + rng.uniform(0, 6.3)) > 0.55)
    image += ribs * (body > 0.3)
    atypical = rng.random() < float(opts["atypical"])
    opacity = _lesions(label, xx, yy, lungs, rng, atypical, float(opts["lesion_scale"])) * lung
    contrast = float(opts["lesion_contrast"])
    image += contrast * rng.uniform(0.1, 0.32) * opacity * _lesion_texture(
        label, size, float(opts["texture"]), rng, float(opts["texture_scale"]))
    # Every class: nodules and vessels as dense as the lesions, so an opacity alone is no evidence.
    image += contrast * rng.uniform(0.1, 0.32) * _distractors(xx, yy, lung, float(opts["distractors"]), rng)
    # Mild distractors every class has: a heart shadow and soft vignetting.
    image += 0.12 * _blob(xx, yy, rng.uniform(0.05, 0.15), rng.uniform(0.2, 0.35), 0.18, 0.16)
    image *= rng.uniform(0.85, 1.15)
    image += rng.normal(0.0, rng.uniform(0.03, 0.06) * float(opts["noise"]), image.shape)
    pixels = np.clip(image, 0.0, 1.0) * 255.0
    return pixels.astype(np.uint8), lung, (opacity > 0.35) & lung


def load(split: str, img_size: int, root: Path | None, options: Mapping[str, Any]) -> SplitData:
    return load_split(_generate, split, img_size, {**DEFAULTS, **options})


def _generate(split: str, n: int, img_size: int, opts: Mapping[str, Any]) -> SplitData:
    """``n`` samples of one stream (a split, or the teacher's extra images), balanced and shuffled."""
    seed = int(opts["seed"])
    order = np.random.default_rng([seed, SPLIT_IDS[split], 10**6]).permutation(n)
    labels = order % len(CLASSES)  # balanced classes, shuffled
    images = np.empty((n, 1, img_size, img_size), dtype=np.uint8)
    lung = np.empty((n, img_size, img_size), dtype=bool)
    lesion = np.empty_like(lung)
    for i, label in enumerate(labels):
        images[i, 0], lung[i], lesion[i] = make_sample(seed, split, i, int(label), img_size, opts)
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
            option_ranges=RANGES,
            teacher_split=TEACHER_SPLIT,
            quick_options=QUICK_OPTIONS,
            revision="3",  # a teacher split; lung placement follows lung width; options for visible evidence
            citation="medkd-bench embedded data, modelled on COVID-QU-Ex (Tahir et al., 2021, "
            "Comput. Biol. Med. 139:105002)",
            description="Generated chest X-rays: COVID-19 (bilateral peripheral opacities), "
            "non-COVID pneumonia (unilateral lobar consolidation), normal; lung and lesion masks.",
        )
    )
