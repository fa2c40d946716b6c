"""The scores medical readers expect beside accuracy: ROC AUC, sensitivity, specificity, calibration.

* **ROC AUC**: macro one-vs-rest over classes (MedMNIST's headline metric),
  from the predicted class probabilities; for two classes the macro average
  equals the binary AUC. Point estimates come from scikit-learn's
  ``roc_auc_score``; bootstrap resamples use the Mann-Whitney form of the same
  statistic (average ranks for ties, as scikit-learn), vectorised over
  resamples, and are cross-checked against scikit-learn in the tests.
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
from scipy.stats import rankdata

from medkd_bench.evaluate.stats import BATCH, CONFIDENCE, RESAMPLES

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


def roc_auc_rows(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Macro one-vs-rest AUC for every leading index: ``labels`` ``(..., n)``, ``probs`` ``(..., n, k)``.

    ``AUC_k = (rank-sum of the positives - P(P+1)/2) / (P N)``, the
    Mann-Whitney statistic with average ranks for ties; NaN where a class is
    absent from a resample (scikit-learn refuses those).
    """
    k = probs.shape[-1]
    total = 0.0
    for c in range(k):
        pos = labels == c
        ranks = rankdata(probs[..., c], axis=-1)
        n_pos = pos.sum(-1)
        n_neg = pos.shape[-1] - n_pos
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = ((ranks * pos).sum(-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        total = total + np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
    return total / k


def ece_rows(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """Expected calibration error (top label, equal-width bins) for every leading index."""
    conf = probs.max(-1)
    correct = (probs.argmax(-1) == labels).astype(float)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)  # confidence 1.0 goes in the last bin
    gap = conf - correct
    lead = gap.shape[:-1]
    flat = (np.arange(int(np.prod(lead, dtype=np.int64))).reshape(*lead, 1) * bins + which).ravel()
    sums = np.bincount(flat, weights=gap.ravel(), minlength=int(np.prod(lead, dtype=np.int64)) * bins)
    return np.abs(sums.reshape(*lead, bins)).sum(-1) / gap.shape[-1]


def sensitivity_specificity_rows(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sensitivity and specificity, shape ``(..., num_classes)``; NaN where undefined."""
    sens, spec = [], []
    for c in range(num_classes):
        true_c, pred_c = labels == c, preds == c
        tp, fn = (true_c & pred_c).sum(-1), (true_c & ~pred_c).sum(-1)
        tn, fp = (~true_c & ~pred_c).sum(-1), (~true_c & pred_c).sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            sens.append(np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), np.nan))
            spec.append(np.where(tn + fp > 0, tn / np.maximum(tn + fp, 1), np.nan))
    return np.stack(sens, -1), np.stack(spec, -1)


def _summary(per_seed: np.ndarray, ci: tuple[float, float] | None, n: int) -> dict[str, Any]:
    finite = per_seed[np.isfinite(per_seed)]
    if len(finite) == 0:
        return {"mean": None, "ci": None, "sd": None, "n_seeds": len(per_seed), "n": n}
    return {"mean": float(finite.mean()), "ci": list(ci) if ci else None,
            "sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else None, "n_seeds": len(per_seed), "n": n}


def resampled_cis(n: int, statistic: Callable[[np.ndarray], np.ndarray], seed: int = 0,
                  resamples: int = RESAMPLES) -> list[tuple[float, float] | None]:
    """Percentile-bootstrap 95% CIs over ``n`` images of statistics that may be undefined (NaN) on a resample.

    ``statistic`` maps index arrays ``(B, n)`` to ``(B, m)``: m statistics on
    the same resamples. A resample that draws no image of some class leaves
    that class's AUC, sensitivity or specificity undefined; such resamples are
    dropped for that statistic (scikit-learn would raise), and with fewer than
    half of them left there is no honest interval (None).
    """
    if n < 2 or resamples < 1:
        return []
    rng = np.random.default_rng(seed)
    v = np.concatenate([statistic(rng.integers(0, n, size=(min(BATCH, resamples - start), n)))
                        for start in range(0, resamples, BATCH)])
    out: list[tuple[float, float] | None] = []
    for column in v.T:
        finite = column[np.isfinite(column)]
        if len(finite) < max(2, resamples // 2):
            out.append(None)
            continue
        lo, hi = np.percentile(finite, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
        out.append((float(lo), float(hi)))
    return out


def _per_seed(labels: np.ndarray, preds: np.ndarray, probs: np.ndarray | None, num_classes: int) -> np.ndarray:
    """``(..., seeds, 4 + 2K)``: AUC, ECE, mean sensitivity and specificity, then each class's, per seed.

    ``labels`` ``(..., n)``; ``preds`` ``(seeds, ..., n)``; ``probs`` ``(seeds, ..., n, K)`` or None (NaN AUC, ECE).
    """
    sens, spec = sensitivity_specificity_rows(labels, preds, num_classes)  # (seeds, ..., K)
    if probs is None:
        auc = ece = np.full(sens.shape[:-1], np.nan)
    else:
        auc, ece = roc_auc_rows(labels, probs), ece_rows(labels, probs)
    macro = [sens.mean(-1, keepdims=True), spec.mean(-1, keepdims=True)]  # NaN if a class is undefined
    return np.moveaxis(np.concatenate([auc[..., None], ece[..., None], *macro, sens, spec], -1), 0, -2)


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
    point = _per_seed(y, p, q, k)  # (seeds, 4 + 2K)
    if q is not None:  # the AUC's point estimate from scikit-learn itself
        point[:, 0] = [np.nan if a is None else a for a in (roc_auc_point(y, qs) for qs in q)]
    def resampled(idx: np.ndarray) -> np.ndarray:  # (B, n) -> (B, 4 + 2K), the mean over seeds
        return _per_seed(y[idx], p[:, idx], None if q is None else q[:, idx], k).mean(-2)

    cis = resampled_cis(n, resampled, seed, resamples) or [None] * (4 + 2 * k)
    summaries = [_summary(point[:, j], cis[j], n) for j in range(4 + 2 * k)]
    return {"roc_auc": summaries[0] if q is not None else None, "ece": summaries[1] if q is not None else None,
            # Mean sensitivity over classes is balanced accuracy.
            "mean_sensitivity": summaries[2], "mean_specificity": summaries[3],
            "sensitivity": summaries[4:4 + k], "specificity": summaries[4 + k:]}
