"""Conformance checks for teacher and student plugins: build, forward, CAM target layer, cost."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from medkd_bench.specs import (
    ExplainerSpec,
    ModelSpec,
    StudentSpec,
    TeacherSpec,
    TrainSettings,
)
from medkd_bench.testing.common import check_identity, require, spec_failure, tiny_workload


def _check_train_settings(spec: ModelSpec) -> None:
    """The trainer divides by epochs and batch size and needs at least two images per batch for batch norm."""
    t = spec.train
    require(isinstance(t, TrainSettings), spec, f"train must be a TrainSettings (got {type(t).__name__})")
    require(t.epochs >= 1, spec, f"train.epochs must be >= 1 (got {t.epochs})")
    require(t.batch_size >= 2, spec, f"train.batch_size must be >= 2 for batch norm (got {t.batch_size})")
    require(t.lr > 0 and math.isfinite(t.lr), spec, f"train.lr must be a positive number (got {t.lr})")
    require(t.warmup_epochs >= 0, spec, f"train.warmup_epochs must be >= 0 (got {t.warmup_epochs})")
    require(t.patience >= 1, spec, f"train.patience must be >= 1 (got {t.patience})")
    require(t.patience_steps >= 0, spec, f"train.patience_steps must be >= 0 (got {t.patience_steps})")
    require(t.min_epochs >= 0, spec, f"train.min_epochs must be >= 0 (got {t.min_epochs})")
    require(isinstance(t.min_steps_per_epoch, int) and t.min_steps_per_epoch >= 0, spec,
            f"train.min_steps_per_epoch must be an integer >= 0 (got {t.min_steps_per_epoch!r})")
    require(t.min_delta >= 0 and math.isfinite(t.min_delta), spec,
            f"train.min_delta must be a number >= 0 (got {t.min_delta})")
    require(0 < t.cooldown_fraction <= 1, spec, f"train.cooldown_fraction must be in (0, 1] (got {t.cooldown_fraction})")


def _build(spec: ModelSpec, num_classes: int, img_size: int) -> nn.Module:
    try:
        model = spec.build(num_classes, img_size)
    except Exception as exc:
        raise spec_failure(spec, f"build({num_classes}, {img_size}) raised {type(exc).__name__}: {exc}") from exc
    require(isinstance(model, nn.Module), spec,
             f"build({num_classes}, {img_size}) must return an nn.Module (got {type(model).__name__})")
    return model


def _check_forward(spec: ModelSpec, model: nn.Module, num_classes: int, img_size: int) -> None:
    """Logits of shape (N, num_classes) in eval and in train mode: the trainer's losses and scoring assume exactly that.

    Both modes, as a run checks both (:mod:`medkd_bench.train.shapes`): a head
    that differs between them would fail every cell of the model.
    """
    x = torch.randn(2, 3, img_size, img_size)
    for mode in ("eval", "train"):
        model.train(mode == "train")
        how = "" if mode == "eval" else " in train mode"
        try:
            with torch.no_grad():
                out = model(x)
        except Exception as exc:
            raise spec_failure(spec, f"forward{how} on (2, 3, {img_size}, {img_size}) raised "
                                     f"{type(exc).__name__}: {exc}") from exc
        require(isinstance(out, torch.Tensor), spec,
                 f"forward{how} must return a logits tensor (got {type(out).__name__}); unwrap tuples or dicts")
        require(tuple(out.shape) == (2, num_classes), spec,
                 f"forward{how} on (2, 3, {img_size}, {img_size}) must give logits (2, {num_classes}), "
                 f"got {tuple(out.shape)}; build(num_classes, img_size) must size the head from num_classes")
        require(bool(torch.isfinite(out).all()), spec, f"forward{how} at {img_size} px gives non-finite logits")
    model.eval()


def _target_layers(spec: ModelSpec, model: nn.Module) -> list[nn.Module]:
    """The layers the explainer hooks must exist and belong to the model that was built."""
    try:
        layers = list(spec.target_layers(model))
    except Exception as exc:
        raise spec_failure(spec, f"target_layers(model) raised {type(exc).__name__}: {exc} "
                          "(does the declared target-layer path exist in the built model?)") from exc
    require(bool(layers), spec, "target_layers(model) returned no layer")
    own = {id(m) for m in model.modules()}
    for layer in layers:
        require(isinstance(layer, nn.Module) and id(layer) in own, spec,
                 "target_layers(model) must return submodules of the model it is given")
    return layers


def _check_cam(spec: ModelSpec, model: nn.Module, num_classes: int, img_size: int,
               explainer: ExplainerSpec | None) -> None:
    """The target layer drives a real CAM to a finite (N, H, W) map.

    grad-cam's GradCAM exercises exactly what Score-CAM relies on (the hooked
    activations, the reshape transform, upsampling to the input) at a
    fraction of Score-CAM's one forward pass per channel; pass ``explainer``
    to check with a registered explainer instead.
    """
    layers = _target_layers(spec, model)
    model.eval()
    x = torch.randn(1, 3, img_size, img_size)
    target = num_classes - 1
    try:
        if explainer is None:
            from pytorch_grad_cam import GradCAM
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

            # Only the gradient with respect to the activations is needed: frozen weights and an
            # input that requires grad skip the weight gradients (140M of them for VGG19).
            model.requires_grad_(False)
            x.requires_grad_(True)
            with GradCAM(model=model, target_layers=layers, reshape_transform=spec.reshape_transform) as cam:
                maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])
        else:
            maps = explainer.build(model, layers, spec.reshape_transform)(x, [target])
    except Exception as exc:
        raise spec_failure(spec, f"CAM at the declared target layer failed at {img_size} px: {type(exc).__name__}: "
                          f"{exc} (token models need a reshape_transform to (N, C, H, W))") from exc
    maps = np.asarray(maps)
    require(maps.shape == (1, img_size, img_size), spec,
             f"CAM map at the target layer must be (1, {img_size}, {img_size}), got {maps.shape}")
    require(bool(np.isfinite(maps).all()), spec, f"CAM map at the target layer is not finite at {img_size} px")


def _check_cost(spec: ModelSpec, model: nn.Module, img_size: int) -> None:
    """Parameters and fvcore MACs are leaderboard columns: both must be countable and positive."""
    from medkd_bench.evaluate.cost import count_gmacs, count_params

    params = count_params(model)
    require(params > 0, spec, "the model has no parameters")
    try:
        gmacs = count_gmacs(model, img_size)
    except Exception as exc:
        raise spec_failure(spec, f"fvcore cannot count FLOPs at {img_size} px: {type(exc).__name__}: {exc}") from exc
    require(math.isfinite(gmacs) and gmacs > 0, spec, f"fvcore counts {gmacs} GMACs at {img_size} px")


def _check_model_spec(spec: ModelSpec, cls: type, num_classes: Sequence[int], img_sizes: Sequence[int],
                      explainer: ExplainerSpec | None) -> None:
    require(isinstance(spec, cls), spec, f"expected a {cls.__name__}, got {type(spec).__name__}")
    check_identity(spec)
    require(callable(spec.build), spec, "build must be callable as build(num_classes, img_size)")
    require(callable(spec.target_layers), spec, "target_layers must be callable as target_layers(model)")
    require(spec.reshape_transform is None or callable(spec.reshape_transform), spec,
             "reshape_transform must be None or callable")
    require(spec.build_pretrained is None or callable(spec.build_pretrained), spec,
             "build_pretrained must be None or callable (it is never called here: it downloads)")
    _check_train_settings(spec)
    require(bool(num_classes) and bool(img_sizes), spec, "check at least one class count and one image size")
    with tiny_workload():
        for i, size in enumerate(img_sizes):
            for j, classes in enumerate(num_classes):
                model = _build(spec, classes, size)
                _check_forward(spec, model, classes, size)
                if j == 0:  # the head does not change where the CAM looks: once per size is enough
                    _check_cam(spec, model, classes, size, explainer)
                if i == 0 and j == 0:
                    _check_cost(spec, model, size)
                del model


def check_teacher_spec(spec: TeacherSpec, num_classes: Sequence[int] = (2, 3),
                       img_sizes: Sequence[int] = (32, 64), explainer: ExplainerSpec | None = None) -> None:
    """Assert that a :class:`TeacherSpec` meets the contract the matrix relies on.

    For every image size and class count the model builds and gives
    ``(N, num_classes)`` finite logits; the declared target layer drives a
    CAM to a finite ``(N, H, W)`` map at every size; parameters and FLOPs are
    countable; the name is a slug, the citation is present and the training
    settings are sane. Big models may pass ``num_classes=(2,)`` and
    ``img_sizes=(32,)`` to keep the check fast.
    """
    _check_model_spec(spec, TeacherSpec, num_classes, img_sizes, explainer)


def check_student_spec(spec: StudentSpec, num_classes: Sequence[int] = (2, 3),
                       img_sizes: Sequence[int] = (32, 64), explainer: ExplainerSpec | None = None) -> None:
    """Assert that a :class:`StudentSpec` meets the contract (the same rules as :func:`check_teacher_spec`)."""
    _check_model_spec(spec, StudentSpec, num_classes, img_sizes, explainer)
