"""Opt-in local weights: ``--weights NAME=PATH`` for machines without a network.

Files are read safely: safetensors, or a torch checkpoint with
``weights_only=True`` (no pickled code runs). The classifier head usually
differs in shape (ImageNet's 1000 classes vs the dataset's), so tensors whose
shape does not match are left at their fresh initialisation and reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from medkd_bench.errors import MedkdError
from medkd_bench.files.digests import sha256_file

_NESTED_KEYS = ("state_dict", "model", "model_state_dict", "net", "network")


@dataclass
class LoadReport:
    loaded: int
    skipped_shape: list[str]
    missing: list[str]


def file_digest(path: Path) -> str:
    """Content hash, so a changed weights file changes the cell's config hash (SHA-256, 16 hex digits)."""
    return sha256_file(path)[:16]


def weights_format(path: Path) -> str:
    """``safetensors`` or ``torch`` (a ``torch.save`` zip archive), told by the file's first bytes, not its name."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:4] == b"PK\x03\x04":
        return "torch"
    size = Path(path).stat().st_size
    if len(head) >= 10 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    raise MedkdError(f"weights file {path}: neither a safetensors file nor a torch.save checkpoint "
                     f"(it starts with {head[:8]!r})")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a local weights file, never running code from it (torch's ``weights_only``)."""
    import pickle

    path = Path(path)
    if not path.is_file():
        raise MedkdError(f"weights file {path}: no such file")
    kind = weights_format(path)
    try:
        if kind == "safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            with open(path, "rb") as fh:  # a file object: torch.load would go by a .safetensors name, too
                state = torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message advises weights_only=False: never for a file we did not write
        raise MedkdError(f"weights file {path}: holds Python objects besides tensors; medkd-bench loads weights "
                         "only and never runs code from a file (save a state_dict, or convert it to safetensors)"
                         ) from None
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise MedkdError(f"weights file {path}: cannot be read as {kind} ({type(exc).__name__}: {first})") from exc
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
