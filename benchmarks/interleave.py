"""Timing variants in turn, so the VM's drift falls on all of them alike.

This 2-core VM's speed drifts by 15% or more within a session: variants
timed one after another (whole runs, whole epochs) differ by more than the
few percent a benchmark here has to resolve. Taking turns on the same input,
the order reversed every round, puts each variant next to the others in time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def interleaved_medians(variants: dict[str, Callable[[Any], object]], inputs: Sequence[Any], rounds: int,
                        synchronize: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Median seconds per call of each variant: ``rounds`` timed rounds over ``inputs`` after one warm-up round."""
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rnd in range(rounds + 1):
        for item in inputs:
            for name in names if rnd % 2 else names[::-1]:
                synchronize()
                start = time.perf_counter()
                variants[name](item)
                synchronize()
                if rnd:
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
