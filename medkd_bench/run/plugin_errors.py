"""A plugin's model failing inside the host, as one line that names the plugin.

Shape checks run deep in training and prediction, and a builder may return
anything: these turn both into a :class:`~medkd_bench.errors.MedkdError` naming
the teacher or student, instead of a traceback far from the plugin's code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from torch import nn

from medkd_bench.errors import MedkdError
from medkd_bench.specs import ModelSpec, TeacherSpec
from medkd_bench.train.shapes import OutputShapeError


@contextlib.contextmanager
def outputs_named(spec: ModelSpec) -> Iterator[None]:
    """A model output that does not fit the dataset, as one line naming the model.

    The shape checks run deep in training and prediction, which know the
    dataset but not which plugin's model they run; this adds its name (once).
    """
    try:
        yield
    except OutputShapeError as exc:
        if exc.model is not None:
            raise
        raise OutputShapeError(f"{_kind(spec)} {spec.name!r}: {exc}", model=spec.name) from None


def _kind(spec: ModelSpec) -> str:
    return "teacher" if isinstance(spec, TeacherSpec) else "student"


def built(spec: ModelSpec, model: Any, builder: str = "build()") -> nn.Module:
    """A plugin builder's result, checked: a misbehaving plugin is named, not a later ``AttributeError``."""
    if not isinstance(model, nn.Module):
        raise MedkdError(f"{_kind(spec)} {spec.name!r}: {builder} returned {type(model).__name__}, expected torch.nn.Module")
    return model

