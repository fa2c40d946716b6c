"""Inference over a split: logits, accuracy, predictions, and the teacher's soft targets for KD."""

from __future__ import annotations

import torch
from torch import nn

from medkd_bench.data.prepare import PreparedData
from medkd_bench.runtime.device import Runtime
from medkd_bench.train.finite import require_finite
from medkd_bench.train.shapes import require_logits


@torch.inference_mode()
def predict_logits(
    model: nn.Module, data: PreparedData, images: torch.Tensor, runtime: Runtime, batch_size: int = 128,
    what: str = "logits",
) -> torch.Tensor:
    """Logits (float32, on CPU) for uint8 images, in eval mode; ``(N, classes)`` and finite, or an error naming ``what``.

    Each batch's logits are checked against the dataset's classes: a model with
    another head in eval mode than in training would otherwise be scored (and
    cached as soft targets) with a column no label can match.
    """
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = runtime.to_model(data.normalise(images[start : start + batch_size], runtime.device))
        with runtime.autocast():
            logits = require_logits(model(x), len(x), data.num_classes, what)
            out.append(logits.float().cpu())
    return require_finite(torch.cat(out), what)


def evaluate_accuracy(model: nn.Module, data: PreparedData, split: str, runtime: Runtime) -> float:
    s = data.splits[split]
    logits = predict_logits(model, data, s.images, runtime, what=f"logits on the {split} split")
    return float((logits.argmax(1) == s.labels).float().mean())


def teacher_soft_targets(teacher: nn.Module, data: PreparedData, runtime: Runtime) -> torch.Tensor:
    """Teacher logits for every training image, unflipped and flipped: ``(2, N, C)``.

    The teacher is frozen and the only augmentation is a flip, so these two
    passes replace a teacher forward pass in every KD step of every epoch.
    """
    images = data.splits["train"].images
    what = "the teacher's soft targets"
    return torch.stack([predict_logits(teacher, data, images, runtime, what=what),
                        predict_logits(teacher, data, images.flip(-1), runtime, what=what)])


#: Significant digits of stored class probabilities: float32 holds about 7, so nothing real is lost.
PROBABILITY_DIGITS = 7


def split_outputs(model: nn.Module, data: PreparedData, split: str, runtime: Runtime) -> tuple[list[int], list[list[float]]]:
    """Predicted classes and class probabilities (softmax, 7 significant digits) on ``split``.

    The probabilities are what ROC AUC and calibration are computed from;
    predictions come from the same logits, so the two always agree.
    """
    logits = predict_logits(model, data, data.splits[split].images, runtime, what=f"logits on the {split} split")
    probs = torch.softmax(logits.double(), dim=1)
    rounded = [[float(f"{v:.{PROBABILITY_DIGITS}g}") for v in row] for row in probs.tolist()]
    return logits.argmax(1).tolist(), rounded
