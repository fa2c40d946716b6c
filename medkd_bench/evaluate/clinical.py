"""The scores medical readers expect beside accuracy: ROC AUC, sensitivity, specificity, calibration.

* **ROC AUC**: macro one-vs-rest over classes (MedMNIST's headline metric),
  from the predicted class probabilities; for two classes the macro average
  equals the binary AUC. Point estimates come from scikit-learn's
  ``roc_auc_score``; bootstrap resamples use the Mann-Whitney form of the same
  statistic with each resample's image counts as weights, vectorised over
  resamples, and cross-checked against scikit-learn's ``sample_weight`` in the tests.
* **Sensitivity and specificity per class**: one-vs-rest recall of the class
  and of "not the class", from the predicted labels (so they exist for every
  stored cell, also those stored before probabilities were).
* **Expected calibration error** (Guo et al., ICML 2017): top-label
  confidence in 15 equal-width bins, ``sum_b |B_b|/n * |acc(B_b) - conf(B_b)|``.

Uncertainty follows :mod:`medkd_bench.evaluate.stats`: means over training
seeds, percentile-bootstrap CIs that resample test-image indices (one draw
applied to every seed), the sample sd across seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from medkd_bench.evaluate.stats import BATCH, CONFIDENCE, RESAMPLES, resample_counts

#: Equal-width confidence bins of the expected calibration error (Guo et al. use 15).
ECE_BINS = 15


def roc_auc_point(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """Macro one-vs-rest ROC AUC from scikit-learn; None when a class is missing from ``labels``.

    For two classes it equals the binary AUC of class 1 (class 0's one-vs-rest AUC is the same number).
    """
    from sklearn.metrics import roc_auc_score

    k = probs.shape[-1]
    if len(np.unique(labels)) < k:
        return None
    # What roc_auc_score(multi_class="ovr", average="macro") averages, without its check that rows sum to 1
    # (stored probabilities are rounded to float32's 7 digits).
    return float(np.mean([roc_auc_score(labels == c, probs[:, c]) for c in range(k)]))


def _onehot(values: np.ndarray, width: int) -> np.ndarray:
    return (values[:, None] == np.arange(width)[None, :]).astype(np.float64)


def roc_auc_weighted(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Macro one-vs-rest AUC per row of image weights ``(B, n)``; ``probs`` ``(n, K)``.

    ``AUC_k`` is the weighted share of (positive, negative) pairs the class-k
    score orders correctly, ties counting one half (the Mann-Whitney form, as
    scikit-learn's ``roc_auc_score`` with ``sample_weight``). Scores are
    grouped by value once; each row then needs only group sums and a cumulative
    sum. NaN where a row has no positive or no negative image of a class.
    """
    b, n = weights.shape
    total = np.zeros(b)
    for c in range(probs.shape[1]):
        values, group = np.unique(probs[:, c], return_inverse=True)
        u = len(values)
        sums = []
        for mask in (labels == c, labels != c):
            flat = (np.arange(b)[:, None] * u + group[mask][None, :]).ravel()
            sums.append(np.bincount(flat, weights=weights[:, mask].ravel(), minlength=b * u).reshape(b, u))
        pos, neg = sums
        below = np.cumsum(neg, axis=1) - neg  # negative weight with a lower score than each group
        pairs = pos.sum(1) * neg.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            total = total + np.where(pairs > 0, (pos * (below + 0.5 * neg)).sum(1) / pairs, np.nan)
    return total / probs.shape[1]


def ece_weighted(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """Expected calibration error (top label, equal-width bins) per row of image weights ``(B, n)``."""
    conf = probs.max(1)
    gap = conf - (probs.argmax(1) == labels)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)  # confidence 1.0 goes in the last bin
    return np.abs(weights @ (_onehot(which, bins) * gap[:, None])).sum(1) / weights.sum(1)


def sensitivity_specificity_weighted(labels: np.ndarray, preds: np.ndarray, weights: np.ndarray,
                                     num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sensitivity and specificity per row of image weights: two ``(B, K)``; NaN where undefined."""
    truth, said = _onehot(labels, num_classes), _onehot(preds, num_classes)
    positives = weights @ truth
    negatives = weights.sum(1, keepdims=True) - positives
    tp = weights @ (truth * said)
    fp = weights @ ((1 - truth) * said)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.where(positives > 0, tp / positives, np.nan)
        spec = np.where(negatives > 0, (negatives - fp) / negatives, np.nan)
    return sens, spec


def _summary(per_seed: np.ndarray, ci: tuple[float, float] | None, n: int) -> dict[str, Any]:
    finite = per_seed[np.isfinite(per_seed)]
    if len(finite) == 0:
        return {"mean": None, "ci": None, "sd": None, "n_seeds": len(per_seed), "n": n}
    return {"mean": float(finite.mean()), "ci": list(ci) if ci else None,
            "sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else None, "n_seeds": len(per_seed), "n": n}


def resampled_cis(n: int, statistic: Callable[[np.ndarray], np.ndarray], point: np.ndarray, seed: int = 0,
                  resamples: int = RESAMPLES) -> list[tuple[float, float] | None]:
    """Bias-corrected percentile-bootstrap 95% CIs over ``n`` images, for statistics that may be undefined.

    ``statistic`` maps index arrays ``(B, n)`` to ``(B, m)``: m statistics on
    the same resamples; ``point`` holds their m estimates on all images.
    The bias correction (Efron's BC: percentiles shifted by ``z0``, the normal
    quantile of the share of resamples below the estimate) matters for ECE:
    binning makes a resample's calibration error larger than the sample's, so
    a plain percentile interval sits above the estimate; for AUC, sensitivity
    and specificity it changes little. A resample that draws no image of some
    class leaves that class's figures undefined; such resamples are dropped
    (scikit-learn would raise), and with fewer than half left there is no
    honest interval (None).
    """
    from scipy.stats import norm

    if n < 2 or resamples < 1:
        return []
    rng = np.random.default_rng(seed)
    v = np.concatenate([statistic(rng.integers(0, n, size=(min(BATCH, resamples - start), n)))
                        for start in range(0, resamples, BATCH)])
    out: list[tuple[float, float] | None] = []
    z = norm.ppf([(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    for column, estimate in zip(v.T, point, strict=True):
        finite = column[np.isfinite(column)]
        if len(finite) < max(2, resamples // 2) or not np.isfinite(estimate):
            out.append(None)
            continue
        below = (np.sum(finite < estimate) + 0.5 * np.sum(finite == estimate)) / len(finite)
        z0 = norm.ppf(np.clip(below, 1 / len(finite), 1 - 1 / len(finite)))
        lo, hi = np.percentile(finite, 100 * norm.cdf(2 * z0 + z))
        out.append((float(lo), float(hi)))
    return out


def _per_seed(labels: np.ndarray, preds: np.ndarray, probs: np.ndarray | None, weights: np.ndarray,
              num_classes: int) -> np.ndarray:
    """``(B, seeds, 4 + 2K)``: AUC, ECE, mean sensitivity and specificity, then each class's.

    ``labels`` ``(n,)``; ``preds`` ``(seeds, n)``; ``probs`` ``(seeds, n, K)`` or None (NaN AUC and ECE);
    ``weights`` ``(B, n)``: one row per resample (ones for the sample itself).
    """
    rows = []
    for s in range(len(preds)):
        sens, spec = sensitivity_specificity_weighted(labels, preds[s], weights, num_classes)
        if probs is None:
            auc = ece = np.full(len(weights), np.nan)
        else:
            auc, ece = roc_auc_weighted(labels, probs[s], weights), ece_weighted(labels, probs[s], weights)
        macro = [sens.mean(1, keepdims=True), spec.mean(1, keepdims=True)]  # NaN if a class is undefined
        rows.append(np.concatenate([auc[:, None], ece[:, None], *macro, sens, spec], 1))
    return np.stack(rows, 1)


def clinical_summary(labels: Sequence[int] | np.ndarray, preds: np.ndarray | Sequence,
                     probs: np.ndarray | None, num_classes: int, seed: int = 0,
                     resamples: int = RESAMPLES) -> dict[str, Any]:
    """ROC AUC, ECE, sensitivity and specificity (per class and their means): mean over seeds, CI, sd.

    ``preds`` is ``(images,)`` or ``(seeds, images)``; ``probs`` ``([seeds,] images, classes)``
    or None (then AUC and ECE are None: cells stored before probabilities were).
    Point estimates per seed use scikit-learn for the AUC; every resample draws
    one set of images for all seeds and all of these statistics.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(preds, dtype=np.int64)
    p = p[None, :] if p.ndim == 1 else p
    q = None if probs is None else np.asarray(probs, dtype=np.float64)
    if q is not None and q.ndim == 2:
        q = q[None]
    n, k = len(y), num_classes
    point = _per_seed(y, p, q, np.ones((1, n)), k)[0]  # (seeds, 4 + 2K)
    if q is not None:  # the AUC's point estimate from scikit-learn itself
        point[:, 0] = [np.nan if a is None else a for a in (roc_auc_point(y, qs) for qs in q)]
    def resampled(idx: np.ndarray) -> np.ndarray:  # (B, n) -> (B, 4 + 2K), the mean over seeds
        return _per_seed(y, p, q, resample_counts(idx, n), k).mean(1)

    finite = np.isfinite(point)  # the estimates the intervals are centred on: means over the defined seeds
    estimate = np.where(finite.any(0), np.where(finite, point, 0).sum(0) / np.maximum(finite.sum(0), 1), np.nan)
    cis = resampled_cis(n, resampled, estimate, seed, resamples) or [None] * (4 + 2 * k)
    summaries = [_summary(point[:, j], cis[j], n) for j in range(4 + 2 * k)]
    return {"roc_auc": summaries[0] if q is not None else None, "ece": summaries[1] if q is not None else None,
            # Mean sensitivity over classes is balanced accuracy.
            "mean_sensitivity": summaries[2], "mean_specificity": summaries[3],
            "sensitivity": summaries[4:4 + k], "specificity": summaries[4 + k:]}
