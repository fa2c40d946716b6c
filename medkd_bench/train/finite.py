"""Finiteness checks: a cell is done only if everything it was computed from is finite.

A NaN loss, weight, logit or soft target must fail its cell with a one-line
reason saying where it first appeared, never be stored as a result (a model
with NaN weights predicts one class and still gets an accuracy) nor cached
for the next cell (NaN soft targets poison every student distilled from them).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medkd_bench.errors import MedkdError


class NonFiniteError(MedkdError):
    """A quantity a cell depends on is NaN or infinite; the message says which and where."""


def require_finite(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """``tensor`` unchanged if every value is finite; otherwise :class:`NonFiniteError` naming ``what``."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise NonFiniteError(f"{what} are not finite ({bad} of {tensor.numel()} values NaN or infinite)")
    return tensor


def require_finite_array(array: np.ndarray, what: str) -> np.ndarray:
    """The numpy twin of :func:`require_finite` (saliency maps are arrays)."""
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise NonFiniteError(f"{what} are not finite ({bad} of {array.size} values NaN or infinite)")
    return array


def require_finite_weights(model: nn.Module, what: str) -> None:
    """Every parameter and buffer of ``model`` finite, or :class:`NonFiniteError` naming the first bad tensor."""
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise NonFiniteError(f"{what}: {len(bad)} weight tensor(s) not finite, first {bad[0]!r}")
