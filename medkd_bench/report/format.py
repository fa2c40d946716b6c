"""Number and label formatting shared by the leaderboard tables."""

from __future__ import annotations

from collections.abc import Sequence

from medkd_bench.evaluate.cost import timed_busy
from medkd_bench.run.store import CellRecord
from medkd_bench.specs import BASE_METHODS


def count(n: int, noun: str) -> str:
    """``1 row``, ``2 rows``: a count with its noun in the right number."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def method_label(r: CellRecord, with_seed: bool = False) -> str:
    label = r.method if r.method in BASE_METHODS else f"{r.method} from {r.teacher}"
    return f"{label}, seed {r.seed}" if with_seed else label


def latency_text(metrics: dict, key: str) -> str:
    """``6.12 (IQR 0.14)``: a stored batch-1 latency's median and inter-quartile range in ms, or ``-``.

    A CPU latency timed while other work held cores (after every retry) says so: ``busy: 59% CPU ⚠``.
    """
    median, iqr = metrics.get(f"{key}_ms"), metrics.get(f"{key}_iqr_ms")
    if median is None:
        return "-"
    busy = f", busy: {100 * metrics[f'{key}_cpu_share']:.0f}% CPU ⚠" if timed_busy(metrics, key) else ""
    return f"{median:.2f}" + (f" (IQR {iqr:.2f}{busy})" if iqr is not None else "")


def deployed_latency_text(metrics: dict) -> str:
    """``0.412 (IQR 0.004; CUDA graph, fp16, channels-last)``: latency as deployed with its method, or ``-``.

    Only CUDA runs measure it (:mod:`medkd_bench.deploy.cuda`). A cell whose
    conversion failed the float32 check shows the method alone, which says why;
    GPU figures are often below a millisecond, hence three decimals.
    """
    method = metrics.get("latency_deployed_method")
    if method is None:
        return "-"
    method = str(method).replace("|", "/")  # an error message must not split the table's row
    median, iqr = metrics.get("latency_deployed_ms"), metrics.get("latency_deployed_iqr_ms")
    if median is None:
        return f"- ({method})"
    return f"{median:.3f} (" + (f"IQR {iqr:.3f}; " if iqr is not None else "") + f"{method})"


def timing_machines(done: Sequence[CellRecord]) -> str:
    """Where the page's latencies were measured, and how many rows have none yet.

    Timed where the cost figures were taken: a worker pool's driver, not the worker that trained
    (``timed_on``; cells timed in the process that trained them have only ``machine``). A pool run
    stopped before its timing pass leaves cells without latency: their training machine is not
    where anything was timed, so they are counted, not named.
    """
    timed = [r for r in done if "latency_ms" in r.metrics]
    line = "; ".join(sorted({r.metrics.get("timed_on", r.metrics.get("machine", "unrecorded")) for r in timed}))
    untimed = len(done) - len(timed)
    if untimed:
        line += (f"{'; ' if line else ''}{count(untimed, 'row')} not timed yet (shown as -: the next run's timing "
                 f"pass measures {'them' if untimed > 1 else 'it'})")
    return line or "-"
