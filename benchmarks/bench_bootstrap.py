"""The leaderboard's bootstrap statistics from image counts against resampled copies of the images, side by side.

Rendering the pages is mostly bootstrap CIs: per row, 1,000 resamples of the test images for
accuracy, macro-F1, the paired accuracy difference and the clinical scores. A resample used to be
scored by indexing every seed's predictions with a ``(B, n)`` index array (a ``seeds x B x n``
copy per statistic); it is now its image counts ``(B, n)`` and a matrix product
(:func:`medkd_bench.evaluate.stats.accuracy_weighted`, :func:`~medkd_bench.evaluate.stats.macro_f1_weighted`).
Both variants take turns on the same resamples (``interleave.py``); the script checks that they
give the same numbers to the last bit and prints milliseconds per batch of 250 resamples and the
ratio, at the committed pages' test-set shapes (2,400 images / 3 classes, 2,000 / 5, three seeds)
and a small one.

Usage: python benchmarks/bench_bootstrap.py [--rounds 5]
"""

from __future__ import annotations

import argparse

import numpy as np
from interleave import interleaved_medians

from medkd_bench.evaluate.stats import (
    BATCH,
    accuracy_weighted,
    macro_f1_rows,
    macro_f1_weighted,
    resample_counts,
)

#: (test images, classes, seeds): the committed synthetic-cxr and synthetic-histo pages, and a small test set.
SHAPES = ((2400, 3, 3), (2000, 5, 3), (240, 3, 3))


def variants(n: int, k: int, seeds: int) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(n + k)
    y = rng.integers(0, k, n)
    p = np.where(rng.random((seeds, n)) < 0.8, y, rng.integers(0, k, (seeds, n)))
    correct = (p == y).astype(float)

    def copies(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return correct[:, idx].mean(-1).mean(0), macro_f1_rows(y[idx], p[:, idx], k).mean(0)

    def counts(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = resample_counts(idx, n)
        return accuracy_weighted(correct, c).mean(0), macro_f1_weighted(y, p, c, k).mean(0)

    return {"resampled copies": copies, "image counts": counts}, rng.integers(0, n, (BATCH, n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"accuracy + macro-F1 of {BATCH} resamples, ms (median of {args.rounds} interleaved rounds)")
    print("images classes seeds | resampled copies | image counts | ratio | identical")
    for n, k, seeds in SHAPES:
        funcs, idx = variants(n, k, seeds)
        same = all(np.array_equal(a, b) for a, b in zip(*(f(idx) for f in funcs.values()), strict=True))
        ms = {name: s * 1e3 for name, s in interleaved_medians(funcs, [idx], args.rounds).items()}
        old, new = ms["resampled copies"], ms["image counts"]
        print(f"{n:6d} {k:7d} {seeds:5d} | {old:16.1f} | {new:12.1f} | {old / new:5.1f} | {same}")


if __name__ == "__main__":
    main()
