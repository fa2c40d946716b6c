"""A cell of the matrix: ``(dataset, method, teacher, student, seed)``.

``method`` is ``teacher`` (train a teacher on labels), ``label-only`` (train a
student on labels: the baseline) or the name of a registered distillation
method (``kd``, ``dkd``, ...: distil the teacher into the student that way).
"""

from __future__ import annotations

from dataclasses import dataclass

from medkd_bench.specs import BASE_METHODS


@dataclass(frozen=True)
class Cell:
    dataset: str
    method: str
    teacher: str = ""
    student: str = ""
    seed: int = 0
    #: For a distilled cell: the seed of the teacher cell it distils from. By default one teacher per
    #: dataset (the run's first seed) serves every student seed, as mdistiller and torchdistill ship one
    #: trained teacher; ``None`` means the cell's own seed (``--teacher-seeds``: a teacher per seed).
    teacher_seed: int | None = None

    @property
    def model_name(self) -> str:
        return self.teacher if self.method == "teacher" else self.student

    @property
    def distilled(self) -> bool:
        """Whether this cell distils a teacher into a student (by the method it names)."""
        return self.method not in BASE_METHODS

    @property
    def role(self) -> str:
        return "teacher" if self.method == "teacher" else "student"

    def label(self) -> str:
        if self.method == "teacher":
            what = f"teacher {self.teacher}"
        elif self.method == "label-only":
            what = f"student {self.student} (labels only)"
        else:
            what = f"{self.teacher} -> {self.student} ({self.method})"
            if self.teacher_seed is not None and self.teacher_seed != self.seed:
                what += f", teacher seed {self.teacher_seed}"
        return f"{self.dataset} | {what} | seed {self.seed}"


def teacher_cell_of(cell: Cell) -> Cell:
    """The teacher cell a distilled cell distils from."""
    seed = cell.seed if cell.teacher_seed is None else cell.teacher_seed
    return Cell(cell.dataset, "teacher", teacher=cell.teacher, seed=seed)


def baseline_cell_of(cell: Cell) -> Cell:
    """The label-only cell a distilled cell's gain is measured against: same student, same seed."""
    return Cell(cell.dataset, "label-only", student=cell.student, seed=cell.seed)
