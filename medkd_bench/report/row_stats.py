"""Per-image statistics for leaderboard rows: CIs, seed spread and paired KD-gain tests."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np

from medkd_bench.evaluate import clinical, stats
from medkd_bench.registry import Registry
from medkd_bench.run.store import CellRecord


class RowStats:
    """Per-image statistics for leaderboard rows: CIs, seed spread, paired KD-gain tests.

    Works from each cell's stored ``test_predictions`` and ``test_labels``. Cells
    stored before labels were recorded get them back from the dataset plugin
    (same dataset revision, same options), accepted only if they reproduce the
    cell's stored confusion matrix exactly; otherwise the row shows no CI.

    One instance serves a whole render, and each figure is computed once per
    set of cells: a page's per-seed table and ``results.csv`` ask for the same
    single-cell CIs and paired tests, and their bootstraps were most of a
    render's time.
    """

    def __init__(self, registry: Registry, resamples: int = stats.RESAMPLES, seed: int = 0):
        self.registry = registry
        self.resamples = resamples
        self.seed = seed
        self._recovered: dict[str, list[int] | None] = {}
        self._computed: dict[Hashable, Any] = {}

    def _once(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()``, once per key; each caller gets its own copy (callers add fields to the dicts)."""
        if key not in self._computed:
            self._computed[key] = compute()
        return copy.deepcopy(self._computed[key])

    def labels(self, rec: CellRecord) -> np.ndarray | None:
        preds = rec.metrics.get("test_predictions")
        if not preds:
            return None
        labels = rec.metrics.get("test_labels")
        if labels is None:
            labels = self._recover(rec)
        if labels is None or len(labels) != len(preds):
            return None
        return np.asarray(labels, dtype=np.int64)

    def _recover(self, rec: CellRecord) -> list[int] | None:
        cfg = rec.config.get("dataset", {})
        spec = self.registry.datasets.get(cfg.get("name", ""))
        if spec is None or "options" not in cfg or cfg.get("revision") != spec.revision:
            return None
        key = json.dumps(cfg, sort_keys=True, default=str)
        if key not in self._recovered:
            try:  # best effort: a dataset that needs a missing local copy simply yields no CI
                options = {k: v for k, v in cfg["options"].items() if k in spec.options}
                split = spec.load("test", int(cfg["img_size"]), Path(cfg["root"]) if cfg.get("root") else None,
                                  {**spec.options, **options})
                self._recovered[key] = split.labels.tolist()
            except Exception:
                self._recovered[key] = None
        labels = self._recovered[key]
        confusion = rec.metrics.get("confusion")
        if labels is None or confusion is None or len(labels) != len(rec.metrics["test_predictions"]):
            return None
        k = len(confusion)
        counts = np.zeros((k, k), dtype=np.int64)
        np.add.at(counts, (np.asarray(labels), np.asarray(rec.metrics["test_predictions"])), 1)
        return labels if counts.tolist() == confusion else None

    def _per_image(self, records: list[CellRecord]) -> tuple[np.ndarray, np.ndarray] | None:
        """(labels, predictions as seeds x images) when every record has them for the same test split."""
        labels = [self.labels(r) for r in records]
        if not labels or any(y is None for y in labels):
            return None
        first = labels[0]
        assert first is not None
        if any(not np.array_equal(first, y) for y in labels[1:]):
            return None
        return first, np.asarray([r.metrics["test_predictions"] for r in records], dtype=np.int64)

    def scores(self, records: list[CellRecord], num_classes: int) -> dict[str, dict[str, Any]]:
        """Accuracy and macro-F1: mean over seeds, 95% CI over test images, sd across seeds."""
        return self._once(("scores", _hashes(records), num_classes), lambda: self._scores(records, num_classes))

    def _scores(self, records: list[CellRecord], num_classes: int) -> dict[str, dict[str, Any]]:
        per_image = self._per_image(records)
        if per_image is not None:
            return stats.classification_summary(*per_image, num_classes, self.seed, self.resamples)
        out = {}
        for metric in ("accuracy", "macro_f1"):
            v = np.asarray([r.metrics[metric] for r in records], dtype=float)
            out[metric] = {"mean": float(v.mean()), "ci": None, "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
                           "n_seeds": len(v)}
        return out

    def clinical(self, records: list[CellRecord], num_classes: int) -> dict[str, Any] | None:
        """ROC AUC, ECE and per-class sensitivity and specificity of a row (see :mod:`~medkd_bench.evaluate.clinical`).

        AUC and ECE need every seed's stored test probabilities; sensitivity and
        specificity only the predictions. None without per-image predictions.
        """
        return self._once(("clinical", _hashes(records), num_classes), lambda: self._clinical(records, num_classes))

    def _clinical(self, records: list[CellRecord], num_classes: int) -> dict[str, Any] | None:
        per_image = self._per_image(records)
        if per_image is None:
            return None
        probs = [r.metrics.get("test_probabilities") for r in records]
        shape = (len(per_image[0]), num_classes)
        stacked = (np.asarray(probs, dtype=np.float64)
                   if all(p is not None and np.shape(p) == shape for p in probs) else None)
        return clinical.clinical_summary(*per_image, stacked, num_classes, self.seed, self.resamples)

    def gain(self, kd: list[CellRecord], baseline: list[CellRecord] | None) -> dict[str, Any] | None:
        """KD minus label-only accuracy over the seeds both have, paired by seed and by image."""
        if not baseline:
            return None
        base_by_seed = {r.seed: r for r in baseline}
        return self._paired([(r, base_by_seed[r.seed]) for r in kd if r.seed in base_by_seed])

    def margin(self, teacher: list[CellRecord], baseline: list[CellRecord] | None) -> dict[str, Any] | None:
        """Teacher minus label-only student accuracy, computed exactly like :meth:`gain` (paired by image).

        Each label-only seed is paired with the teacher cell a student of that
        seed learns from (:func:`teacher_for`): the teacher of the same seed, or,
        when a teacher was trained once per dataset (fewer teacher seeds than
        student seeds), its lowest seed, so one teacher cell serves every
        label-only seed. ``seeds`` are then the label-only seeds and
        ``teacher_seeds`` the teacher seed each was paired with.
        """
        if not baseline or not teacher:
            return None
        pairs = [(t, b) for b in baseline if (t := teacher_for(b.seed, teacher)) is not None]
        out = self._paired(pairs)
        if out is not None:
            out["seeds"] = [b.seed for _, b in pairs]
            out["teacher_seeds"] = [t.seed for t, _ in pairs]
        return out

    def _paired(self, pairs: list[tuple[CellRecord, CellRecord]]) -> dict[str, Any] | None:
        """First minus second accuracy over the pairs: CI and McNemar per pair (:func:`stats.paired_difference`)."""
        if not pairs:
            return None
        key = ("paired", _hashes([a for a, _ in pairs]), _hashes([b for _, b in pairs]))
        return self._once(key, lambda: self._compute_paired(pairs))

    def _compute_paired(self, pairs: list[tuple[CellRecord, CellRecord]]) -> dict[str, Any]:
        a, b = self._per_image([p[0] for p in pairs]), self._per_image([p[1] for p in pairs])
        if a is not None and b is not None and np.array_equal(a[0], b[0]):
            out = stats.paired_difference(a[0], a[1], b[1], self.seed, self.resamples)
        else:
            d = np.asarray([x.metrics["accuracy"] - y.metrics["accuracy"] for x, y in pairs])
            out = {"mean": float(d.mean()), "ci": None, "sd": float(d.std(ddof=1)) if len(d) > 1 else None,
                   "n_seeds": len(d), "significant": False, "mcnemar": None}
        out["seeds"] = [p[0].seed for p in pairs]
        return out


def _hashes(records: list[CellRecord]) -> tuple[str, ...]:
    """What identifies a set of cells' figures: their config hashes, in order (seeds pair by position)."""
    return tuple(r.hash for r in records)


def teacher_for(seed: int, teacher: list[CellRecord]) -> CellRecord | None:
    """The teacher cell a student of ``seed`` is compared with: the same seed's, else the lowest seed's.

    With ``--teacher-seeds N`` every student seed has its own teacher; by
    default a teacher is trained once per dataset (the run's base seed, the
    lowest on the page) and every student seed distils from it.
    """
    same = [t for t in teacher if t.seed == seed]
    return same[0] if same else min(teacher, key=lambda t: t.seed, default=None)


def gain_text(gain: dict[str, Any] | None) -> str:
    if gain is None:
        return "-"
    text = f"{100 * gain['mean']:+.1f}"
    if gain.get("ci"):
        lo, hi = gain["ci"]
        text += f" [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    return text + ("†" if gain.get("significant") else "")


def mcnemar_text(gain: dict[str, Any] | None) -> str:
    """Exact McNemar p, one per seed (``/``-separated) when there are several."""
    if not gain or not gain.get("mcnemar"):
        return "-"
    return " / ".join(stats.format_p(m["p_exact"]) for m in gain["mcnemar"])
