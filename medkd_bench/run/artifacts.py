"""A cell's files in the work dir (checkpoint, soft targets), each checked by its recorded SHA-256 before use.

One rule for every reader (``run``, its back-fills, ``explain``): a file is
trusted only if its bytes have the SHA-256 recorded when it was written
(:mod:`medkd_bench.files.digests`); content checks (shape, finite) come
after, as a second line. A checkpoint's digest is kept in its store row; the
soft targets' in a sidecar, since pool workers write them and never the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from medkd_bench.errors import one_line
from medkd_bench.files.digests import file_problem, verified, write_recorded
from medkd_bench.messages import warn
from medkd_bench.train.finite import require_finite


def checkpoint_problem(path: Path, artifacts: Mapping[str, str]) -> str | None:
    """Why a finished cell's checkpoint cannot be used (missing, damaged); None if it can.

    ``artifacts`` is the cell's stored artifacts, with the SHA-256 recorded when
    the checkpoint was written. A row stored before checkpoints were checksummed
    has none and is trusted as before: retraining every such cell would change
    results nobody has reason to doubt.
    """
    expected = artifacts.get("checkpoint_sha256")
    if expected is None:
        return None if path.is_file() else "missing"
    return file_problem(path, expected, record="the store's")


def read_soft_targets(path: Path, shape: tuple[int, ...]) -> torch.Tensor | None:
    """Cached soft targets if their SHA-256 is the one recorded and they are of ``shape`` and finite.

    None (after a warning naming the file) otherwise: the caller computes them
    again from the teacher's checkpoint.
    """
    then = "computing them again"
    if not verified(path, "soft targets", then, plural=True):
        return None
    try:
        logits = torch.load(path, weights_only=True)
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != shape:
            raise ValueError(f"expected a tensor of shape {shape}")
        return require_finite(logits, "cached soft targets")
    except Exception as exc:
        warn(f"soft targets {path} are damaged ({one_line(exc)}): {then}")
        return None


def write_soft_targets(path: Path, logits: torch.Tensor) -> None:
    """Write the soft targets atomically, their SHA-256 recorded beside them."""
    write_recorded(path, lambda tmp: torch.save(logits, tmp))
