"""Data checks a reviewer would ask for: leakage, class imbalance, mixed channel modes, a test split too small.

``datasets check NAME`` prints every check with its result; ``run`` prints one
warning line per failed check for each dataset it reads from files. None of
them stops anything: each is a reason to look, not proof of a fault. They run
on the decoded splits at the training size (what the model is given), so they
work for every dataset, and name files where the dataset's spec can list them
(``DatasetSpec.files``).

Leakage
    An image of one split that is also in another one (train/val, train/test,
    val/test) inflates the scores the page reports. *Exact* duplicates have
    identical decoded pixels; *near* duplicates have perceptual hashes
    (:func:`imagehash.phash`, 256 bits: a 16x16 sign pattern of the image's
    low-frequency DCT) at most :data:`NEAR_BITS` bits apart. Why 256 bits and
    32, measured at 64 px: on the embedded synthetic chest X-rays, which share
    one anatomy template as real radiographs do, the default 64-bit hash puts
    712 of 180,000 different train/test pairs within 6 bits (false alarms);
    at 256 bits no two different images came closer than 36 bits (88 on the
    synthetic histology and on noise textures), while the same image re-saved
    as JPEG at quality 60 or 75, halved and scaled back, 15 % brighter or 20 %
    more contrasted stayed within 30 bits on all four sets. Missed: JPEG at
    quality 40 of pure-noise textures (up to 46 bits), crops, flips and
    rotations. Blank images (pixel standard deviation below :data:`FLAT_STD`
    of 255) all hash alike, so they are compared exactly only.
Class imbalance
    The largest class over the smallest, over all splits, above
    :data:`MAX_CLASS_RATIO` (4:1, the minority under 20 % of a two-class
    set: "moderate" imbalance in the usual mild/moderate/extreme scale). The
    page leads with accuracy, which then mostly measures the largest class;
    the warning says what always answering it scores.
Mixed grey and colour in a class
    A class whose images are partly grey and partly colour lets a model
    learn the acquisition (scanner, stain, export) instead of the finding.
    Grey means a grey mode or three equal planes. RGB datasets are checked on
    the decoded planes; grey datasets (colour is converted away) on the files.
Test split too small
    Below :data:`MIN_TEST_IMAGES` test images, a 95 % confidence interval on
    accuracy is wider than +-:data:`MAX_CI_HALF_WIDTH_PP` percentage points at
    50 % accuracy (normal approximation, 1.96 * sqrt(0.25 / n)), so the page's
    differences between models are mostly noise; the warning gives the width.

Hashing costs under 1 ms an image; the results are cached in the run's
cache folder, keyed by the splits' checksums, the file names and the
thresholds, so a check or run after the first one costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medkd_bench.data.prepare import SPLITS, PreparedData

#: Bump when a check changes (its thresholds are part of the cache key already): older results are recomputed.
AUDIT_VERSION = 1
#: Perceptual hash side: 16 -> 256 bits (see the module docstring for why not the default 8 -> 64).
HASH_SIZE = 16
#: Near duplicates: at most this many of the 256 hash bits differ (measured margins: module docstring).
NEAR_BITS = 32
#: Images flatter than this (pixel standard deviation, 0-255) are compared exactly only.
FLAT_STD = 2.0
#: Largest class / smallest class above this is reported.
MAX_CLASS_RATIO = 4.0
#: The widest 95 % CI half-width on accuracy (percentage points, at 50 %) a test split may give.
MAX_CI_HALF_WIDTH_PP = 10.0
#: 95 % normal quantile.
Z95 = 1.96
#: The smallest test split whose accuracy CI stays within +-MAX_CI_HALF_WIDTH_PP: 97.
MIN_TEST_IMAGES = math.ceil(Z95 ** 2 * 0.25 / (MAX_CI_HALF_WIDTH_PP / 100) ** 2)
#: Example pairs or files named per finding.
EXAMPLES = 3
#: Split pairs checked for leakage, the one that inflates test scores first.
SPLIT_PAIRS = (("train", "test"), ("val", "test"), ("train", "val"))


@dataclass(frozen=True)
class CheckResult:
    """One check of one dataset: passed or not, a one-line summary, a few named examples."""

    check: str
    ok: bool
    summary: str
    details: tuple[str, ...] = field(default_factory=tuple)


def ci_half_width_pp(n: int, accuracy: float = 0.5) -> float:
    """Half-width, in percentage points, of a 95 % normal-approximation CI on an accuracy from ``n`` images."""
    return 100 * Z95 * math.sqrt(accuracy * (1 - accuracy) / max(n, 1))


# ---- hashing -------------------------------------------------------------------------------------

def _pil(image: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))


@dataclass
class SplitHashes:
    """Per image of one split: 256-bit perceptual hash (4 uint64), exact pixel digest, blank or not."""

    phash: np.ndarray
    exact: list[str]
    flat: np.ndarray


def hash_split(images: torch.Tensor) -> SplitHashes:
    """Hash every decoded image of a split once (uint8 ``(N, C, H, W)``, as the cache holds them)."""
    import imagehash

    array = images.numpy()
    phash = np.zeros((len(array), HASH_SIZE * HASH_SIZE // 64), dtype=np.uint64)
    exact = []
    for i, image in enumerate(array):
        bits = imagehash.phash(_pil(image), hash_size=HASH_SIZE).hash
        phash[i] = np.packbits(bits.ravel()).view(">u8").astype(np.uint64)
        exact.append(hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).hexdigest())
    flat = array.reshape(len(array), -1).std(axis=1) < FLAT_STD if len(array) else np.zeros(0, dtype=bool)
    return SplitHashes(phash, exact, flat)


_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per row of uint64 words (numpy 2's bitwise_count, else a byte table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)
    return _POPCOUNT8[words.view(np.uint8)].sum(axis=-1, dtype=np.int64)


def near_pairs(a: np.ndarray, b: np.ndarray, max_bits: int, budget: int = 2_000_000) -> list[tuple[int, int, int]]:
    """``(i, j, distance)`` for every hash ``a[i]`` and ``b[j]`` at most ``max_bits`` apart.

    All pairs, compared a block of ``b`` at a time so that no block holds more
    than ``budget`` words (16 MB): 10,000 test images against 80,000 train
    images took 31 s on a busy two-core machine; user datasets are usually far smaller.
    """
    pairs: list[tuple[int, int, int]] = []
    if not len(a) or not len(b):
        return pairs
    chunk = max(1, budget // (len(a) * a.shape[1]))
    for start in range(0, len(b), chunk):
        block = b[start:start + chunk]
        distance = _popcount(a[:, None, :] ^ block[None, :, :])  # (len(a), len(block))
        for i, j in zip(*np.nonzero(distance <= max_bits), strict=True):
            pairs.append((int(i), start + int(j), int(distance[i, j])))
    return pairs


# ---- the checks ----------------------------------------------------------------------------------

def _name(files: dict[str, list[str]] | None, split: str, index: int) -> str:
    return files[split][index] if files is not None else f"{split} image #{index}"


def check_leakage(data: PreparedData, hashes: dict[str, SplitHashes],
                  files: dict[str, list[str]] | None) -> CheckResult:
    """Exact and near duplicates across splits, each example naming both files and their labels."""
    classes = data.spec.classes
    parts, details = [], []
    for first, second in SPLIT_PAIRS:
        ha, hb = hashes[first], hashes[second]
        labels_a, labels_b = data.splits[first].labels.tolist(), data.splits[second].labels.tolist()
        by_digest: dict[str, int] = {}
        for i, digest in enumerate(ha.exact):
            by_digest.setdefault(digest, i)
        found: dict[int, tuple[int, str]] = {}  # index in `second` -> (index in `first`, how)
        for j, digest in enumerate(hb.exact):
            if digest in by_digest:
                found[j] = (by_digest[digest], "exact")
        keep_a, keep_b = np.flatnonzero(~ha.flat), np.flatnonzero(~hb.flat)
        for i, j, bits in near_pairs(ha.phash[keep_a], hb.phash[keep_b], NEAR_BITS):
            found.setdefault(int(keep_b[j]), (int(keep_a[i]), f"near, {bits}/{HASH_SIZE ** 2} bits apart"))
        if not found:
            continue
        exact = sum(how == "exact" for _, how in found.values())
        parts.append(f"{len(found)} {second} image(s) also in {first} ({exact} exact, {len(found) - exact} near)")
        for j, (i, how) in sorted(found.items())[:EXAMPLES]:
            conflict = "" if labels_a[i] == labels_b[j] else " (different labels!)"
            details.append(f"{_name(files, second, j)} [{classes[labels_b[j]]}] = {_name(files, first, i)} "
                           f"[{classes[labels_a[i]]}]: {how}{conflict}")
    if not parts:
        return CheckResult("leakage", True, "no exact or near-duplicate image across train, val and test")
    return CheckResult("leakage", False, "; ".join(parts) + ": scores on them are inflated", tuple(details))


def check_imbalance(data: PreparedData) -> CheckResult:
    """Largest over smallest class, over all splits; what always answering the largest class scores on test."""
    classes = data.spec.classes
    counts = sum(torch.bincount(data.splits[s].labels, minlength=len(classes)) for s in SPLITS).tolist()
    big, small = int(np.argmax(counts)), int(np.argmin(counts))
    if counts[big] == counts[small]:
        return CheckResult("class balance", True, f"every class has {counts[big]} images")
    ratio = counts[big] / max(counts[small], 1)
    text = (f"largest class {classes[big]!r} {counts[big]}, smallest {classes[small]!r} {counts[small]} "
            f"(ratio {ratio:.1f}:1")
    if ratio <= MAX_CLASS_RATIO:
        return CheckResult("class balance", True, text + f", within {MAX_CLASS_RATIO:g}:1)")
    test = data.splits["test"].labels
    majority = float((test == big).float().mean()) * 100 if len(test) else 0.0
    return CheckResult("class balance", False, text + f", above {MAX_CLASS_RATIO:g}:1): always answering "
                       f"{classes[big]!r} scores {majority:.1f}% test accuracy; read macro F1 and the per-class "
                       "rows, not accuracy alone")


def grey_flags(data: PreparedData, split: str, files: dict[str, list[str]] | None) -> list[bool | None]:
    """Per image: grey (True), colour (False) or unknown (None: a grey dataset whose files cannot be listed)."""
    images = data.splits[split].images
    if images.shape[1] == 3:  # colour survives decoding: equal planes are grey
        equal = (images[:, 0] == images[:, 1]).flatten(1).all(1) & (images[:, 1] == images[:, 2]).flatten(1).all(1)
        return [bool(x) for x in equal.tolist()]
    if files is None:
        return [None] * len(images)
    from medkd_bench.data.decode import image_is_grey
    from medkd_bench.data.folder_dataset import GREY_MODES

    flags: list[bool | None] = []
    for path in files[split]:
        try:
            flags.append(image_is_grey(Path(path), GREY_MODES))
        except Exception:  # unreadable here but decoded for the run (or left out): not this check's business
            flags.append(None)
    return flags


def check_channels(data: PreparedData, files: dict[str, list[str]] | None) -> CheckResult:
    """Classes holding both grey and colour images, with counts and an example of the rarer kind."""
    classes = data.spec.classes
    seen: dict[int, dict[bool, list[str]]] = {}
    unknown = 0
    for split in SPLITS:
        labels = data.splits[split].labels.tolist()
        for index, (label, grey) in enumerate(zip(labels, grey_flags(data, split, files), strict=True)):
            if grey is None:
                unknown += 1
                continue
            seen.setdefault(label, {True: [], False: []})[grey].append(_name(files, split, index))
    if unknown and not seen:
        return CheckResult("grey/colour", True, "not checked: grey dataset whose files the plugin does not list")
    mixed = {c: kinds for c, kinds in seen.items() if kinds[True] and kinds[False]}
    if not mixed:
        return CheckResult("grey/colour", True, "no class mixes grey and colour images")
    parts, details = [], []
    for label, kinds in sorted(mixed.items()):
        rare = min((True, False), key=lambda k: len(kinds[k]))
        parts.append(f"class {classes[label]!r}: {len(kinds[False])} colour, {len(kinds[True])} grey")
        details += [f"{classes[label]}: {'grey' if rare else 'colour'} {name}" for name in kinds[rare][:EXAMPLES]]
    lost = " (read as grey: the colour is dropped)" if data.splits["train"].images.shape[1] == 1 else ""
    return CheckResult("grey/colour", False, "; ".join(parts) + f"{lost}: a model can learn the source instead "
                       "of the finding", tuple(details))


def check_test_size(data: PreparedData) -> CheckResult:
    """A test split under :data:`MIN_TEST_IMAGES` images, with the width of its accuracy CI."""
    n = len(data.splits["test"])
    per_class = torch.bincount(data.splits["test"].labels, minlength=data.num_classes).tolist()
    text = (f"{n} test images: a 95% CI on accuracy is +-{ci_half_width_pp(n):.1f} pp at 50% "
            f"(+-{ci_half_width_pp(n, 0.8):.1f} pp at 80%)")
    if n >= MIN_TEST_IMAGES:
        return CheckResult("test size", True, text)
    return CheckResult("test size", False, text + f", wider than +-{MAX_CI_HALF_WIDTH_PP:g} pp below "
                       f"{MIN_TEST_IMAGES} images: differences between models smaller than that are noise; "
                       f"per-class rows rest on as few as {min(per_class)} image(s)")


# ---- running them --------------------------------------------------------------------------------

def split_files(data: PreparedData, root: Path | None, options: dict[str, Any]) -> dict[str, list[str]] | None:
    """The file behind each decoded image, per split, if the spec lists them and they line up; else None.

    The spec lists every file it reads, bad ones included; the decoded splits
    lack those a run left out (``data.skipped``), so they are dropped here in order.
    """
    from medkd_bench.data.imagefiles import bad_file_policy

    if data.spec.files is None:
        return None
    skipped = {path for path, _ in data.skipped}
    out: dict[str, list[str]] = {}
    try:
        with bad_file_policy(True):  # listing again: its problems were reported when the data was read
            for split in SPLITS:
                listed = [str(p) for p in data.spec.files(split, root, {**data.spec.options, **options})]
                out[split] = [p for p in listed if p not in skipped]
    except Exception:  # a listing problem is reported by reading the data, not by a check
        return None
    if any(len(out[s]) != len(data.splits[s]) for s in SPLITS):
        return None
    return out


def _cache_path(cache_dir: Path, data: PreparedData, files: dict[str, list[str]] | None) -> Path:
    settings = [AUDIT_VERSION, HASH_SIZE, NEAR_BITS, FLAT_STD, MAX_CLASS_RATIO, MIN_TEST_IMAGES]  # a change rechecks
    key = json.dumps({"settings": settings, "size": data.img_size, "checksums": data.checksums, "files": files},
                     sort_keys=True)
    return cache_dir / "audit" / f"{data.spec.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def audit(data: PreparedData, root: Path | None = None, options: dict[str, Any] | None = None,
          cache_dir: Path | None = None) -> list[CheckResult]:
    """Every check of one prepared dataset, from the cache when these splits were checked before."""
    from medkd_bench.files.atomic import atomic_write_text

    files = split_files(data, root, dict(options or {}))
    path = _cache_path(cache_dir, data, files) if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            return [CheckResult(r["check"], r["ok"], r["summary"], tuple(r["details"]))
                    for r in json.loads(path.read_text())]
        except (ValueError, KeyError, TypeError):
            pass  # damaged: checked again and rewritten
    hashes = {s: hash_split(data.splits[s].images) for s in SPLITS}
    results = [check_leakage(data, hashes, files), check_imbalance(data), check_channels(data, files),
               check_test_size(data)]
    if path is not None:
        try:
            atomic_write_text(path, json.dumps([asdict(r) for r in results]))
        except OSError:
            pass  # a read-only cache costs the hashing next time, nothing else
    return results


def warning_lines(name: str, results: Sequence[CheckResult]) -> list[str]:
    """What ``run`` says about a dataset: one line per failed check, pointing at ``datasets check``."""
    return [f"dataset {name!r}: {r.check}: {r.summary} (`medkd-bench datasets check {name}` shows the files)"
            for r in results if not r.ok]
