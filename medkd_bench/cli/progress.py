"""What ``run`` draws while it works: one bar for the matrix with its time left, one per training cell.

Every executor reports through the same calls (pool workers send theirs down
their pipes), so a two-worker run shows both cells' epochs, not only elapsed
time; phases after training (explanations, timing, ONNX, pages) get a line each.
"""

from __future__ import annotations

import time

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from medkd_bench.run.cells import Cell
from medkd_bench.run.estimate import MatrixEta


def run_progress(console) -> Progress:
    """The run's progress display: description, bar, count, elapsed, time left."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[left]}"), console=console, transient=False)


class RichReporter:
    """The matrix bar (with :class:`MatrixEta`'s time left), a bar per cell in training, a line per finished cell."""

    def __init__(self, progress: Progress, total: int, eta: MatrixEta | None = None):
        self.progress = progress
        self.eta = eta
        self.cells = progress.add_task("cells", total=total, left=eta.text() if eta else "")
        self.training: dict[Cell, tuple[TaskID, float]] = {}

    def _refresh_left(self) -> None:
        if self.eta is not None:
            self.progress.update(self.cells, left=self.eta.text())

    def cell_started(self, cell: Cell, index: int, total: int, epochs: int) -> None:
        if self.eta is not None:
            self.eta.start(cell)
        task = self.progress.add_task(f"[cyan]{cell.label()}", total=max(1, epochs), left="")
        self.training[cell] = (task, time.perf_counter())
        self._refresh_left()

    def epoch_done(self, cell: Cell, epoch: int, epochs: int, row: dict[str, float]) -> None:
        if cell not in self.training:
            return
        task, began = self.training[cell]
        per_epoch = (time.perf_counter() - began) / max(1, epoch)
        # The cap is an upper bound: early stopping may end the cell sooner.
        left = f"≤ {per_epoch * (epochs - epoch):.0f} s left" if epoch < epochs else ""
        self.progress.update(task, completed=epoch, total=epochs, left=left,
                             description=f"[cyan]{cell.label()}[/]  loss {row['loss']:.3f} "
                                         f"val {row['val_accuracy']:.3f}")
        self._refresh_left()

    def cell_finished(self, cell: Cell, status: str, detail: str) -> None:
        style = {"done": "green", "skipped": "dim", "failed": "red"}[status]
        self.progress.console.print(f"[{style}]{status:>7}[/] {cell.label()}: {detail}")
        entry = self.training.pop(cell, None)
        if entry is not None:
            self.progress.remove_task(entry[0])
        if self.eta is not None and cell in self.eta.left:
            self.eta.finish(cell, trained=status == "done")
            self.progress.advance(self.cells)
        elif self.eta is None:
            self.progress.advance(self.cells)
        self._refresh_left()

    def phase(self, text: str) -> None:
        self.progress.console.print(f"[dim]{text}[/]", highlight=False)
