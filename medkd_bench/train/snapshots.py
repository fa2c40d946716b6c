"""Training snapshots: a cell interrupted mid-training resumes at its last snapshot, with the same result.

A teacher trained to its plateau can take hours (VGG19 at 64 px: about two
minutes an epoch on 1,080 images on one core; far longer on a real dataset's
thousands of images). Before snapshots, a run stopped by Ctrl-C, a session's
end or a power cut restarted such a cell from epoch 1. Now :func:`~medkd_bench.train.loop.fit`
writes everything the rest of training depends on at the end of an epoch,
once ten minutes of training have passed since the last one
(``RunOptions.snapshot_every_s``): the weights, the optimiser, the
learning-rate schedule and early-stopping state, the method's own modules (FitNets'
regressor), every random generator the loop draws from, the history and the
best epoch's weights. Resumed, training continues exactly as it would have:
the same batches, flips, dropout masks and learning rates, so the same weights
(a test compares a resumed cell with an uninterrupted one, bit for bit).

Like every artifact, a snapshot records its SHA-256 when written and is
checked before use; a damaged one, or one of another cell, is discarded with
a warning and the cell trains from epoch 1. A finished cell deletes its snapshot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medkd_bench.errors import one_line
from medkd_bench.files.digests import sidecar, verified, write_recorded
from medkd_bench.messages import warn

#: Bumped when the snapshot's layout changes: an older one is discarded, not misread.
FORMAT = 1


@dataclass
class Snapshots:
    """Where one cell's training snapshot lives, and how often it is written.

    ``key`` names what the snapshot must belong to (the cell's config hash):
    a snapshot whose key differs is not this cell's and is never resumed.
    ``every_s``: at least this many seconds between snapshots, so at most about
    this much training is done again after an interruption (0: after every
    epoch). VGG19's snapshot (weights, two Adam moments, the best epoch's
    weights: about 2.2 GB) takes seconds to write, about 1% of ten minutes;
    OFA-595's, 0.1 GB, is negligible.
    """

    path: Path
    key: str
    every_s: float
    _last: float = field(default_factory=time.monotonic, repr=False)
    _warned: bool = field(default=False, repr=False)

    def load(self) -> dict[str, Any] | None:
        """The snapshot if there is one, it matches its recorded SHA-256 and is this cell's; else None.

        First removes what a writer killed mid-write left (its temporary file, up to
        gigabytes): the run lock lets no other process train this cell meanwhile.
        """
        for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)
        if not self.path.is_file():
            return None
        then = "training the cell from epoch 1"
        if not verified(self.path, "training snapshot", then):
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("key") != self.key:
                raise ValueError(f"not a format-{FORMAT} snapshot of cell {self.key}")
        except Exception as exc:
            warn(f"training snapshot {self.path} cannot be used ({one_line(exc)}): {then}")
            return None
        return state

    def due(self, now: float | None = None) -> bool:
        """Whether ``every_s`` seconds have passed since the last snapshot (or the start)."""
        return (time.monotonic() if now is None else now) - self._last >= self.every_s

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` atomically with its SHA-256 recorded beside it.

        A failed write (a full disk) warns once and keeps training, trying again
        at the next interval: a snapshot is insurance, and losing it costs time, never a result.
        """
        try:
            write_recorded(self.path, lambda tmp: torch.save({"format": FORMAT, "key": self.key, **state}, tmp))
        except OSError as exc:
            if not self._warned:
                warn(f"training snapshot {self.path} could not be written ({one_line(exc)}): "
                     "training goes on without it")
            self._warned = True
        self._last = time.monotonic()

    def discard(self) -> None:
        """Delete the snapshot and its record (the cell finished, so nothing resumes from it)."""
        self.path.unlink(missing_ok=True)
        sidecar(self.path).unlink(missing_ok=True)


def rng_states() -> dict[str, Any]:
    """The global generators training draws from (dropout, drop-path): CPU, and every CUDA device in use."""
    states: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Put back what :func:`rng_states` saved."""
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a state dict: what survives the next optimiser step."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
