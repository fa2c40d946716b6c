"""The default executor: every cell in this process, in plan order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from medkd_bench.run.cells import Cell
from medkd_bench.run.outcomes import CellJob, computed

if TYPE_CHECKING:
    from medkd_bench.run.runner import MatrixRunner


class LocalExecutor:
    """The simplest path: each cell computed here, in plan order; the runner records it, then explains it."""

    def run(self, runner: MatrixRunner, cells: Sequence[Cell]) -> None:
        for index, cell in enumerate(cells, start=1):
            job = runner.open_job(cell, index, len(cells))
            if job is not None:
                _run_job(runner, job)


def _run_job(runner: MatrixRunner, job: CellJob) -> None:
    model = None
    if job.train:
        cell, timings = job.cell, {}
        try:
            outcome, model = computed(runner.computer, cell, timings, on_epoch=lambda epoch, epochs, row:
                                      runner.reporter.epoch_done(cell, epoch, epochs, row))
        except KeyboardInterrupt:
            runner.record_failed(cell, "interrupted", timings)
            raise
        runner.record(job, outcome)
        if outcome.status != "done":
            return
    runner.explain(job, model)  # the model just trained, so nothing is reloaded from its checkpoint
