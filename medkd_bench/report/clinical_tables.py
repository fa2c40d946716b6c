"""The leaderboard's clinical tables: ROC AUC and calibration, sensitivity and specificity per class, confusion matrices.

Rows follow the per-class F1 table (teachers, then each student's rows). The
numbers come from :meth:`~medkd_bench.report.row_stats.RowStats.clinical`:
means over seeds with bootstrap 95% CIs over the test images; a row stored
before class probabilities were recorded shows ``-`` for AUC and ECE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medkd_bench.evaluate import stats
from medkd_bench.report.format import method_label
from medkd_bench.run.store import CellRecord

Key = tuple[str, str, str]  # (method, teacher, student)


def _name(key: Key) -> str:
    return key[1] if key[0] == "teacher" else key[2]


def clinical_rows(keys: Sequence[Key], groups: Mapping[Key, list[CellRecord]],
                  clinical: Mapping[Key, dict[str, Any] | None], num_classes: int) -> list[dict[str, Any]]:
    """One row per leaderboard row: AUC, ECE, and per-class sensitivity and specificity as text."""
    rows = []
    for key in keys:
        c = clinical.get(key)
        if c is None:
            continue
        rows.append({
            "name": _name(key), "method": method_label(groups[key][0]),
            "auc": stats.format_ci(c["roc_auc"], scale=1.0, digits=3),
            "ece": stats.format_ci(c["ece"], scale=1.0, digits=3),
            "sensitivity": [stats.format_ci(s) for s in c["sensitivity"][:num_classes]],
            "specificity": [stats.format_ci(s) for s in c["specificity"][:num_classes]],
        })
    return rows


def confusion_tables(keys: Sequence[Key], groups: Mapping[Key, list[CellRecord]],
                     classes: Sequence[str]) -> list[dict[str, Any]]:
    """Each row's test-split confusion matrix (rows: true class; columns: predicted), summed over seeds."""
    out = []
    for key in keys:
        matrices = [r.metrics.get("confusion") for r in groups[key]]
        if not matrices or any(m is None or np.shape(m) != (len(classes), len(classes)) for m in matrices):
            continue
        total = np.sum(np.asarray(matrices, dtype=np.int64), axis=0)
        seeds = len(matrices)
        out.append({"name": _name(key), "method": method_label(groups[key][0]),
                    "seeds": f"{seeds} seeds summed" if seeds > 1 else "one seed",
                    "rows": [{"true": cls, "counts": [str(v) for v in row]}
                             for cls, row in zip(classes, total.tolist(), strict=True)]})
    return out
