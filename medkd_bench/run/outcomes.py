"""What passes between the driver and its executors: a cell's job, and what computing it gave.

The driver (:class:`~medkd_bench.run.runner.MatrixRunner`) opens a
:class:`CellJob` for each cell that needs work; an executor computes it, here,
in a worker process or on a Ray node, and hands back a :class:`CellOutcome`
(and, when it explained the cell too, its :class:`ExplanationResult` list).
Only the driver writes them to the store. Everything here pickles.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medkd_bench.errors import one_line
from medkd_bench.run.cells import Cell
from medkd_bench.run.records import CellRecord

if TYPE_CHECKING:
    from torch import nn

    from medkd_bench.run.computer import CellComputer
    from medkd_bench.train.loop import EpochCallback


@dataclass(frozen=True)
class CellJob:
    """A cell the driver hands to an executor: what to do with it, and the stored rows explaining it reads.

    ``train`` is False for a cell finished earlier whose explanations are
    missing. ``records`` holds the finished rows of its teacher and label-only
    baseline (and its own, when it is not trained): what an executor that
    explains away from the store needs (a pool worker).
    """

    cell: Cell
    index: int
    total: int
    hash: str
    train: bool
    explainers: tuple[str, ...]
    records: dict[str, CellRecord] = field(default_factory=dict)


@dataclass
class ExplanationResult:
    """One explainer's result for a cell, as the driver stores it (an explanations row)."""

    explainer: str
    n_images: int
    seed: int
    status: str  # "done" or "failed"
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None


@dataclass
class CellOutcome:
    """A cell's record as its executor returns it to the driver."""

    status: str  # "done" or "failed"
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    error: str = ""
    traceback: str | None = None

    def record(self, job: CellJob) -> CellRecord:
        """The done row the driver will store for ``job``'s cell: what explaining it away from the store reads."""
        cell = job.cell
        return CellRecord(job.hash, cell.dataset, cell.teacher, cell.student, cell.method, cell.seed, "done", {},
                          self.metrics, self.timings, self.artifacts, None, None, None)


def computed(computer: CellComputer, cell: Cell, timings: dict[str, float] | None = None,
             on_epoch: EpochCallback | None = None) -> tuple[CellOutcome, nn.Module | None]:
    """Train and score ``cell``: its outcome and its trained model (None if it failed).

    A cell's own error is a failed outcome with its one line and traceback;
    ``timings`` keeps what was measured (for an interrupted cell's record).
    KeyboardInterrupt passes through.
    """
    timings = {} if timings is None else timings
    try:
        result = computer.compute(cell, timings, on_epoch=on_epoch)
    except Exception as exc:
        return CellOutcome("failed", timings=dict(timings), error=one_line(exc),
                           traceback=traceback.format_exc()), None
    return CellOutcome("done", result.metrics, result.timings, result.artifacts), result.model
