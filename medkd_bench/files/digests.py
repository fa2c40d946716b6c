"""A SHA-256 recorded when a file is written and compared whenever it is read: one check for every artifact.

Nothing on the read path notices a flipped bit: ``torch.load`` does not check
a zip's CRCs, ``np.load`` takes any bytes of the right length, and JSON takes
a changed digit. A damaged soft-target file, saliency map, cached split or
count would be used as it is and move a published number without a word. So
every file a result depends on records the SHA-256 of its bytes as it is
written, and every reader compares before trusting it:

- checkpoints: in the cell's store row (the store is the record of a finished
  cell); :func:`file_problem` compares a file with a digest kept anywhere;
- soft targets and saliency maps: in a sidecar ``<name>.sha256`` written with
  the file (:func:`write_recorded`, :func:`recorded_problem`);
- JSON documents (the count cache, a data-cache entry's ``meta.json``) carry
  their own: :func:`json_digest` of their content, stored inside them.

A file without a recorded digest (written by an older version, or its record
lost) is not trusted either. A mismatch is never silent and never fatal by
itself: the reader rebuilds the file (or fails the cell) with a warning naming
the path. Content checks (finite, shape, range) stay as a second line.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medkd_bench.files.atomic import atomic_write, atomic_write_text
from medkd_bench.messages import warn


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, hex: recorded with every artifact and checked when it is read back.

    Memoised on (path, size, modification time): a rerun checks each checkpoint
    once per process, and VGG19's is half a gigabyte.
    """
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return bytes_sha256(Path(path))


def bytes_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read now: not memoised, for a file just written under a reused name."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: A sidecar's name: the file's own name with this appended.
SIDECAR_SUFFIX = ".sha256"
#: What a mismatch says: the file's bytes are not those recorded when it was written.
DAMAGED = "damaged (its SHA-256 differs from {record})"
UNRECORDED = "unverifiable (no SHA-256 was recorded when it was written)"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def sidecar(path: Path) -> Path:
    """Where ``path``'s recorded SHA-256 lives: ``<name>.sha256`` beside it."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_recorded(path: Path, write: Callable[[Path], None]) -> str:
    """Write ``path`` atomically with ``write(tmp)``, then its SHA-256 into its sidecar; the digest.

    The digest is taken from the bytes this process wrote, before the rename.
    A crash (or another writer) between the two renames leaves a file and a
    record that disagree: the next reader rebuilds it, it never trusts it.
    """
    digest = ""

    def write_and_hash(tmp: Path) -> None:
        nonlocal digest
        write(tmp)
        digest = bytes_sha256(tmp)

    atomic_write(path, write_and_hash)
    atomic_write_text(sidecar(path), digest + "\n")
    return digest


def recorded_digest(path: Path) -> str | None:
    """The SHA-256 recorded in ``path``'s sidecar; None when there is none or it is not a digest."""
    try:
        text = sidecar(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _HEX64.fullmatch(text) else None


def file_problem(path: Path, expected: str | None, record: str = "the one recorded when it was written") -> str | None:
    """Why ``path`` cannot be trusted against the digest ``expected`` (kept in ``record``); None if it can."""
    if not path.is_file():
        return "missing"
    if expected is None:
        return UNRECORDED
    if sha256_file(path) != expected:
        return DAMAGED.format(record=record)
    return None


def recorded_problem(path: Path) -> str | None:
    """:func:`file_problem` against the digest in ``path``'s sidecar."""
    return file_problem(path, recorded_digest(path))


def verified(path: Path, what: str, then: str, plural: bool = False) -> bool:
    """Whether ``path`` matches its sidecar; if not, one warning ``"{what} {path} is {problem}: {then}"``.

    ``plural`` says "are" for files named in the plural ("soft targets", "saliency maps").
    """
    problem = recorded_problem(path)
    if problem is not None:
        warn(f"{what} {path} {'are' if plural else 'is'} {problem}: {then}")
    return problem is None


def json_digest(content: Any) -> str:
    """The SHA-256 of ``content`` as canonical JSON (sorted keys, no spaces): what a JSON document records of itself."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()
