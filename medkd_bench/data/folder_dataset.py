"""The user's own images as a dataset: three layouts, read with the host's file readers.

A :class:`FolderDataset` is what a dataset spec file describes (see
:mod:`medkd_bench.data.dataset_files`); the built-in ``image-folder`` plugin
registers each one. Layouts:

``split-folders``
    ``ROOT/{train,val,test}/<class>/*``: the official split is kept (the split
    folders' names are matched case-insensitively, so ``Train/Val/Test`` works).
``class-folders``
    ``ROOT/<class>/*``: each class is split by the host's seeded stratified
    split (:func:`medkd_bench.data.splits.split_class`, as LC25000).
``manifest``
    A CSV with a header ``path,label[,split][,mask]``; relative paths are
    relative to the CSV's folder. Without a ``split`` column the rows are split
    like ``class-folders``, per label.

Classes are the sorted class-folder names (or sorted manifest labels). Masks
of the folder layouts lie in a mask root that mirrors the image root: the mask
of ``ROOT/<rel>/<file>`` is ``MASKROOT/<rel>/<file>``, same relative folder and
same file name (extension included), as COVID-QU-Ex pairs its masks. Files
at the top of ROOT (a README, a licence) are not read.

Listing is split from reading so that ``datasets add`` can check a whole tree
without decoding it: folder and manifest problems always raise, problems with
single files go through :func:`~medkd_bench.data.imagefiles.bad_file`, so
``--skip-bad`` leaves them out as for the built-in datasets.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medkd_bench.data.imagefiles import (
    ImageSample,
    bad_file,
    folder_digest,
    fs_bytes,
    is_utf8_name,
    keep_images,
    list_files,
    read_samples,
    require_folder,
    shown,
)
from medkd_bench.data.splits import split_class
from medkd_bench.errors import MedkdError
from medkd_bench.specs import SplitData

LAYOUTS = ("split-folders", "class-folders", "manifest")
SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ("path", "label", "split", "mask")
#: The one mask name of a folder dataset (its localisation mask).
MASK = "mask"
#: Images whose mode is read as grey, whatever their bit depth.
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


@dataclass(frozen=True)
class Entry:
    """One listed image: class index, its mask (if any), and where it was listed (for messages)."""

    image: Path
    label: int
    mask: Path | None = None
    row: str = ""


@dataclass(frozen=True)
class FolderDataset:
    """One dataset spec file, read: enough to list, split, read and fingerprint the images."""

    #: The spec file (named in every error about it).
    path: Path
    name: str
    layout: str
    #: The image root (folder layouts) or the manifest CSV.
    source: Path
    classes: tuple[str, ...]
    channels: int
    img_size: int = 64
    mask_root: Path | None = None
    has_masks: bool = False
    #: The seeded split's defaults (seed, val_fraction, test_fraction); empty for official splits.
    split: Mapping[str, Any] = field(default_factory=dict)
    #: SHA-256 (16 hex digits) of the spec file's content: part of the fingerprint.
    digest: str = ""
    #: Added with ``--skip-bad``: every command leaves bad files out (``DatasetSpec.skip_bad``).
    skip_bad: bool = False

    def where(self) -> str:
        return f"dataset {self.name!r} (spec file {self.path})"

    def entries(self, options: Mapping[str, Any]) -> dict[str, list[Entry]]:
        """Every listed image by split, before any file is opened; folder and manifest problems raise."""
        if self.layout == "manifest":
            return self._manifest_entries(options)
        by_split: dict[str, list[Entry]] = {s: [] for s in SPLITS}
        for split, label, image_dir, mask_dir in self._groups():
            files = _class_files(self, image_dir)
            assigned = ({split: files} if split else
                        split_class(self.name, self.classes[label], files, options))
            for s, paths in assigned.items():
                by_split[s] += [Entry(p, label, mask_dir / p.name if mask_dir else None) for p in paths]
        return by_split

    def _groups(self) -> list[tuple[str | None, int, Path, Path | None]]:
        """``(split or None, label, image folder, mirrored mask folder)`` per class folder."""
        root = require_folder(self.source, f"{self.name} image")
        if self.mask_root is not None:
            require_folder(self.mask_root, f"{self.name} mask")
        split_dirs = find_split_dirs(root) if self.layout == "split-folders" else {None: root}
        out = []
        for split, folder in split_dirs.items():
            found = class_folders(folder)
            if tuple(found) != self.classes:
                raise MedkdError(f"{folder}: class folders {list(found)} differ from the {list(self.classes)} "
                                 f"recorded in {self.path}; add the dataset again")
            for label, cls in enumerate(self.classes):
                rel = folder.relative_to(root) / cls
                out.append((split, label, folder / cls, self.mask_root / rel if self.mask_root else None))
        return out

    def _manifest_entries(self, options: Mapping[str, Any]) -> dict[str, list[Entry]]:
        rows = read_manifest(self.source)
        labels = sorted({r["label"] for r in rows})
        if tuple(labels) != self.classes:
            raise MedkdError(f"{self.source}: labels {labels} differ from the {list(self.classes)} recorded in "
                             f"{self.path}; add the dataset again")
        by_split: dict[str, list[Entry]] = {s: [] for s in SPLITS}
        entry_of = {}
        for r in rows:
            entry = Entry(r["path"], labels.index(r["label"]), r.get("mask"), r["row"])
            if r.get("split"):
                by_split[r["split"]].append(entry)
            else:
                entry_of[r["path"]] = entry
        if entry_of:  # no split column: a seeded split per label, as for class folders
            for label, cls in enumerate(labels):
                paths = [p for p, e in entry_of.items() if e.label == label]
                for s, chosen in split_class(self.name, cls, paths, options).items():
                    by_split[s] += [entry_of[p] for p in chosen]
        for split, entries in by_split.items():
            if not entries:
                raise MedkdError(f"{self.source}: no row in split {split!r}; each of train, val and test needs one")
        return by_split

    def samples(self, split: str, options: Mapping[str, Any]) -> list[ImageSample]:
        """The split's readable-looking images with their masks; single-file problems go to ``bad_file``."""
        out = []
        for entry in self.entries(options)[split]:
            if self.layout == "manifest" and not entry.image.is_file():
                bad_file(entry.image, f"missing, listed in {entry.row}")
                continue
            if not keep_images([entry.image]):
                continue
            masks = {}
            if self.has_masks:
                if entry.mask is None or not entry.mask.is_file():
                    where = entry.row or (entry.mask.parent if entry.mask else "the manifest")
                    bad_file(entry.image, f"image without its mask ({where})")
                    continue
                masks[MASK] = entry.mask
            out.append(ImageSample(entry.image, entry.label, masks))
        if split == "train" and self.mask_root is not None:  # each orphan reported once, with train
            for _, _, image_dir, mask_dir in self._groups():
                report_orphan_masks(image_dir, mask_dir)
        return out

    def files(self, split: str, root: Path | None, options: Mapping[str, Any]) -> list[Path]:
        """The ``DatasetSpec.files`` of this dataset: each image :meth:`load` reads, in its order."""
        return [sample.image for sample in self.samples(split, options)]

    def load(self, split: str, img_size: int, root: Path | None, options: Mapping[str, Any]) -> SplitData:
        """The ``DatasetSpec.load`` of this dataset: ``root`` is unused (the spec file names the data)."""
        return read_samples(self.samples(split, options), img_size, self.channels,
                            mask_names=(MASK,) if self.has_masks else (), description=f"decoding {self.name} {split}")

    def fingerprint(self, root: Path | None, options: Mapping[str, Any]) -> dict[str, Any]:
        """Spec content, every file's path and size, and the split assignment: a changed copy trains anew."""
        entries = self.entries(options)
        h = hashlib.sha256()
        for split in SPLITS:
            for e in entries[split]:
                h.update(fs_bytes(f"{split}\t{e.label}\t{e.image}\t{e.mask}\n"))
        if self.layout == "manifest":
            files = [e.image for s in SPLITS for e in entries[s]] + \
                [e.mask for s in SPLITS for e in entries[s] if e.mask is not None]
            digest = paths_digest([self.source, *files])
        else:
            digest = folder_digest([self.source], self.source)
            if self.mask_root is not None:
                masks = folder_digest([self.mask_root], self.mask_root)
                digest = {"files": digest["files"] + masks["files"],
                          "sha256": hashlib.sha256(f"{digest['sha256']}{masks['sha256']}".encode()).hexdigest()[:16]}
        return {"spec": self.digest, **digest, "split": h.hexdigest()[:16]}


def paths_digest(paths: Sequence[Path]) -> dict[str, Any]:
    """File count and a SHA-256 of each path and size (a missing file counts as size -1)."""
    h = hashlib.sha256()
    for path in paths:
        size = path.stat().st_size if path.is_file() else -1
        h.update(fs_bytes(f"{path}\t{size}\n"))
    return {"files": len(paths), "sha256": h.hexdigest()[:16]}


def find_split_dirs(root: Path) -> dict[str | None, Path]:
    """``{train, val, test} -> folder`` under ``root``, matched case-insensitively; all three are needed."""
    dirs = {p.name.lower(): p for p in list_files(root) if p.is_dir()}
    missing = [s for s in SPLITS if s not in dirs]
    if missing:
        raise MedkdError(f"{root}: no {missing[0]!r} folder; a split layout needs train, val and test")
    return {s: dirs[s] for s in SPLITS}


def is_split_layout(root: Path) -> bool:
    """True when ``root`` holds any of the folders train, val, test (any case)."""
    return any(p.is_dir() and p.name.lower() in SPLITS for p in list_files(root))


def class_folders(folder: Path) -> list[str]:
    """Sorted names of the class folders; fewer than two, or a name that is not UTF-8, is an error naming it."""
    names = [p.name for p in list_files(folder) if p.is_dir()]
    for name in names:
        if not is_utf8_name(name):  # a class name goes into the spec file, the store and every page
            raise MedkdError(f"{shown(folder / name)}: class folder name is not UTF-8 text; rename the folder")
    if len(names) < 2:
        found = f"only {names[0]!r}" if names else "none"
        raise MedkdError(f"{folder}: class folders: {found}; a classifier needs at least two classes")
    return names


def _class_files(ds: FolderDataset, folder: Path) -> list[Path]:
    files = list_files(require_folder(folder, f"{ds.name} class"))
    if not files:
        raise MedkdError(f"{ds.where()}: empty class folder {folder}")
    return files


def report_orphan_masks(image_dir: Path, mask_dir: Path | None) -> None:
    """A mask whose image is not in the mirrored image folder is a bad file (as in ``pair_masks``)."""
    if mask_dir is None:
        return
    names = {p.name for p in list_files(image_dir)}
    for mask in list_files(require_folder(mask_dir, "mask")):
        if mask.name not in names:
            bad_file(mask, f"mask without an image of the same name in {image_dir}")


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The rows of a manifest CSV, checked: one MedkdError naming the file and row for each problem kind."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [c.strip() for c in reader.fieldnames or []]
            raw = list(reader)
    except OSError as exc:
        raise MedkdError(f"manifest {path}: cannot be read ({exc.strerror or exc})") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise MedkdError(f"manifest {path}: not a readable CSV ({exc})") from exc
    unknown = [c for c in header if c not in MANIFEST_COLUMNS]
    if "path" not in header or "label" not in header or unknown:
        raise MedkdError(f"manifest {path}: header must be path,label[,split][,mask] "
                         f"(found {','.join(header) or 'nothing'})")
    base = path.parent
    rows, seen = [], {}
    for n, raw_row in enumerate(raw, start=2):  # row 1 is the header
        row = {k.strip(): (v or "").strip() for k, v in raw_row.items() if k is not None}
        where = f"{path} row {n}"
        if not row.get("path") or not row.get("label"):
            raise MedkdError(f"{where}: path and label must not be empty")
        image = (base / row["path"]) if not Path(row["path"]).is_absolute() else Path(row["path"])
        if image in seen:
            raise MedkdError(f"{where}: {row['path']} is listed again (first in row {seen[image]})")
        seen[image] = n
        split = row.get("split", "") if "split" in header else ""
        if "split" in header and split.lower() not in SPLITS:
            raise MedkdError(f"{where}: split {split!r} must be train, val or test")
        mask = row.get("mask") or None
        rows.append({"path": image, "label": row["label"], "split": split.lower(), "row": where,
                     "mask": (base / mask) if mask and not Path(mask).is_absolute() else (Path(mask) if mask else None)})
    if not rows:
        raise MedkdError(f"manifest {path}: no rows below the header")
    if "mask" in header and any(r["mask"] is None for r in rows):
        first = next(r for r in rows if r["mask"] is None)
        raise MedkdError(f"{first['row']}: empty mask (a manifest with a mask column needs one in every row)")
    labels = sorted({r["label"] for r in rows})
    if len(labels) < 2:
        raise MedkdError(f"manifest {path}: one label ({labels[0]!r}); a classifier needs at least two classes")
    return rows


def detect_channels(images: Sequence[Path], sample: int = 16) -> int:
    """1 when every sampled image is grey (a grey mode, RGB with equal planes, MONOCHROME DICOM), else 3.

    Up to ``sample`` images spread over the list are opened (at a reduced JPEG
    draft size; DICOM headers only): enough to tell a grey X-ray set from a colour one cheaply.
    """
    from medkd_bench.data.decode import image_is_grey, is_image_file

    step = max(1, len(images) // sample)
    for path in [p for p in images if is_image_file(p)][::step][:sample]:
        try:
            grey = image_is_grey(path, GREY_MODES)
        except MedkdError:
            raise  # pydicom missing: not this file's fault
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... for bad files
            bad_file(path, f"unreadable or truncated image ({type(exc).__name__}: {exc})")
            continue
        if not grey:
            return 3
    return 1
