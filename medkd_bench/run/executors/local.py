"""The default executor: every cell in this process, in plan order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from medkd_bench.run.cells import Cell

if TYPE_CHECKING:
    from medkd_bench.run.runner import MatrixRunner


class LocalExecutor:
    """The simplest path: :meth:`MatrixRunner.run_in_order`, as a named executor."""

    def run(self, runner: MatrixRunner, cells: Sequence[Cell]) -> dict[str, int]:
        return runner.run_in_order(cells)
