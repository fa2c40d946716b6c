"""Shape checks: a model's logits must be ``(N, classes)`` of the dataset, in every mode it is run in.

A model whose head disagrees with the dataset is not caught by anything
downstream: logits with one class too many in evaluation give an argmax no
label can match, which scikit-learn scores as accuracy 0.0, specificity 100%
and an all-zero confusion matrix, and the teacher's ``(N, C+1)`` soft targets
would be cached for every student. So the logits are checked where they are
made (the training forward, evaluation and prediction, the soft targets) and
a mismatch fails the cell with one line. The check runs deep in the loop,
where the model's name is unknown: :func:`~medkd_bench.run.plugin_errors.outputs_named`
adds it where the cell is computed.
"""

from __future__ import annotations

from typing import Any

import torch

from medkd_bench.errors import MedkdError


class OutputShapeError(MedkdError):
    """A model's output does not fit the dataset; the message says where and both shapes.

    ``model`` is the model's name once a caller that knows it has added it to the message.
    """

    def __init__(self, message: str, model: str | None = None):
        super().__init__(message)
        self.model = model


def require_logits(logits: Any, rows: int, classes: int, what: str) -> torch.Tensor:
    """``logits`` unchanged if it is a tensor of shape ``(rows, classes)``; otherwise :class:`OutputShapeError`.

    ``what`` says which logits (``logits in training``, ``logits on the val
    split``, ``the teacher's soft targets``); ``rows`` is the batch's size.
    """
    expected = f"expected ({rows}, {classes}): {rows} image(s) by the dataset's {classes} classes"
    if not isinstance(logits, torch.Tensor):
        raise OutputShapeError(f"{what}: the model returned {type(logits).__name__}, {expected}")
    if tuple(logits.shape) != (rows, classes):
        raise OutputShapeError(f"{what} have shape {tuple(logits.shape)}, {expected}")
    return logits
