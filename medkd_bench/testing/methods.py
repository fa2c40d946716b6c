"""Conformance checks for distillation-method plugins: a loss the trainer can optimise on both teacher paths.

The method is bound exactly as a matrix cell binds it
(:func:`~medkd_bench.distill.method.bind_method`) to two small real timm CNNs
(random weights, no download), once with the teacher's outputs cached and once
with a teacher forward per batch. Its loss must be a finite scalar, identical
on both paths, and differentiable: gradients reach the student and every
parameter of the method's own modules. First, what registration checks: the
name, ``needs``, the declared layer options and the search space (known options,
valid ranges within the options' own, each default inside).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from medkd_bench.data.prepare import PreparedData
from medkd_bench.distill.method import bind_method
from medkd_bench.errors import MedkdError
from medkd_bench.registry import check_method_declaration
from medkd_bench.runtime.device import Runtime
from medkd_bench.specs import DatasetSpec, MethodSpec, SplitData, StudentSpec, TeacherSpec
from medkd_bench.testing.common import check_identity, require, spec_failure, tiny_workload
from medkd_bench.train.predict import teacher_soft_targets

#: (timm model, its stride-16 layer): the student and teacher methods are checked with.
METHOD_PROBE_MODELS = (("resnet10t", "layer3"), ("resnet14t", "layer3"))


def _probe_data(num_classes: int, img_size: int, n: int = 8) -> PreparedData:
    generator = torch.Generator().manual_seed(0)
    split = SplitData(torch.randint(0, 256, (n, 1, img_size, img_size), dtype=torch.uint8, generator=generator),
                      torch.arange(n) % num_classes)
    spec = DatasetSpec(name="probe", classes=tuple(f"c{k}" for k in range(num_classes)), load=lambda *a: split,
                       img_size=img_size)
    return PreparedData(spec, img_size, {"train": split, "val": split, "test": split}, mean=0.5, std=0.25)


def _probe_spec(cls: type, model_name: str, layer: str) -> Any:
    import timm

    from medkd_bench.models.target_layers import last_module

    return cls(name=f"probe-{model_name}", build=lambda classes, size: timm.create_model(
        model_name, pretrained=False, num_classes=classes), target_layers=last_module(layer))


def check_method_spec(spec: MethodSpec, img_size: int = 32, num_classes: int = 3) -> None:
    """Assert that a :class:`MethodSpec` gives a finite, differentiable loss on the cached and per-batch paths."""
    require(isinstance(spec, MethodSpec), spec, f"expected a MethodSpec, got {type(spec).__name__}")
    check_identity(spec)
    require(callable(spec.build), spec, "build must be callable as build(context) -> torch.nn.Module")
    try:  # what registration checks: needs, layer options, the search space (ranges, default inside)
        check_method_declaration(spec)
    except MedkdError as exc:
        raise AssertionError(str(exc)) from None
    runtime = Runtime(torch.device("cpu"), None)
    data = _probe_data(num_classes, img_size)
    (s_name, s_layer), (t_name, t_layer) = METHOD_PROBE_MODELS
    student_spec = _probe_spec(StudentSpec, s_name, s_layer)
    teacher_spec = _probe_spec(TeacherSpec, t_name, t_layer)
    losses = []
    with tiny_workload():
        torch.manual_seed(0)
        teacher = teacher_spec.build(num_classes, img_size).eval()
        logits = teacher_soft_targets(teacher, data, runtime)
        for budget_mb in (1024.0, 0.0):  # cached, then a teacher forward per batch
            torch.manual_seed(1)
            student = student_spec.build(num_classes, img_size).train()
            try:
                distill = bind_method(spec, dict(spec.options), teacher_logits=logits, data=data,
                                      student_runtime=runtime, epochs=2, steps_per_epoch=2, student=student,
                                      student_spec=student_spec, teacher=teacher, teacher_spec=teacher_spec,
                                      cache_mb=budget_mb)
                idx = torch.arange(4)
                flipped = torch.tensor([False, True, False, True])
                images = data.splits["train"].images[idx].clone()
                images[flipped] = images[flipped].flip(-1)
                x = data.normalise(images)
                loss = distill.loss(student, x, data.splits["train"].labels[idx], idx, flipped, images, step=3)
            except Exception as exc:
                raise spec_failure(spec, f"binding or computing the loss raised {type(exc).__name__}: {exc}") from exc
            path = "per-batch" if budget_mb == 0 else "cached"
            require(spec.needs == () or distill.teacher.path == path, spec,
                    f"expected the {path} teacher path, got {distill.teacher.path}")
            require(isinstance(loss, torch.Tensor) and loss.dim() == 0, spec, "the loss must be a scalar tensor")
            value = float(loss.detach())
            require(math.isfinite(value), spec, f"the loss is {value} on the {path} teacher path")
            require(loss.requires_grad, spec, "the loss does not depend on the student (no gradient)")
            loss.backward()
            student_grads = [p.grad for p in student.parameters() if p.grad is not None]
            require(any(float(g.abs().sum()) > 0 for g in student_grads), spec, "no gradient reaches the student")
            for name, p in distill.loss_module.named_parameters():
                require(p.grad is not None and bool(torch.isfinite(p.grad).all()), spec,
                        f"the method's own parameter {name!r} gets no finite gradient")
            losses.append(value)
    require(abs(losses[0] - losses[1]) <= 1e-4 * max(1.0, abs(losses[0])), spec,
            f"cached and per-batch teacher paths disagree: {losses[0]} vs {losses[1]}")
