"""Uncertainty for leaderboard numbers: bootstrap CIs, paired KD-gain tests, seed spread.

Two sources of noise are kept apart:

* *test-set sampling*: a different draw of test images would give a different
  accuracy. A percentile bootstrap over test images (the exchangeable unit)
  gives a 95% confidence interval; every function here resamples *image
  indices*, so one mechanism serves a mean of per-image values, accuracy,
  macro-F1 and a paired difference between two models on the same images.
* *training seed*: a different seed gives a different model. Runs with
  several seeds report the mean and sample standard deviation across seeds;
  their CI resamples the same images for every seed, so it is the CI of the
  seed-averaged score.

The KD-gain test is paired (both students are scored on the same images):
a paired bootstrap of the accuracy difference, plus McNemar's exact test on
the discordant images (two-sided binomial test, scipy ``binomtest``) with its
mid-p variant. All resampling is seeded, so a leaderboard re-renders
identically.

Whether a *method* beats label-only training is a question about training
seeds, not only test images: synthetic-histo's seeds gained +18, +3 and -15
pp from KD, and an images-only CI of the mean (+0.9 to +3.3) called that a
gain. So a gain over several seeds gets a t interval whose variance adds
both sources (:func:`seed_and_image_interval`): the spread of the per-seed
gains over the number of seeds (training noise, ``S - 1`` degrees of
freedom) plus the bootstrap variance of the seed-averaged gain over test
images (every seed is scored on the same images, so this part does not
shrink with more seeds), with Welch-Satterthwaite degrees of freedom. Only
that interval can mark a gain significant; with one seed the CI covers the
test images alone and no gain is called (a seed's luck cannot be told from
the method's effect). The t interval is exact for normal per-seed gains
and conservative otherwise: it counts the part of the image noise that
differs between seeds twice (once in their spread, once in the bootstrap).
A two-level bootstrap (seeds, then images) was measured and rejected: with
three seeds it has ten distinct seed draws and is known to be too narrow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

#: Default number of bootstrap resamples (``--bootstrap``).
RESAMPLES = 1000


CONFIDENCE = 0.95

#: ``ci_basis`` of a paired difference whose CI counts training seeds as well as test images.
SEEDS_AND_IMAGES = "seeds and images"


#: Resamples evaluated at once: bounds memory at ``BATCH x n_images`` indices per seed.
BATCH = 250


IndexStatistic = Callable[[np.ndarray], np.ndarray]


def bootstrap_ci(n: int, statistic: IndexStatistic, seed: int = 0, resamples: int = RESAMPLES,
                 confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Percentile bootstrap CI of ``statistic`` over ``n`` exchangeable units (images).

    ``statistic`` maps an integer index array of shape ``(..., n)`` (each row a
    resample of ``range(n)``) to one value per row; it is called with all
    ``range(n)`` for the point estimate elsewhere. ``None`` when ``n == 0``.
    """
    out = _bootstrap(n, statistic, seed, resamples, confidence)
    return None if out is None else (out[0], out[1])


def _bootstrap(n: int, statistic: IndexStatistic, seed: int, resamples: int,
               confidence: float) -> tuple[float, float, float] | None:
    """:func:`bootstrap_ci` plus the bootstrap standard error (low, high, SE); SE 0 for one unit."""
    if n == 0:
        return None
    if n == 1:
        point = float(statistic(np.arange(1)))
        return point, point, 0.0
    if resamples < 1:
        raise ValueError("resamples must be positive")
    res = stats.bootstrap(
        (np.arange(n),), lambda idx, axis=-1: statistic(idx), vectorized=True, confidence_level=confidence,
        n_resamples=resamples, method="percentile", batch=BATCH, rng=np.random.default_rng(seed),
    )
    lo, hi = res.confidence_interval
    return float(lo), float(hi), float(res.standard_error)


def mean_ci(values: Sequence[float] | np.ndarray, seed: int = 0, resamples: int = 2000) -> dict[str, Any]:
    """Mean and percentile-bootstrap CI over the finite values (NaNs are units a metric skips).

    One value has no CI (``ci`` is None): resampling one image only ever draws
    that image, and printing ``[-0.80, -0.80]`` would read as certainty.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"mean": None, "ci": None, "n": 0}
    if len(v) == 1:
        return {"mean": float(v[0]), "ci": None, "n": 1}
    if np.ptp(v) == 0:
        return {"mean": float(v.mean()), "ci": [float(v.mean())] * 2, "n": int(len(v))}
    lo, hi = bootstrap_ci(len(v), lambda idx: v[idx].mean(-1), seed, resamples)  # type: ignore[misc]
    return {"mean": float(v.mean()), "ci": [lo, hi], "n": int(len(v))}


def _as_seeds(preds: np.ndarray | Sequence) -> np.ndarray:
    """Predictions as ``(seeds, images)``: one row per training seed."""
    p = np.asarray(preds, dtype=np.int64)
    return p[None, :] if p.ndim == 1 else p


def macro_f1_rows(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Macro-F1 over the last axis, for any leading shape (scikit-learn's definition, zero_division=0).

    Every class in ``range(num_classes)`` counts, present in the sample or not,
    as in the stored point estimate (``f1_score(labels=range(K), average="macro")``).
    """
    total = np.zeros(np.broadcast_shapes(labels.shape, preds.shape)[:-1])
    for k in range(num_classes):
        is_true, is_pred = labels == k, preds == k
        tp = (is_true & is_pred).sum(-1)
        denom = is_true.sum(-1) + is_pred.sum(-1)
        total = total + np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return total / num_classes


def resample_counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` images is drawn in each resample: index arrays ``(B, m)`` to counts ``(B, n)``.

    Every clinical figure is a weighted sum over images, so a resample is its
    counts: no image is copied and no score is re-ranked per resample.
    """
    idx = np.atleast_2d(idx)  # one resample may come as a plain index array
    b = idx.shape[0]
    flat = (np.arange(b)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def accuracy_weighted(correct: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Accuracy per seed and per row of image counts: ``correct`` ``(seeds, n)`` of 0/1, ``weights`` ``(B, n)``.

    Returns ``(seeds, B)``, equal to the mean of ``correct`` over each resample's images to the last bit
    (the counts sum to n, and every sum is a whole number).
    """
    return (correct @ weights.T) / weights.shape[1]


def macro_f1_weighted(labels: np.ndarray, preds: np.ndarray, weights: np.ndarray, num_classes: int) -> np.ndarray:
    """:func:`macro_f1_rows` per seed and per row of image counts: ``preds`` ``(seeds, n)``, ``weights`` ``(B, n)``.

    Returns ``(seeds, B)``. Each class's true positives and totals are count-weighted sums, one matrix
    product per seed instead of comparisons over ``seeds x B x n`` resampled copies; every sum is a
    whole number, so the result equals :func:`macro_f1_rows` on the resampled images to the last bit.
    """
    classes = np.arange(num_classes)[None, :]
    truth = labels[:, None] == classes
    true_counts = weights @ truth.astype(np.float64)  # (B, K)
    out = np.empty((len(preds), len(weights)))
    for s, pred in enumerate(preds):
        said = pred[:, None] == classes
        tp, denom = weights @ (truth & said).astype(np.float64), true_counts + weights @ said.astype(np.float64)
        total = np.zeros(len(weights))
        for k in range(num_classes):  # class by class, as macro_f1_rows adds them
            total = total + np.where(denom[:, k] > 0, 2 * tp[:, k] / np.maximum(denom[:, k], 1), 0.0)
        out[s] = total / num_classes
    return out


def _sd(values: np.ndarray) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def classification_summary(labels: Sequence[int] | np.ndarray, preds: np.ndarray | Sequence, num_classes: int,
                           seed: int = 0, resamples: int = RESAMPLES) -> dict[str, dict[str, Any]]:
    """Accuracy and macro-F1: mean over seeds, bootstrap CI over images, sd across seeds.

    ``preds`` is ``(images,)`` for one seed or ``(seeds, images)`` for several
    runs on the same test split; the bootstrap draws one set of image indices
    per resample and applies it to every seed.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = _as_seeds(preds)
    if p.shape[1] != len(y):
        raise ValueError(f"{p.shape[1]} predictions for {len(y)} labels")
    correct = (p == y).astype(float)
    acc_per_seed = correct.mean(1)
    f1_per_seed = macro_f1_rows(y[None, :], p, num_classes)
    n = len(y)
    # A resample is its image counts (B, n): matrix products give the same numbers as indexing every
    # seed's predictions with (B, n) indices (all sums are whole numbers), 11-20x faster (benchmarks/bench_bootstrap.py).
    acc_ci = bootstrap_ci(n, lambda idx: accuracy_weighted(correct, resample_counts(idx, n)).mean(0), seed, resamples)
    f1_ci = bootstrap_ci(n, lambda idx: macro_f1_weighted(y, p, resample_counts(idx, n), num_classes).mean(0),
                         seed, resamples)
    return {
        "accuracy": {"mean": float(acc_per_seed.mean()), "ci": list(acc_ci) if acc_ci else None,
                     "sd": _sd(acc_per_seed), "n_seeds": len(p), "n": len(y)},
        "macro_f1": {"mean": float(f1_per_seed.mean()), "ci": list(f1_ci) if f1_ci else None,
                     "sd": _sd(f1_per_seed), "n_seeds": len(p), "n": len(y)},
    }


def mcnemar(correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray) -> dict[str, Any]:
    """McNemar's exact test of "A and B are equally accurate" on paired per-image outcomes.

    ``b`` = images only A gets right, ``c`` = images only B gets right. Under
    the null each discordant image is a fair coin, so ``p_exact`` is the
    two-sided binomial test of ``b`` successes in ``b + c`` (scipy
    ``binomtest``); ``p_mid`` subtracts the observed outcome's probability
    once, the mid-p correction that makes the exact test less conservative.
    """
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    b = int((a & ~b_).sum())
    c = int((~a & b_).sum())
    n = b + c
    if n == 0:
        return {"b": 0, "c": 0, "p_exact": 1.0, "p_mid": 1.0}
    p_exact = float(stats.binomtest(b, n, 0.5).pvalue)
    k = min(b, c)
    p_mid = float(min(1.0, 2 * (stats.binom.cdf(k, n, 0.5) - 0.5 * stats.binom.pmf(k, n, 0.5))))
    return {"b": b, "c": c, "p_exact": p_exact, "p_mid": p_mid}


def paired_difference(labels: Sequence[int] | np.ndarray, preds_a: np.ndarray | Sequence,
                      preds_b: np.ndarray | Sequence, seed: int = 0, resamples: int = RESAMPLES,
                      confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Accuracy of A minus accuracy of B on the same images: CI over seeds and images, and McNemar per seed.

    Rows of ``preds_a`` and ``preds_b`` are matched by training seed (KD student
    and label-only student of the same seed). The difference is averaged over
    seeds. ``ci_images`` is the paired bootstrap over test images (one set of
    image indices per resample for both models and all seeds, which keeps the
    pairing) and ``se_images`` its standard error. With two or more seeds
    ``ci`` is :func:`seed_and_image_interval` (``ci_basis`` "seeds and
    images", ``df`` its degrees of freedom, ``se`` its standard error) and
    ``significant`` means it excludes 0; with one seed ``ci`` is
    ``ci_images`` (``ci_basis`` "images") and nothing is significant (see
    the module docstring). McNemar's test is reported per seed (pooling seeds
    would count each image several times).
    """
    y = np.asarray(labels, dtype=np.int64)
    a, b = _as_seeds(preds_a), _as_seeds(preds_b)
    if a.shape != b.shape or a.shape[1] != len(y):
        raise ValueError(f"paired predictions must match: {a.shape} vs {b.shape} for {len(y)} labels")
    ca, cb = (a == y).astype(float), (b == y).astype(float)
    per_seed = ca.mean(1) - cb.mean(1)

    def difference(idx: np.ndarray) -> np.ndarray:
        counts = resample_counts(idx, len(y))
        return (accuracy_weighted(ca, counts) - accuracy_weighted(cb, counts)).mean(0)

    images = _bootstrap(len(y), difference, seed, resamples, confidence)
    ci_images, se_images = (list(images[:2]), images[2]) if images else (None, None)
    out: dict[str, Any] = {
        "mean": float(per_seed.mean()), "sd": _sd(per_seed), "n_seeds": len(a), "n": len(y),
        "ci_images": ci_images, "se_images": se_images,
        "ci": ci_images, "ci_basis": "images", "se": se_images, "df": None, "significant": False,
        "mcnemar": [mcnemar(ca[s] > 0, cb[s] > 0) for s in range(len(a))],
    }
    if images and len(a) > 1:
        lo, hi, se, df = seed_and_image_interval(per_seed, images[2], confidence)
        out.update(ci=[lo, hi], ci_basis=SEEDS_AND_IMAGES, se=se, df=df, significant=lo > 0 or hi < 0)
    return out


def seed_and_image_interval(per_seed: np.ndarray, se_images: float,
                            confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """t interval of the mean of ``per_seed`` values whose variance adds test-image noise: (low, high, SE, df).

    Variance: ``var(per_seed) / S`` (between seeds, ``S - 1`` degrees of
    freedom) plus ``se_images ** 2`` (the seed average's bootstrap variance
    over test images, taken as known: thousands of images against a few
    seeds). Degrees of freedom by Welch-Satterthwaite,
    ``(v_seeds + v_images) ** 2 * (S - 1) / v_seeds ** 2``: ``S - 1`` when
    the seeds' spread dominates, growing without bound as it vanishes.
    """
    d = np.asarray(per_seed, dtype=float)
    s = len(d)
    if s < 2:
        raise ValueError("a seed-aware interval needs at least two seeds")
    v_seeds, v_images = float(d.var(ddof=1)) / s, float(se_images) ** 2
    df = (v_seeds + v_images) ** 2 * (s - 1) / v_seeds ** 2 if v_seeds > 0 else math.inf
    se = math.sqrt(v_seeds + v_images)
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * se
    return float(d.mean()) - half, float(d.mean()) + half, se, df


def format_ci(summary: dict[str, Any] | None, scale: float = 100.0, digits: int = 1) -> str:
    """``94.2 [93.1, 95.2]`` (the mean and its CI, in percent by default) or ``-``."""
    if not summary or summary.get("mean") is None:
        return "-"
    text = f"{scale * summary['mean']:.{digits}f}"
    if summary.get("ci"):
        lo, hi = summary["ci"]
        text += f" [{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"
    return text


def format_sd(summary: dict[str, Any] | None, scale: float = 100.0, digits: int = 1) -> str:
    """``93.8 ± 0.6 (3 seeds)`` across training seeds, or ``-`` for a single seed."""
    if not summary or summary.get("sd") is None:
        return "-"
    return f"{scale * summary['mean']:.{digits}f} ± {scale * summary['sd']:.{digits}f} ({summary['n_seeds']} seeds)"


def format_p(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"
