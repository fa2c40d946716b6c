"""``--tuned-option ARM.KEY=VALUE``: the options an earlier ``--tune`` run chose, given back to reproduce it.

A tuned page's reproduce command and experiment file carry one flag (or one
``[tuned-options."ARM"]`` table entry) per chosen option, so a rerun without
``--tune`` gives the same final cells (the same config hashes). Each is checked
against the registry and the arm's search space before any work: one line
naming the flag.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from medkd_bench.errors import MedkdError
from medkd_bench.registry import Registry
from medkd_bench.specs import Choice, SearchParam
from medkd_bench.tune.space import Arm, arm_space

FLAG = "--tuned-option"


def parse_arm(key: str) -> Arm:
    """``dataset/teacher/student/method`` (teacher empty for the label-only baseline) as an :class:`Arm`."""
    parts = key.split("/")
    if len(parts) != 4 or not all(parts[i] for i in (0, 2, 3)):
        raise ValueError(f"arm {key!r} is not DATASET/TEACHER/STUDENT/METHOD (TEACHER empty for label-only)")
    dataset, teacher, student, method = parts
    if (method == "label-only") != (teacher == ""):
        raise ValueError(f"arm {key!r}: the label-only baseline has no teacher, a method has one")
    return Arm(dataset, student, method, teacher)


def space_of(arm: Arm, registry: Registry) -> dict[str, SearchParam]:
    """The arm's search space, every name in it checked against the registry."""
    registry.get("dataset", arm.dataset)
    student = registry.get("student", arm.student)
    if not arm.teacher:
        return arm_space(student.train, None)
    registry.get("teacher", arm.teacher)
    return arm_space(student.train, registry.get("method", arm.method))


def typed_value(param: SearchParam, text: str) -> Any:
    """``text`` as a point of ``param``: one of a choice's values, or a finite number inside the range."""
    if isinstance(param, Choice):
        for value in param.values:
            if text == str(value) or (isinstance(value, int | float) and _number(text) == value):
                return value
        raise ValueError(f"{text} is not one of {', '.join(map(str, param.values))}")
    value = _number(text)
    if value is None or not param.low <= value <= param.high:
        raise ValueError(f"{text} is not a number in {param.low:g} .. {param.high:g}")
    return value


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_tuned_options(values: Sequence[str], registry: Registry) -> dict[str, dict[str, Any]]:
    """``RunOptions.tuned`` from ``ARM.KEY=VALUE`` flags; bad input is one line naming the flag."""
    out: dict[str, dict[str, Any]] = {}
    for given in values:
        head, eq, text = given.partition("=")
        *path, last = head.split("/", 3)
        method, dot, key = last.partition(".")  # KEY may hold a dot itself (train.lr): the method name has none
        arm_key = "/".join([*path, method])
        try:
            if not (eq and dot and key):
                raise ValueError("expected DATASET/TEACHER/STUDENT/METHOD.KEY=VALUE")
            arm = parse_arm(arm_key)
            space = space_of(arm, registry)
            if key not in space:
                raise ValueError(f"{key!r} is not tuned for this arm (tuned: {', '.join(space)})")
            out.setdefault(arm.key, {})[key] = typed_value(space[key], text)
        except (ValueError, MedkdError) as exc:
            raise MedkdError(f"{FLAG} {given}: {exc}") from None
    return out
