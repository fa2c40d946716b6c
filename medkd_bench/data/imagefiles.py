"""Reading a real dataset's image files: finding folders, listing, pairing masks, decoding.

Real datasets are folders of PNG/JPEG files made by other people, so every
problem such a folder can have (a missing root or class folder, an empty
class, a stray non-image file, a mask without its image or the reverse, a
corrupt or truncated image) is a one-line :class:`MedkdError` naming the exact
path. Under ``--skip-bad`` a problem with a *single file* is recorded instead
and the file is left out; the host prints how many. Folder-level problems
(missing root, missing class folder, empty class) always stop: they mean the
wrong folder, not a few damaged files.

Stray files follow one policy (:data:`STRAY_POLICY`): what operating systems
and archivers leave behind (hidden dot-files such as ``.DS_Store`` and macOS
``._*`` twins, ``Thumbs.db``, ``desktop.ini``, ``__MACOSX`` folders) is
ignored everywhere, by listings and digests alike, so it neither fails a run
nor changes a fingerprint; any other file that is not an image is a bad file.

Decoding (:mod:`medkd_bench.data.decode`: 8-bit, 16-bit and float PNG/TIFF,
DICOM) runs in a thread pool: Pillow releases the GIL while it decodes and
resizes, and JPEG ``draft`` mode decodes straight at a reduced scale (a 768 px
LC25000 image read for a 64 px run is decoded at 1/8), which is most of the
speed-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from medkd_bench.data.decode import (
    DICOM_SUFFIXES,
    PILLOW_SUFFIXES,
    UnsupportedImage,
    decode_image,
    is_image_file,
)
from medkd_bench.errors import MedkdError
from medkd_bench.specs import SplitData

#: File types read as images (DICOM also by its marker, whatever its name); anything else
#: in an image folder is a bad file unless it is system clutter (:func:`is_system_file`).
IMAGE_SUFFIXES = PILLOW_SUFFIXES + DICOM_SUFFIXES
#: Names operating systems and archivers write next to images, ignored wherever they are (lower case).
SYSTEM_FILES = ("thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx")
#: The stray-file policy in one sentence, as ``datasets check`` prints it and docs/data.md states it.
STRAY_POLICY = ("hidden files (.DS_Store, ._*), Thumbs.db, desktop.ini and __MACOSX folders are ignored "
                "everywhere; any other file that is not an image is a bad file")


SKIP_HINT = "fix or remove it, or pass --skip-bad to leave bad files out"


@dataclass
class BadFiles:
    """The policy for bad files during one load: raise at the first, or record and skip."""

    skip: bool = False
    #: ``(path, problem)`` for every file left out.
    problems: list[tuple[str, str]] = field(default_factory=list)

    def report(self, path: Path | str, problem: str) -> None:
        if not self.skip:
            raise MedkdError(f"{shown(path)}: {problem} ({SKIP_HINT})")
        self.problems.append((shown(path), problem))


_POLICY: ContextVar[BadFiles | None] = ContextVar("medkd_bad_files", default=None)


@contextlib.contextmanager
def bad_file_policy(skip: bool) -> Iterator[BadFiles]:
    """Within the block, :func:`bad_file` raises (``skip=False``) or records (``skip=True``)."""
    policy = BadFiles(skip)
    token = _POLICY.set(policy)
    try:
        yield policy
    finally:
        _POLICY.reset(token)


def bad_file(path: Path | str, problem: str) -> None:
    """Report one bad file: a MedkdError naming it, unless the run skips bad files."""
    (_POLICY.get() or BadFiles()).report(path, problem)


def find_folder(root: Path, relative: str | Path, dataset: str) -> Path:
    """The folder ``relative`` under ``root``, one level below it, or ``root`` itself (or its parent).

    Archives are often extracted into a folder of their own (``root/archive/...``),
    and people point ``--data-root`` at the dataset folder as often as at its
    parent; all three are accepted so the error only fires when the data is absent.
    """
    root = Path(root)
    rel = Path(relative)
    if not root.is_dir():
        raise MedkdError(f"dataset {dataset!r}: --data-root {root} is not a folder")
    for k in range(len(rel.parts), 0, -1):  # root is the dataset folder, or part of its path
        if root.parts[-k:] == rel.parts[:k] and root.joinpath(*rel.parts[k:]).is_dir():
            return root.joinpath(*rel.parts[k:])
    candidates = [root / rel]
    with contextlib.suppress(OSError):
        candidates += [child / rel for child in sorted(root.iterdir()) if child.is_dir()]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise MedkdError(f"dataset {dataset!r}: no folder {str(rel)!r} in --data-root {root} "
                     "(nor one level below it); extract the dataset's archive there")


def require_folder(folder: Path, what: str) -> Path:
    if not folder.is_dir():
        raise MedkdError(f"missing {what} folder: {folder}")
    return folder


def is_system_file(name: str) -> bool:
    """Clutter an OS or archiver leaves in any folder: a hidden name or one of :data:`SYSTEM_FILES`.

    Ignored, not reported: a folder copied from Windows (``Thumbs.db``) and one
    from a Mac (``.DS_Store``) must behave the same, and neither is the user's data.
    """
    return name.startswith(".") or name.lower() in SYSTEM_FILES


_IGNORED: ContextVar[set[str] | None] = ContextVar("medkd_ignored_files", default=None)


@contextlib.contextmanager
def record_ignored() -> Iterator[set[str]]:
    """Within the block, every system file skipped by a listing or digest is added to the yielded set."""
    ignored: set[str] = set()
    token = _IGNORED.set(ignored)
    try:
        yield ignored
    finally:
        _IGNORED.reset(token)


def _skip(path: Path) -> bool:
    """True (and recorded) for a system file."""
    if not is_system_file(path.name):
        return False
    recorder = _IGNORED.get()
    if recorder is not None:
        recorder.add(str(path))
    return True


def fs_bytes(text: str | Path) -> bytes:
    """A path or name as the bytes the file system holds: UTF-8, and a non-UTF-8 byte as itself.

    Python gives such a byte as a lone surrogate (``surrogateescape``), which plain
    ``str.encode()`` refuses with a UnicodeEncodeError; for valid names the bytes
    are exactly ``encode()``'s, so digests of such names are unchanged.
    """
    return str(text).encode("utf-8", "surrogateescape")


def shown(path: str | Path) -> str:
    """``path`` printable in a message: a non-UTF-8 byte as ``\\xff``."""
    return fs_bytes(path).decode("utf-8", "backslashreplace")


def is_utf8_name(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def list_files(folder: Path) -> list[Path]:
    """Every entry of a folder except system clutter (``.DS_Store``, ``Thumbs.db``...), sorted by name.

    Sorting by name, not by what the file system returns, keeps splits and
    digests identical across machines.
    """
    return sorted((p for p in folder.iterdir() if not _skip(p)), key=lambda p: p.name)


def keep_images(files: Iterable[Path], suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The image files (by suffix, or DICOM by its marker) with a UTF-8 name; every other entry is a bad file."""
    kept = []
    for path in files:
        wanted = is_image_file(path) if suffixes is IMAGE_SUFFIXES else \
            path.suffix.lower() in suffixes and path.is_file()
        if not is_utf8_name(path.name):  # it could not be named in a manifest, a cache or a message
            bad_file(path, "file name is not UTF-8 text; rename it")
        elif wanted:
            kept.append(path)
        else:
            kind = "a folder" if path.is_dir() else "not an image file"
            bad_file(path, f"{kind} in an image folder (expected {', '.join(suffixes)})")
    return kept


def list_images(folder: Path, what: str = "image", suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The images of a folder that must exist; stray files are bad files."""
    return keep_images(list_files(require_folder(folder, what)), suffixes)


@dataclass(frozen=True)
class ImageSample:
    """One image file, its class index, and its mask files by mask name."""

    image: Path
    label: int
    masks: Mapping[str, Path] = field(default_factory=dict)


def pair_masks(images: Sequence[Path], mask_folders: Mapping[str, Path]) -> list[tuple[Path, dict[str, Path]]]:
    """Match each image with the same-named file in every mask folder.

    An image without one of its masks, or a mask without its image, is a bad
    file (left out under ``--skip-bad``).
    """
    by_name = {p.name: p for p in images}
    masks: dict[str, dict[str, Path]] = {}
    for mask_name, folder in mask_folders.items():
        files = list_images(folder, f"{mask_name} mask")
        masks[mask_name] = {p.name: p for p in files}
        image_folder = images[0].parent if images else folder.parent
        for name, path in masks[mask_name].items():
            if name not in by_name:
                bad_file(path, f"{mask_name} mask without an image of the same name in {image_folder}")
    pairs = []
    for name, image in by_name.items():
        missing = [m for m in mask_folders if name not in masks[m]]
        if missing:
            bad_file(image, f"image without its {missing[0]} mask in {mask_folders[missing[0]]}")
            continue
        pairs.append((image, {m: masks[m][name] for m in mask_folders}))
    return pairs


def folder_digest(folders: Iterable[Path], base: Path) -> dict[str, object]:
    """File count and a SHA-256 of every file's path (relative to ``base``) and size.

    Sizes, not modification times: a copy of the same data on another machine
    gets the same digest, while a replaced or truncated file changes it.
    """
    h = hashlib.sha256()
    count = 0
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not _skip(Path(dirpath) / d))
            for name in sorted(f for f in filenames if not _skip(Path(dirpath) / f)):
                path = Path(dirpath) / name
                h.update(fs_bytes(f"{path.relative_to(base).as_posix()}\t{path.stat().st_size}\n"))
                count += 1
    return {"files": count, "sha256": h.hexdigest()[:16]}


def default_threads() -> int:
    """Decoder threads: ``MEDKD_DECODE_THREADS`` or one per core, at most 16."""
    env = os.environ.get("MEDKD_DECODE_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise MedkdError(f"MEDKD_DECODE_THREADS={env!r}: expected a whole number") from None
    return min(16, os.cpu_count() or 1)


def _decode_sample(sample: ImageSample, size: int, mode: str) -> tuple[np.ndarray, dict[str, np.ndarray]] | tuple[Path, str]:
    """Decoded image and masks, or ``(path, problem)`` for the first file that will not decode."""
    try:
        image = decode_image(sample.image, size, mode)
    except MedkdError:
        raise  # not about this file (pydicom missing): stops the load whatever --skip-bad says
    except UnsupportedImage as exc:  # readable, but not one 2-D image: the reason as it is
        return sample.image, str(exc)
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... for bad files
        return sample.image, f"unreadable or truncated image ({type(exc).__name__}: {exc})"
    masks = {}
    for name, path in sample.masks.items():
        try:
            masks[name] = decode_image(path, size, "L") > 127
        except MedkdError:
            raise
        except UnsupportedImage as exc:
            return path, f"{name} mask: {exc}"
        except Exception as exc:
            return path, f"unreadable or truncated {name} mask ({type(exc).__name__}: {exc})"
    return image, masks


def read_samples(samples: Sequence[ImageSample], size: int, channels: int, mask_names: Sequence[str] = (),
                 description: str = "decoding", threads: int | None = None) -> SplitData:
    """Decode files into a :class:`SplitData` at ``size`` px, with a progress bar.

    Files that will not decode are bad files: a MedkdError naming the file, or
    (under ``--skip-bad``) left out together with their label and masks.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    if channels not in (1, 3):
        raise MedkdError(f"read_samples: channels must be 1 or 3, got {channels}")
    mode = "L" if channels == 1 else "RGB"
    n = len(samples)
    images = np.empty((n, channels, size, size), dtype=np.uint8)  # filled in place: no second copy
    masks = {m: np.zeros((n, size, size), dtype=bool) for m in mask_names}
    keep = np.ones(n, dtype=bool)
    workers = threads or default_threads()
    console = Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=console, transient=True, disable=not console.is_terminal)
    with progress, ThreadPoolExecutor(max_workers=workers) as pool:
        task = progress.add_task(description, total=n)
        results = pool.map(lambda s: _decode_sample(s, size, mode), samples, chunksize=1)
        for i, result in enumerate(results):
            progress.advance(task)
            if isinstance(result[0], Path):
                bad_file(result[0], str(result[1]))
                keep[i] = False
                continue
            image, sample_masks = result
            images[i] = image.reshape(size, size, channels).transpose(2, 0, 1)
            for m in mask_names:
                if m in sample_masks:
                    masks[m][i] = sample_masks[m]
    labels = np.array([s.label for s in samples], dtype=np.int64)
    if not keep.all():
        images, labels = images[keep], labels[keep]
        masks = {m: v[keep] for m, v in masks.items()}
    return SplitData(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        masks={m: torch.from_numpy(v) for m, v in masks.items()},
    )
