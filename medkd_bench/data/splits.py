"""Seeded stratified splits for datasets published without an official one.

Each class is split on its own (stratified) by a seeded hash of each file's
class and name: sort a class's files by ``sha256(f"{seed}/{class}/{file name}")``,
then the first ``test_fraction`` go to test, the next ``val_fraction`` to val,
the rest to train. The result depends only on the file names and the options,
never on the machine or on the order the file system lists files, and adding
a file moves no other file between splits. LC25000 and the user's own image
folders (``datasets add``) share this one rule, so a split means the same
thing for every dataset that has no official one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medkd_bench.errors import MedkdError


def split_fractions(name: str, options: Mapping[str, Any]) -> tuple[int, float, float]:
    """``(seed, val_fraction, test_fraction)`` from a dataset's options, checked."""
    seed, val, test = options["seed"], options["val_fraction"], options["test_fraction"]
    for key, value in (("val_fraction", val), ("test_fraction", test)):
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < 1:
            raise MedkdError(f"dataset {name!r}: option {key}={value!r} must be a number between 0 and 1")
    if val + test >= 1:
        raise MedkdError(f"dataset {name!r}: val_fraction + test_fraction must be below 1 (got {val + test})")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise MedkdError(f"dataset {name!r}: option seed={seed!r} must be a whole number")
    return seed, float(val), float(test)


def split_class(name: str, cls: str, files: list[Path], options: Mapping[str, Any]) -> dict[str, list[Path]]:
    """One class's files divided into train/val/test by a seeded hash of the file name.

    Every split gets at least one file, so each class can be trained, tuned and tested;
    a class too small for that is a one-line error naming it and its folder.
    """
    seed, val, test = split_fractions(name, options)
    n = len(files)
    n_test, n_val = max(1, round(n * test)), max(1, round(n * val))
    if n - n_test - n_val < 1:
        raise MedkdError(f"dataset {name!r}: class {cls!r} has {n} file(s), too few for train, val and test "
                         f"({files[0].parent if files else cls})")
    # The name's bytes as the file system holds them (the same as encode() for every UTF-8 name).
    order = sorted(files, key=lambda p: hashlib.sha256(f"{seed}/{cls}/{p.name}".encode("utf-8", "surrogateescape"))
                   .hexdigest())
    return {"test": sorted(order[:n_test]), "val": sorted(order[n_test:n_test + n_val]),
            "train": sorted(order[n_test + n_val:])}
