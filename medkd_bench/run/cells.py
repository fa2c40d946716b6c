"""A cell of the matrix: ``(dataset, method, teacher, student, seed)``.

``method`` is ``teacher`` (train a teacher on labels), ``label-only`` (train a
student on labels: the baseline) or the name of a registered distillation
method (``kd``, ``dkd``, ...: distil the teacher into the student that way).
"""

from __future__ import annotations

from dataclasses import dataclass

from medkd_bench.specs import BASE_METHODS


def describe_model(method: str, teacher: str | None, student: str | None) -> str:
    """A cell's model in words, one form for the run's log, errors and pages.

    ``teacher vgg19``, ``student ofa-595 (labels only)`` or ``vgg19 -> ofa-595 (kd)``: one way to
    name a model, so a reader can search a page for the line the run printed about it.
    """
    if method == "teacher":
        return f"teacher {teacher}"
    if method == "label-only":
        return f"student {student} (labels only)"
    return f"{teacher} -> {student} ({method})"


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
        what = describe_model(self.method, self.teacher, self.student)
        if self.distilled and self.teacher_seed is not None and self.teacher_seed != self.seed:
            what += f", teacher seed {self.teacher_seed}"
        return f"{self.dataset} | {what} | seed {self.seed}"


def teacher_cell_of(cell: Cell) -> Cell:
    """The teacher cell a distilled cell distils from."""
    seed = cell.seed if cell.teacher_seed is None else cell.teacher_seed
    return Cell(cell.dataset, "teacher", teacher=cell.teacher, seed=seed)


def baseline_cell_of(cell: Cell) -> Cell:
    """The label-only cell a distilled cell's gain is measured against: same student, same seed."""
    return Cell(cell.dataset, "label-only", student=cell.student, seed=cell.seed)
