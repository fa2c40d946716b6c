"""Quality on the test split: accuracy, macro-F1, per-class F1 and the confusion matrix, from scikit-learn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def classification_metrics(labels: Sequence[int], preds: Sequence[int], classes: Sequence[str]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    ids = list(range(len(classes)))
    per_class = f1_score(labels, preds, labels=ids, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1_score(labels, preds, labels=ids, average="macro", zero_division=0)),
        "per_class_f1": {c: float(f) for c, f in zip(classes, per_class, strict=True)},
        "confusion": confusion_matrix(labels, preds, labels=ids).tolist(),
    }
