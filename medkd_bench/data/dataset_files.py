"""Dataset spec files: what ``datasets add`` writes and the ``image-folder`` plugin registers.

The same pattern as the student spec files of ``student search``
(:mod:`medkd_bench.nas.spec_files`): a small JSON file per dataset, found in
``$MEDKD_DATASETS`` (``os.pathsep``-separated folders or files), else in
``.medkd/datasets/``; an empty ``MEDKD_DATASETS`` registers none. A bad file
fails with one line naming it, and two files naming one dataset name both.

A spec file records what must not change silently between runs: the layout,
the absolute image root (or manifest), the mask root, the classes in label
order, the channels, the default image size, and the seeded split's
defaults. Its content digest is part of the dataset's fingerprint, so every
cell's config hash changes with it.

It also records the other choices made when the dataset was added, so that
runs honour them without being told again: ``skip_bad`` (``datasets add
--skip-bad``: every command leaves the bad files out, with a warning naming
them). That key is outside the digest (as ``created`` is): it decides whether
a bad file stops a command, not which images a finished cell trained on, and
leaving it out keeps the digests, and so the results, of files written before it existed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medkd_bench.data.folder_dataset import (
    LAYOUTS,
    SPLITS,
    FolderDataset,
    class_folders,
    detect_channels,
    find_split_dirs,
    is_split_layout,
    read_manifest,
)
from medkd_bench.data.imagefiles import require_folder
from medkd_bench.errors import MedkdError
from medkd_bench.files.atomic import atomic_write_text
from medkd_bench.spec_discovery import read_json_spec, spec_files, unique_specs
from medkd_bench.specs import check_name

SPEC_FORMAT = "medkd-bench/image-folder-dataset"
SPEC_VERSION = 1
#: Environment variable listing dataset spec files or folders of them (``os.pathsep``-separated).
DATASETS_ENV = "MEDKD_DATASETS"
#: Where spec files are written and, when the variable is unset, read: ``<default work dir>/datasets``.
DEFAULT_DATASETS_DIR = Path(".medkd") / "datasets"
#: The keys of a spec file that decide what is read (``created`` is left out of the digest).
CONTENT_KEYS = ("format", "version", "name", "layout", "source", "mask_root", "has_masks", "classes",
                "channels", "img_size", "split")


def content_digest(doc: dict[str, Any]) -> str:
    content = {k: doc.get(k) for k in CONTENT_KEYS}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def new_dataset(name: str, out: Path, folder: Path | None = None, manifest: Path | None = None,
                mask_root: Path | None = None, split: dict[str, Any] | None = None, channels: int | None = None,
                img_size: int = 64, skip_bad: bool = False) -> tuple[FolderDataset, dict[str, Any]]:
    """The dataset and spec document for a folder or a manifest, after listing every file of every split.

    Nothing is decoded except a few images to tell grey from RGB (unless
    ``channels`` is given); a folder, manifest or file problem raises (or,
    under a skipping :func:`~medkd_bench.data.imagefiles.bad_file_policy`, is recorded).
    """
    if (folder is None) == (manifest is None):
        raise MedkdError("new_dataset: give a folder or a manifest, not both")
    if manifest is not None:
        if mask_root is not None:
            raise MedkdError(f"manifest {manifest}: masks of a manifest come from its mask column, not a mask root")
        source = manifest.resolve()
        if not source.is_file():
            raise MedkdError(f"manifest {manifest}: no such file")
        rows = read_manifest(source)
        layout, classes = "manifest", sorted({r["label"] for r in rows})
        has_masks = any(r["mask"] is not None for r in rows)
        official = all(r["split"] for r in rows)
    else:
        source = require_folder(Path(folder).resolve(), "image")
        layout = "split-folders" if is_split_layout(source) else "class-folders"
        official = layout == "split-folders"
        classes = class_folders(find_split_dirs(source)["train"] if official else source)
        has_masks = mask_root is not None
    doc = {
        "format": SPEC_FORMAT, "version": SPEC_VERSION, "name": name, "layout": layout, "source": str(source),
        "mask_root": str(mask_root.resolve()) if mask_root is not None else None, "has_masks": has_masks,
        "classes": list(classes), "channels": channels or 1, "img_size": img_size,
        "split": {} if official else dict(split or {"seed": 0, "val_fraction": 0.1, "test_fraction": 0.1}),
        "skip_bad": bool(skip_bad),
    }
    dataset = from_document(doc, out)
    entries = dataset.entries(dataset.split)  # every folder, class and split, listed
    for s in SPLITS:
        dataset.samples(s, dataset.split)  # every file's type, mask and existence, checked
    if channels is None:
        doc["channels"] = detect_channels([e.image for s in SPLITS for e in entries[s]])
        dataset = from_document(doc, out)
    doc["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return dataset, doc


def write_dataset_spec(doc: dict[str, Any], path: Path) -> Path:
    return atomic_write_text(path, json.dumps(doc, indent=2) + "\n")


def _require(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise MedkdError(f"dataset spec file {path}: missing or malformed {key!r}")
    return value


def from_document(doc: dict[str, Any], path: Path) -> FolderDataset:
    """A checked :class:`FolderDataset` from a spec document; a problem names the file and key."""
    if not isinstance(doc, dict) or doc.get("format") != SPEC_FORMAT:
        raise MedkdError(f"dataset spec file {path}: not a medkd-bench dataset (format must be {SPEC_FORMAT!r})")
    if doc.get("version") != SPEC_VERSION:
        raise MedkdError(f"dataset spec file {path}: version {doc.get('version')!r} not supported "
                         f"(expected {SPEC_VERSION})")
    name = _require(doc, "name", str, path)
    check_name("dataset", name, f"dataset spec file {path}")
    layout = _require(doc, "layout", str, path)
    if layout not in LAYOUTS:
        raise MedkdError(f"dataset spec file {path}: layout {layout!r} must be one of {', '.join(LAYOUTS)}")
    classes = _require(doc, "classes", list, path)
    if len(classes) < 2 or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
        raise MedkdError(f"dataset spec file {path}: 'classes' must be two or more distinct names")
    channels = _require(doc, "channels", int, path)
    img_size = _require(doc, "img_size", int, path)
    if channels not in (1, 3) or img_size < 8:
        raise MedkdError(f"dataset spec file {path}: 'channels' must be 1 or 3 and 'img_size' at least 8")
    split = _require(doc, "split", dict, path)
    if (layout == "split-folders") != (not split) and layout != "manifest":
        raise MedkdError(f"dataset spec file {path}: 'split' must be empty exactly for the split-folders layout")
    if split and set(split) != {"seed", "val_fraction", "test_fraction"}:
        raise MedkdError(f"dataset spec file {path}: 'split' needs seed, val_fraction and test_fraction")
    mask_root = doc.get("mask_root")
    if mask_root is not None and not isinstance(mask_root, str):
        raise MedkdError(f"dataset spec file {path}: malformed 'mask_root'")
    skip_bad = doc.get("skip_bad", False)  # absent from files written before it was recorded: strict
    if not isinstance(skip_bad, bool):
        raise MedkdError(f"dataset spec file {path}: 'skip_bad' must be true or false")
    return FolderDataset(
        path=Path(path), name=name, layout=layout, source=Path(_require(doc, "source", str, path)),
        classes=tuple(classes), channels=channels, img_size=img_size,
        mask_root=Path(mask_root) if mask_root else None, has_masks=_require(doc, "has_masks", bool, path),
        split=dict(split), digest=content_digest(doc), skip_bad=skip_bad,
    )


def read_dataset_spec(path: Path) -> FolderDataset:
    """Parse and check a spec file; any problem is one MedkdError naming the file."""
    path = Path(path)
    return from_document(read_json_spec(path, "dataset spec file"), path)


def dataset_spec_files() -> list[Path]:
    """Spec files to register: ``$MEDKD_DATASETS`` (files or folders), else ``.medkd/datasets/*.json``.

    An empty ``MEDKD_DATASETS`` registers none (tests use that to stay independent of the checkout).
    """
    return spec_files(DATASETS_ENV, DEFAULT_DATASETS_DIR)


def iter_folder_datasets() -> Iterator[FolderDataset]:
    """Every discovered spec file, read; two files with one name is an error naming both."""
    yield from unique_specs(dataset_spec_files(), read_dataset_spec, lambda spec: spec.name, "dataset spec file")
