"""The timing loop and summary every latency figure shares: eager forwards, CUDA-graph replays, parts.

Kept apart from :mod:`medkd_bench.evaluate.cost` so that
:mod:`medkd_bench.deploy.cuda` uses the same loop without importing the
module that calls it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed_calls_ms(call: Callable[[], object], synchronize: Callable[[], None], warmup: int, runs: int,
                   min_seconds: float = 0.0) -> list[float]:
    """Milliseconds of each ``call()`` after ``warmup``, the device synchronised before and after each one.

    At least ``runs`` timed calls and at least ``min_seconds`` of them; one loop for
    eager forwards and CUDA-graph replays alike, so both figures mean the same thing.
    """
    times: list[float] = []
    total_ms, i = 0.0, 0
    while i < warmup + runs or total_ms < min_seconds * 1000.0:
        synchronize()
        start = time.perf_counter()
        call()
        synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000.0)
            total_ms += times[-1]
        i += 1
    return times


def median_iqr(times: list[float]) -> tuple[float, float]:
    """The median and inter-quartile range of timed runs (the IQR is 0 for fewer than two runs)."""
    if len(times) < 2:
        return statistics.median(times), 0.0
    q = statistics.quantiles(times, n=4)
    return statistics.median(times), q[2] - q[0]
