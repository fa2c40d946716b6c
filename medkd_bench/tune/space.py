"""What ``run --tune N`` searches: one search space per tuning arm, the paper default one point of it.

An *arm* is one student trained one way on one dataset: the label-only
baseline, or one method distilling one teacher. Every arm searches the
student's learning rate (the one option every training recipe has); the
baseline adds label smoothing, its own regulariser, so that "KD beats labels"
is not "tuned beats untuned"; each method adds the options its spec declares
worth tuning (:attr:`~medkd_bench.specs.MethodSpec.search_space`). Training
options are keyed ``train.NAME``; method options by their own names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from medkd_bench.errors import MedkdError
from medkd_bench.run.cells import Cell
from medkd_bench.specs import (
    BASE_METHODS,
    Choice,
    LogUniform,
    MethodSpec,
    SearchParam,
    TrainSettings,
    Uniform,
)

#: Prefix of the training options an arm tunes (``train.lr``), apart from method options.
TRAIN_PREFIX = "train."
#: The learning rate is searched within this factor of the student's default, both ways.
LR_FACTOR = 4.0
#: The label-only baseline's label-smoothing range (0: the untuned default).
LABEL_SMOOTHING = Uniform(0.0, 0.2)


@dataclass(frozen=True)
class Arm:
    """One tuned training recipe: a student on a dataset, on labels alone or distilling one teacher."""

    dataset: str
    student: str
    method: str  # "label-only" or a distillation method
    teacher: str = ""

    @property
    def key(self) -> str:
        """``dataset/teacher/student/method``, the teacher empty for the baseline: how runs and pages name it."""
        return f"{self.dataset}/{self.teacher}/{self.student}/{self.method}"

    def cell(self, seed: int) -> Cell:
        return Cell(self.dataset, self.method, teacher=self.teacher, student=self.student, seed=seed)


class NamedCell(Protocol):
    """What names a cell's arm: a planned :class:`Cell` and a stored cell record both have it."""

    dataset: str
    method: str
    teacher: str
    student: str


def arm_of(cell: NamedCell) -> Arm | None:
    """The arm a student cell (planned, or a store's record) belongs to; None for a teacher (own recipe)."""
    if cell.method == "teacher":
        return None
    return Arm(cell.dataset, cell.student, cell.method, "" if cell.method in BASE_METHODS else cell.teacher)


def arm_space(student_train: TrainSettings, method: MethodSpec | None) -> dict[str, SearchParam]:
    """The arm's search space: the learning rate, then label smoothing (baseline) or the method's options."""
    lr = student_train.lr
    space: dict[str, SearchParam] = {f"{TRAIN_PREFIX}lr": LogUniform(lr / LR_FACTOR, lr * LR_FACTOR)}
    if method is None:
        space[f"{TRAIN_PREFIX}label_smoothing"] = LABEL_SMOOTHING
    else:
        space.update(method.search_space)
    return space


def arm_defaults(student_train: TrainSettings, method: MethodSpec | None,
                 method_options: Mapping[str, Any]) -> dict[str, Any]:
    """The untuned point of :func:`arm_space`: the student's training defaults and the method's options."""
    out: dict[str, Any] = {}
    for key in arm_space(student_train, method):
        if key.startswith(TRAIN_PREFIX):
            out[key] = getattr(student_train, key[len(TRAIN_PREFIX):])
        else:
            out[key] = method_options[key]
    return out


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(training changes, method options)`` of one point of an arm's space."""
    train = {k[len(TRAIN_PREFIX):]: v for k, v in params.items() if k.startswith(TRAIN_PREFIX)}
    method = {k: v for k, v in params.items() if not k.startswith(TRAIN_PREFIX)}
    return train, method


def contains(param: SearchParam, value: Any) -> bool:
    """Whether ``value`` is a point of ``param`` (the default must be: the paper's setting is searched too)."""
    if isinstance(param, Choice):
        return value in param.values
    return isinstance(value, int | float) and not isinstance(value, bool) and param.low <= value <= param.high


def check_space(owner: str | None, spec: MethodSpec) -> None:
    """A method's declared search space: known options, sane ranges inside the option's own, default inside.

    Checked when it registers (naming plugin ``owner``) and by the conformance kit (``owner`` None).
    """
    where = f"{'' if owner is None else f'plugin {owner!r}: '}method {spec.name!r}: search_space"
    for key, param in spec.search_space.items():
        if key not in spec.options:
            raise MedkdError(f"{where}: {key!r} is not one of its options ({', '.join(spec.options) or 'none'})")
        if isinstance(param, LogUniform | Uniform):
            if not (math.isfinite(param.low) and math.isfinite(param.high) and param.low < param.high):
                raise MedkdError(f"{where}: {key!r} needs finite low < high, got {param.low!r} .. {param.high!r}")
            if isinstance(param, LogUniform) and param.low <= 0:
                raise MedkdError(f"{where}: {key!r} is log-uniform, so its low end must be > 0, got {param.low!r}")
        elif isinstance(param, Choice):
            if not param.values:
                raise MedkdError(f"{where}: {key!r} offers no values")
        else:
            raise MedkdError(f"{where}: {key!r} is a {type(param).__name__}, expected LogUniform, Uniform or Choice")
        if not contains(param, spec.options[key]):
            raise MedkdError(f"{where}: {key!r} does not contain the default {spec.options[key]!r}: "
                             "the paper's setting must be one point of the search")
        low, high = spec.option_ranges.get(key, (None, None))
        ends = param.values if isinstance(param, Choice) else (param.low, param.high)
        outside = [v for v in ends if isinstance(v, int | float) and not isinstance(v, bool)
                   and ((low is not None and v < low) or (high is not None and v > high))]
        if outside:
            raise MedkdError(f"{where}: {key!r} reaches {outside[0]!r}, outside the option's range "
                             f"{'-inf' if low is None else f'{low:g}'} .. {'inf' if high is None else f'{high:g}'}")


def describe(param: SearchParam) -> str:
    """A search dimension as pages and ``plugins`` print it."""
    if isinstance(param, LogUniform):
        return f"log-uniform {param.low:g} .. {param.high:g}"
    if isinstance(param, Uniform):
        return f"uniform {param.low:g} .. {param.high:g}"
    return "one of " + ", ".join(str(v) for v in param.values)
