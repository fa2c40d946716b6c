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

An entry is trusted only as far as it can be checked, since ``np.load``
takes any bytes of the right length (one flipped byte of ``labels.npy``
stored a test label 255). Its ``meta.json`` records the SHA-256 of every
array file as written, the full key it was written for (the folder name is
only an address: a moved or copied entry is not used for another key), and
a SHA-256 of its own content (:mod:`medkd_bench.files.digests`). On load
each is compared, then the arrays' shapes and the labels' range; an entry
failing any check is removed and decoded again, with a warning naming the file.
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
from medkd_bench.errors import MedkdError, one_line
from medkd_bench.files.atomic import atomic_tmp
from medkd_bench.files.digests import DAMAGED, bytes_sha256, file_problem, json_digest
from medkd_bench.messages import warn
from medkd_bench.specs import DatasetSpec, SplitData

#: Bump when the on-disk layout of an entry changes (2: meta.json records SHA-256s and its key).
CACHE_FORMAT = 2


def key_config(spec: DatasetSpec, split: str, size: int, root: Path | None, options: Mapping[str, Any],
               fingerprint: Mapping[str, Any] | None) -> dict[str, Any]:
    """Everything that decides a split's decoded pixels, as JSON values (recorded in the entry's meta.json)."""
    config = {
        "format": CACHE_FORMAT, "decoder": DECODER_VERSION, "dataset": spec.name, "revision": spec.revision, "split": split, "size": size,
        "channels": spec.channels, "masks": list(spec.mask_names),
        "root": str(Path(root).resolve()) if root is not None else None,
        "options": dict(options), "fingerprint": dict(fingerprint or {}),
    }
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def cache_key(config: Mapping[str, Any]) -> str:
    """A short hash of :func:`key_config`: the entry's folder name."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


class DamagedEntry(Exception):
    """A cache entry failed a check; the message names the file and what is wrong with it."""


class SplitCache:
    """Where one dataset's decoded splits live, and how they are written and read."""

    def __init__(self, cache_dir: Path, spec: DatasetSpec, size: int, root: Path | None,
                 options: Mapping[str, Any], fingerprint: Mapping[str, Any] | None):
        self.dir = Path(cache_dir) / spec.name
        self.spec = spec
        self.size = size
        self.configs = {split: key_config(spec, split, size, root, options, fingerprint)
                        for split in ("train", "val", "test")}
        self.keys = {split: cache_key(config) for split, config in self.configs.items()}

    def path(self, split: str) -> Path:
        return self.dir / f"{split}-{self.size}px-{self.keys[split]}"

    def load(self, split: str) -> tuple[SplitData, list[tuple[str, str]]] | None:
        """The cached split and the bad files left out when it was decoded, or None on a miss.

        An entry failing a check (see the module docstring) is a miss too: it is
        removed, with a warning naming the file, and the caller decodes the split
        again. Arrays are memory-mapped copy-on-write: nothing written to them
        reaches the file.
        """
        entry = self.path(split)
        if not (entry / "meta.json").is_file():
            return None
        try:
            return self._checked(split, entry)
        except DamagedEntry as exc:
            warn(f"data cache {exc}: decoding it again")
        _discard(entry)
        return None

    def _checked(self, split: str, entry: Path) -> tuple[SplitData, list[tuple[str, str]]]:
        """The entry's split, once every check passes; :class:`DamagedEntry` naming the first that fails."""
        meta_path = entry / "meta.json"
        try:
            meta = json.loads(meta_path.read_text())
            sealed = isinstance(meta, dict) and meta.get("meta_sha256") == json_digest(
                {k: v for k, v in meta.items() if k != "meta_sha256"})
        except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise DamagedEntry(f"{meta_path} is unreadable ({one_line(exc)})") from exc
        if not sealed:
            raise DamagedEntry(f"{meta_path} is {DAMAGED.format(record='the one it records of itself')}")
        if meta.get("key") != self.configs[split]:
            raise DamagedEntry(f"{entry} was written for another split, size or copy of the data than its name says")
        files = {"images": "images.npy", "labels": "labels.npy", **{m: f"mask-{m}.npy" for m in meta["masks"]}}
        for name in files.values():
            problem = file_problem(entry / name, meta["sha256"].get(name))
            if problem is not None:
                raise DamagedEntry(f"{entry / name} is {problem}")
        images = torch.from_numpy(np.load(entry / files["images"], mmap_mode="c"))
        labels = torch.from_numpy(np.load(entry / files["labels"]))
        masks = {m: torch.from_numpy(np.load(entry / files[m], mmap_mode="c")) for m in meta["masks"]}
        self._check_content(entry, meta["n"], images, labels, masks)
        skipped = [(str(p), str(problem)) for p, problem in meta["skipped"]]
        return SplitData(images, labels, masks), skipped

    def _check_content(self, entry: Path, n: int, images: torch.Tensor, labels: torch.Tensor,
                       masks: dict[str, torch.Tensor]) -> None:
        """The second line behind the digests: as many images, labels and masks as recorded, labels in range."""
        if len(images) != n or len(labels) != n or any(len(m) != n for m in masks.values()):
            raise DamagedEntry(f"{entry} does not hold {n} images, labels and masks as recorded")
        if n and (int(labels.min()) < 0 or int(labels.max()) >= self.spec.num_classes):
            raise DamagedEntry(f"{entry / 'labels.npy'} holds labels outside 0..{self.spec.num_classes - 1}")

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
            arrays = {"images.npy": data.images, "labels.npy": data.labels,
                      **{f"mask-{name}.npy": mask for name, mask in data.masks.items()}}
            for name, array in arrays.items():
                np.save(tmp / name, array.numpy())
            meta = {"dataset": self.spec.name, "split": split, "size": self.size, "decoder": DECODER_VERSION,
                    "n": len(data),
                    "masks": list(data.masks), "skipped": [list(s) for s in skipped], "key": self.configs[split],
                    "sha256": {name: bytes_sha256(tmp / name) for name in arrays}}
            meta["meta_sha256"] = json_digest(meta)
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


def _discard(entry: Path) -> None:
    """Remove a damaged entry: renamed aside first, so no reader ever sees it half removed."""
    aside = atomic_tmp(entry).with_suffix(".damaged")
    try:
        entry.rename(aside)
    except OSError:  # another process removed or replaced it first
        return
    shutil.rmtree(aside, ignore_errors=True)
