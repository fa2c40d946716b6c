"""Finished cells as a run reads them: a stored done row whose checkpoint is intact.

The rows come from the run store on the driver and from the driver's snapshot
(:attr:`~medkd_bench.run.outcomes.CellJob.records`) in a pool worker, which
never opens the store; the checks are the same on both sides.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from medkd_bench.errors import MedkdError
from medkd_bench.messages import warn
from medkd_bench.run.artifacts import checkpoint_problem
from medkd_bench.run.cells import Cell, teacher_cell_of
from medkd_bench.run.computer import CellComputer
from medkd_bench.run.records import CellRecord


class FinishedCells:
    """Which cells are finished, and their trained models, from rows looked up by config hash."""

    def __init__(self, computer: CellComputer, rows: Callable[[str], CellRecord | None]):
        self.computer = computer
        self.rows = rows
        self._warned: set[str] = set()

    def row(self, cell: Cell) -> CellRecord | None:
        return self.rows(self.computer.hash(cell))

    def is_finished(self, cell_hash: str) -> bool:
        """Done, and its checkpoint on disk with the SHA-256 the row recorded.

        A missing or damaged checkpoint means the cell is trained again (with a
        warning naming the file) instead of failing every cell that needs it.
        """
        rec = self.rows(cell_hash)
        if rec is None or rec.status != "done":
            return False
        path = self.computer.checkpoint_path(cell_hash)
        problem = checkpoint_problem(path, rec.artifacts)
        if problem is None:
            return True
        if str(path) not in self._warned:  # checked again by later steps of the run: say it once
            self._warned.add(str(path))
            warn(f"checkpoint {path} of finished cell {cell_hash} is {problem}: training the cell again")
        return False

    def load_trained(self, cell: Cell) -> nn.Module:
        """A finished cell's model, rebuilt from its checkpoint (which must match the row's SHA-256)."""
        if not self.is_finished(self.computer.hash(cell)):
            raise MedkdError(f"{cell.label()} has no finished checkpoint (run it first)")
        return self.computer.load_checkpoint(cell)

    def check_teacher(self, cell: Cell) -> None:
        """A distilled cell needs its teacher finished, checkpoint intact; raises with the teacher's own error otherwise.

        A teacher still done in the store whose checkpoint is damaged and whose
        retraining did not finish cannot teach: its soft targets would come from
        the damaged weights.
        """
        if not cell.distilled:
            return
        h = self.computer.hash(teacher_cell_of(cell))
        teacher_rec = self.rows(h)
        if teacher_rec is None or teacher_rec.status != "done":
            raise MedkdError(f"teacher {cell.teacher!r} has not been trained on {cell.dataset} "
                             f"({teacher_rec.error if teacher_rec and teacher_rec.error else 'no finished cell'})")
        if not self.is_finished(h):
            why = f" ({teacher_rec.retrain_error})" if teacher_rec.retrain_error else ""
            raise MedkdError(f"teacher {cell.teacher!r} on {cell.dataset}: its checkpoint is missing or damaged and "
                             f"training it again did not finish{why}")
