"""Decoded splits cached on disk at the training resolution, read back memory-mapped.

Decoding and resizing 25,000 768 px JPEGs is the CPU bottleneck of a real
dataset, and every cell of a matrix (and every rerun) needs the same pixels.
So each split is decoded once, into uint8 ``.npy`` files under
``<work-dir>/cache/<dataset>/``, and later loads only map those files.

A cache entry is keyed by everything that decides its pixels: dataset name
and revision, the resolved root, split, image size, options, the dataset's
fingerprint (file names and sizes, and the split assignment), so a changed
copy of the data is decoded anew, and the decoder's version
(:data:`~medkd_bench.data.decode.DECODER_VERSION`), so pixels decoded by an
older rule (16-bit PNGs clipped to white before version 2) are never served. An entry is written to a temporary
folder and renamed into place, so an interrupted or failed decode never
leaves a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medkd_bench.data.decode import DECODER_VERSION
from medkd_bench.errors import MedkdError
from medkd_bench.specs import DatasetSpec, SplitData
from medkd_bench.system.files import atomic_tmp

#: Bump when the on-disk layout of an entry changes.
CACHE_FORMAT = 1


def cache_key(spec: DatasetSpec, split: str, size: int, root: Path | None, options: Mapping[str, Any],
              fingerprint: Mapping[str, Any] | None) -> str:
    """A short hash of everything that decides a split's decoded pixels."""
    config = {
        "format": CACHE_FORMAT, "decoder": DECODER_VERSION, "dataset": spec.name, "revision": spec.revision, "split": split, "size": size,
        "channels": spec.channels, "masks": list(spec.mask_names),
        "root": str(Path(root).resolve()) if root is not None else None,
        "options": dict(options), "fingerprint": dict(fingerprint or {}),
    }
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


class SplitCache:
    """Where one dataset's decoded splits live, and how they are written and read."""

    def __init__(self, cache_dir: Path, spec: DatasetSpec, size: int, root: Path | None,
                 options: Mapping[str, Any], fingerprint: Mapping[str, Any] | None):
        self.dir = Path(cache_dir) / spec.name
        self.spec = spec
        self.size = size
        self.keys = {split: cache_key(spec, split, size, root, options, fingerprint)
                     for split in ("train", "val", "test")}

    def path(self, split: str) -> Path:
        return self.dir / f"{split}-{self.size}px-{self.keys[split]}"

    def load(self, split: str) -> tuple[SplitData, list[tuple[str, str]]] | None:
        """The cached split and the bad files left out when it was decoded, or None on a miss.

        Arrays are memory-mapped copy-on-write: nothing is read until a batch
        touches it, and nothing written to them reaches the file.
        """
        entry = self.path(split)
        meta_path = entry / "meta.json"
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text())
        images = torch.from_numpy(np.load(entry / "images.npy", mmap_mode="c"))
        labels = torch.from_numpy(np.load(entry / "labels.npy"))
        masks = {m: torch.from_numpy(np.load(entry / f"mask-{m}.npy", mmap_mode="c")) for m in meta["masks"]}
        skipped = [(str(p), str(problem)) for p, problem in meta["skipped"]]
        return SplitData(images, labels, masks), skipped

    def save(self, split: str, data: SplitData, skipped: list[tuple[str, str]]) -> Path:
        """Write an entry into a temporary folder, then rename it into place."""
        entry = self.path(split)
        try:
            self._write(split, entry, data, skipped)
        except OSError as exc:  # a full disk or a read-only work dir is the user's to fix
            raise MedkdError(f"writing the data cache {entry} failed: {exc.strerror or exc}") from exc
        return entry

    def _write(self, split: str, entry: Path, data: SplitData, skipped: list[tuple[str, str]]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = atomic_tmp(entry)  # a folder here: renamed into place like every atomic write
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            np.save(tmp / "images.npy", data.images.numpy())
            np.save(tmp / "labels.npy", data.labels.numpy())
            for name, mask in data.masks.items():
                np.save(tmp / f"mask-{name}.npy", mask.numpy())
            meta = {"dataset": self.spec.name, "split": split, "size": self.size, "decoder": DECODER_VERSION,
                    "n": len(data),
                    "masks": list(data.masks), "skipped": [list(s) for s in skipped]}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            if entry.is_dir() and not (entry / "meta.json").is_file():
                shutil.rmtree(entry)  # not an entry this code wrote: replace it
            try:
                tmp.rename(entry)
            except OSError:  # another process finished the same entry first: keep theirs
                if not (entry / "meta.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
