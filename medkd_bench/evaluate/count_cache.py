"""Parameter and MAC counts cached in the work dir: fvcore traces each architecture once per input size.

fvcore's count is a full trace of the model (seconds for VGG19 at 224 px, for
every process that scores a cell of it: each pool worker, each rerun). The
count depends on the architecture's code (name and revision), the input size,
the head's class count and fvcore itself, never on the weights or precision, so
``<work-dir>/fvcore_counts.json`` keeps one entry per such key, like the OFA
cost table (:mod:`medkd_bench.nas.cost_table`).

The file is written atomically (:func:`~medkd_bench.files.atomic.atomic_write_text`)
after re-reading it, so two workers adding different keys lose at most one
entry to a race, which is then counted again. Each entry carries the SHA-256
of its key and figures (:func:`~medkd_bench.files.digests.json_digest`), so
the file verifies itself: one changed digit (1.60M parameters for a 7.60M
model) no longer matches, and neither does an entry without one. Such an
entry, or a file that cannot be read back (truncated, garbage, another
format), is counted again with a warning naming the file; finite,
non-negative figures stay a second check. A cache never decides a published figure.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medkd_bench.errors import one_line
from medkd_bench.evaluate.cost import size_metrics
from medkd_bench.files.atomic import atomic_write_text
from medkd_bench.files.digests import json_digest
from medkd_bench.messages import warn

COUNTS_FILE = "fvcore_counts.json"
#: Bump when an entry's meaning changes: a file of another format is counted again (2: entries carry a SHA-256).
FORMAT = 2
#: The figures an entry holds, as :func:`~medkd_bench.evaluate.cost.size_metrics` returns them.
FIGURES = ("params_m", "gmacs")


def fvcore_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fvcore")
    except PackageNotFoundError:
        return "unknown"


def count_key(name: str, revision: str, img_size: int, num_classes: int) -> str:
    """One entry per architecture (name, revision), input size and class count; fvcore's version too."""
    return f"{name} | rev {revision} | img {img_size} | classes {num_classes} | fvcore {fvcore_version()}"


class CountCache:
    """``{key: {"params_m", "gmacs"}}`` in a JSON file, damage-tolerant on read (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = path

    def _entries(self, loud: bool) -> dict[str, Any]:
        """The file's entries; ``{}`` for a missing or unreadable file (warned about when ``loud``)."""
        if not self.path.is_file():
            return {}
        try:
            doc = json.loads(self.path.read_text())
            if isinstance(doc, dict) and isinstance(doc.get("format"), int) and doc["format"] < FORMAT:
                if loud:
                    warn(f"fvcore count cache {self.path} is unverifiable (format {doc['format']}, written before "
                         "counts carried a SHA-256): counting again")
                return {}
            if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("counts"), dict):
                raise ValueError(f"not a format-{FORMAT} table of counts")
            return doc["counts"]
        except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            if loud:
                warn(f"fvcore count cache {self.path} is damaged ({one_line(exc)}): counting again")
            return {}

    def get(self, key: str) -> dict[str, float] | None:
        """The cached counts of ``key``, or None (after a warning if its entry is damaged)."""
        entry = self._entries(loud=True).get(key)
        if entry is None:
            return None
        if not _sealed(key, entry):
            warn(f"fvcore count cache {self.path}: entry {key!r} is damaged (its SHA-256 is missing or differs "
                 "from its figures'): counting again")
            return None
        counts = _valid(entry)
        if counts is None:
            warn(f"fvcore count cache {self.path}: entry {key!r} is damaged ({entry!r:.80}): counting again")
        return counts

    def put(self, key: str, counts: dict[str, float]) -> None:
        """Add ``key`` to what the file holds now (damaged entries dropped); a failed write only warns."""
        entries = {k: v for k, v in self._entries(loud=False).items() if _sealed(k, v) and _valid(v) is not None}
        figures = {name: float(counts[name]) for name in FIGURES}
        entries[key] = {**figures, "sha256": json_digest([key, figures])}
        try:
            atomic_write_text(self.path, json.dumps({"format": FORMAT, "counts": entries}, indent=1,
                                                    sort_keys=True, allow_nan=False) + "\n")
        except OSError as exc:
            warn(f"fvcore count cache {self.path} not written ({one_line(exc)}): the next process counts again")


def _sealed(key: str, entry: Any) -> bool:
    """Whether ``entry`` carries the SHA-256 of ``key`` and its own figures, as :meth:`CountCache.put` wrote it."""
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        return False
    try:
        return entry["sha256"] == json_digest([key, {name: entry.get(name) for name in FIGURES}])
    except (TypeError, ValueError):  # a NaN or a value JSON cannot hold: not what was written
        return False


def _valid(entry: Any) -> dict[str, float] | None:
    """An entry's figures if each is a finite, non-negative number; None otherwise."""
    if not isinstance(entry, dict):
        return None
    values = {name: entry.get(name) for name in FIGURES}
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
               for v in values.values()):
        return None
    return {name: float(v) for name, v in values.items()}


def cached_size_metrics(work_dir: Path, arch: tuple[str, str, int, int], model: nn.Module, img_size: int,
                        device: torch.device | str = "cpu") -> dict[str, float]:
    """:func:`~medkd_bench.evaluate.cost.size_metrics` of ``model``, from ``work_dir``'s cache when counted before.

    ``arch`` is ``(name, revision, img_size, num_classes)``: the counts' key.
    """
    cache = CountCache(work_dir / COUNTS_FILE)
    key = count_key(*arch)
    counts = cache.get(key)
    if counts is None:
        counts = size_metrics(model, img_size, device)
        cache.put(key, counts)
    return counts
