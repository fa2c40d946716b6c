"""The progress-reporter protocol: what a run tells its user as it goes (the CLI draws it with rich)."""

from __future__ import annotations

from typing import Protocol

from medkd_bench.run.cells import Cell


class Reporter(Protocol):
    """What a run tells its user as it goes: cells starting and ending, epochs within each, later phases.

    ``epoch_done`` names its cell: in a worker pool several cells train at once.
    ``epochs`` in ``cell_started`` is the cap (early stopping may end sooner).
    """

    def cell_started(self, cell: Cell, index: int, total: int, epochs: int) -> None: ...
    def epoch_done(self, cell: Cell, epoch: int, epochs: int, row: dict[str, float]) -> None: ...
    def cell_finished(self, cell: Cell, status: str, detail: str) -> None: ...
    def phase(self, text: str) -> None: ...


class SilentReporter:
    def cell_started(self, cell: Cell, index: int, total: int, epochs: int) -> None:
        pass

    def epoch_done(self, cell: Cell, epoch: int, epochs: int, row: dict[str, float]) -> None:
        pass

    def cell_finished(self, cell: Cell, status: str, detail: str) -> None:
        pass

    def phase(self, text: str) -> None:
        pass
