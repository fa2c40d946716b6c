"""A distillation method bound to one cell: its loss module, the student's taps and the teacher's side."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from medkd_bench.data.prepare import PreparedData
from medkd_bench.distill.taps import OutputTaps, layer_choices
from medkd_bench.distill.teacher import DEFAULT_CACHE_MB, TeacherSide
from medkd_bench.errors import MedkdError
from medkd_bench.runtime.device import Runtime
from medkd_bench.specs import MethodContext, MethodSpec, ModelOutputs, ModelSpec
from medkd_bench.train.shapes import require_logits


def method_options(spec: MethodSpec, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The spec's defaults with ``given`` (already parsed and checked) on top, in the defaults' key order."""
    return {**spec.options, **(given or {})}


class Distillation:
    """What a distilled cell's training step adds: the method's loss on student and teacher outputs.

    The loss module (``spec.build(context)``) may own parameters (a FitNets
    regressor); :meth:`parameters` hands them to the optimiser with the
    student's, and they are dropped with this object after training.
    """

    def __init__(self, spec: MethodSpec, loss: nn.Module, student_taps: OutputTaps | None, teacher: TeacherSide,
                 steps_per_epoch: int):
        self.spec, self.loss_module, self.student_taps, self.teacher = spec, loss, student_taps, teacher
        self.steps_per_epoch = max(1, steps_per_epoch)

    def parameters(self) -> list[nn.Parameter]:
        return [p for p in self.loss_module.parameters() if p.requires_grad]

    def train(self) -> None:
        self.loss_module.train()

    def loss(self, model: nn.Module, x: torch.Tensor, targets: torch.Tensor, idx: torch.Tensor,
             flipped: torch.Tensor, images: torch.Tensor, step: int) -> torch.Tensor:
        """The batch's loss; ``step`` counts optimiser steps so far (the epoch fraction is ``step / steps``)."""
        student = self.student_taps(x) if self.student_taps is not None else ModelOutputs(model(x))
        require_logits(student.logits, len(x), self.teacher.data.num_classes, "logits in training")
        teacher = self.teacher.outputs(idx, flipped, images)
        loss = self.loss_module(student, teacher, targets, step / self.steps_per_epoch)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise MedkdError(f"method {self.spec.name!r}: the loss module returned "
                             f"{type(loss).__name__ if not isinstance(loss, torch.Tensor) else tuple(loss.shape)}, "
                             "expected a scalar tensor")
        return loss


def _shapes(outputs: ModelOutputs) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...] | None]:
    features = tuple(tuple(f.shape[1:]) for f in outputs.features)
    maps = None if outputs.class_maps is None else tuple(outputs.class_maps.shape[1:])
    return features, maps


def bind_method(spec: MethodSpec, options: Mapping[str, Any], *, teacher_logits: torch.Tensor, data: PreparedData,
                student_runtime: Runtime, epochs: int, steps_per_epoch: int, student: nn.Module | None = None,
                student_spec: ModelSpec | None = None, teacher: nn.Module | None = None,
                teacher_spec: ModelSpec | None = None, teacher_runtime: Runtime | None = None,
                cache_mb: float = DEFAULT_CACHE_MB) -> Distillation:
    """Build ``spec``'s loss for one cell: probe the shapes its modules need, set up both models' taps.

    A logits-only method touches neither model here: the run's cached soft
    targets (``(2, N, classes)``, plain and flipped) serve it, and the student's
    RNG stream is the same as without it. The models, their specs and the
    teacher's runtime are needed only by methods with ``needs``.
    """
    needs = tuple(spec.needs)
    who = f"method {spec.name!r}"
    student_taps = teacher_taps = None
    context_shapes: dict[str, Any] = {}
    teacher_runtime = teacher_runtime or student_runtime
    if needs:
        if student is None or student_spec is None or teacher is None or teacher_spec is None:
            raise MedkdError(f"{who} needs the student and teacher models and their specs")
        layers = layer_choices(spec, options)
        whos = {role: who if option is None else f"{who} (option {option})" for role, (option, _) in layers.items()}
        student_taps = OutputTaps(student, student_spec, needs, layers["student"][1], whos["student"])
        teacher_taps = OutputTaps(teacher, teacher_spec, needs, layers["teacher"][1], whos["teacher"])
        probe = data.splits["train"].images[:2]
        was_training = student.training
        student.eval()
        with torch.no_grad(), student_runtime.autocast():
            s_out = student_taps(student_runtime.to_model(data.normalise(probe, student_runtime.device)))
        student.train(was_training)
        teacher.eval()
        with torch.no_grad(), teacher_runtime.autocast():
            t_out = teacher_taps(teacher_runtime.to_model(data.normalise(probe, teacher_runtime.device)))
        (s_feat, s_maps), (t_feat, t_maps) = _shapes(s_out), _shapes(t_out)
        context_shapes = {"student_features": s_feat, "teacher_features": t_feat,
                          "student_class_maps": s_maps, "teacher_class_maps": t_maps}
    side = TeacherSide(teacher_logits, teacher if needs else None, teacher_taps, data, teacher_runtime,
                       student_runtime.device, cache_mb)
    context = MethodContext(options=dict(options), num_classes=data.num_classes, epochs=epochs,
                            steps_per_epoch=steps_per_epoch, **context_shapes)
    try:
        loss = spec.build(context)
    except MedkdError:
        raise
    except Exception as exc:
        raise MedkdError(f"{who}: build() failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(loss, nn.Module):
        raise MedkdError(f"{who}: build() returned {type(loss).__name__}, expected torch.nn.Module")
    return Distillation(spec, loss.to(student_runtime.device), student_taps, side, steps_per_epoch)
