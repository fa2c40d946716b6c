"""How long the cells still to run will take: from what the store measured, else from this run so far.

A cell's estimate is the median wall time (``timings.total_s`` plus its
explanations' seconds) of finished cells of the same model, role and dataset in the store, then of the same model
and role on any dataset; cells with neither borrow the mean of the cells that
have one, or of the cells this run has finished. Rough by nature (early
stopping ends cells at different epochs): the run prints it as "about".
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from medkd_bench.run.cells import Cell
from medkd_bench.run.store import Store


def _key(dataset: str, method: str, teacher: str, student: str) -> tuple[str, str, str]:
    role = "teacher" if method == "teacher" else "distilled" if method != "label-only" else "label-only"
    return dataset, role, teacher if method == "teacher" else student


def measured_seconds(store: Store, cells: Sequence[Cell]) -> dict[Cell, float | None]:
    """Each cell's estimated seconds from the store's finished cells (None: nothing comparable measured)."""
    explaining: dict[str, float] = {}
    for e in store.explanations():
        spent = e.metrics.get("seconds")
        if e.status == "done" and isinstance(spent, int | float):
            explaining[e.cell_hash] = explaining.get(e.cell_hash, 0.0) + float(spent)
    same: dict[tuple[str, str, str], list[float]] = {}
    for rec in store.cells(status="done"):
        seconds = rec.timings.get("total_s")
        if isinstance(seconds, int | float) and seconds > 0:
            same.setdefault(_key(rec.dataset, rec.method, rec.teacher, rec.student), []).append(
                float(seconds) + explaining.get(rec.hash, 0.0))
    anywhere: dict[tuple[str, str], list[float]] = {}
    for (_, role, model), values in same.items():
        anywhere.setdefault((role, model), []).extend(values)
    out: dict[Cell, float | None] = {}
    for cell in cells:
        dataset, role, model = _key(cell.dataset, cell.method, cell.teacher, cell.student)
        values = same.get((dataset, role, model)) or anywhere.get((role, model))
        out[cell] = statistics.median(values) if values else None
    return out


class MatrixEta:
    """The time left for a run's cells, ``jobs`` at a time; updated as cells finish."""

    def __init__(self, estimates: dict[Cell, float | None], jobs: int, clock: Callable[[], float]):
        self.estimates = dict(estimates)
        self.jobs = max(1, jobs)
        self.clock = clock
        self.left: set[Cell] = set(estimates)
        self.started: dict[Cell, float] = {}
        self.finished_seconds: list[float] = []

    def start(self, cell: Cell) -> None:
        self.started[cell] = self.clock()

    def finish(self, cell: Cell, trained: bool) -> None:
        began = self.started.pop(cell, None)
        if trained and began is not None:
            self.finished_seconds.append(self.clock() - began)
        self.left.discard(cell)

    def seconds_left(self) -> float | None:
        """Estimated seconds until the last cell ends; None while nothing gives an estimate yet."""
        known = [s for c, s in self.estimates.items() if s is not None]
        fallback = (statistics.mean(known) if known else
                    statistics.mean(self.finished_seconds) if self.finished_seconds else None)
        if fallback is None:
            return None
        total = 0.0
        now = self.clock()
        for cell in self.left:
            estimate = self.estimates.get(cell) or fallback
            if cell in self.started:
                estimate = max(0.0, estimate - (now - self.started[cell]))
            total += estimate
        return total / self.jobs

    def text(self) -> str:
        left = self.seconds_left()
        if not self.left:
            return ""
        if left is None:
            return "time left: after the first cell"
        return f"about {_duration(left)} left"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
