"""Opt-in local weights: ``--weights NAME=PATH`` for machines without a network.

Files are read safely: safetensors, or a torch checkpoint with
``weights_only=True`` (no pickled code runs). The classifier head usually
differs in shape (ImageNet's 1000 classes vs the dataset's), so tensors whose
shape does not match are left at their fresh initialisation and reported.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from medkd_bench.errors import MedkdError

_NESTED_KEYS = ("state_dict", "model", "model_state_dict", "net", "network")


@dataclass
class LoadReport:
    loaded: int
    skipped_shape: list[str]
    missing: list[str]


def file_digest(path: Path) -> str:
    """Content hash, so a changed weights file changes the cell's config hash.

    Memoised on (path, size, mtime): cell hashes are computed often and
    checkpoints can be gigabytes.
    """
    stat = Path(path).stat()
    return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise MedkdError(f"weights file {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MedkdError(f"weights file {path}: cannot be read safely ({type(exc).__name__}: {exc})") from exc
    for key in _NESTED_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MedkdError(f"weights file {path}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def apply_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> LoadReport:
    """Copy every tensor whose name and shape match; refuse files that match too little."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(k for k, v in state.items() if k in own and own[k].shape != v.shape)
    missing = sorted(k for k in own if k not in state)
    n_params = sum(v.numel() for v in own.values())
    n_loaded = sum(v.numel() for v in usable.values())
    if n_params and n_loaded < 0.5 * n_params:
        raise MedkdError(
            f"weights file {source}: only {n_loaded / n_params:.0%} of the model's values match "
            f"by name and shape; is it for this architecture?"
        )
    model.load_state_dict(usable, strict=False)
    return LoadReport(len(usable), skipped, missing)


def load_weights_file(model: nn.Module, path: Path) -> LoadReport:
    return apply_state_dict(model, read_state_dict(path), str(path))
