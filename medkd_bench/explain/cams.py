"""Explainer builders around grad-cam's CAM classes, for plugins.

A CAM object hooks the model's target layers; it is created inside each call
and released by its context manager, so explaining the same model with several
methods never leaves stale hooks behind.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from medkd_bench.specs import ExplainerBuilder, ExplainFn, ReshapeTransform


def _silence_grad_cam_progress() -> None:
    """ScoreCAM draws a tqdm bar per image; medkd-bench shows its own progress."""
    import tqdm
    from pytorch_grad_cam import score_cam

    if not getattr(score_cam.tqdm, "medkd_quiet", False):
        score_cam.tqdm = types.SimpleNamespace(tqdm=functools.partial(tqdm.tqdm, disable=True), medkd_quiet=True)


def grad_cam_builder(class_name: str, **attributes: Any) -> ExplainerBuilder:
    """A builder for ``pytorch_grad_cam.<class_name>`` (e.g. ``"GradCAM"``, ``"ScoreCAM"``).

    ``attributes`` are set on the CAM object, e.g. ``batch_size`` for ScoreCAM's
    masked forward passes.
    """

    def build(model: nn.Module, target_layers: Sequence[nn.Module],
              reshape_transform: ReshapeTransform | None = None) -> ExplainFn:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        _silence_grad_cam_progress()
        cam_class = getattr(pytorch_grad_cam, class_name)

        def explain(images: torch.Tensor, targets: Sequence[int]) -> np.ndarray:
            with cam_class(model=model, target_layers=list(target_layers),
                           reshape_transform=reshape_transform) as cam:
                for key, value in attributes.items():
                    setattr(cam, key, value)
                maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
            return np.asarray(maps, dtype=np.float32)

        return explain

    build.__qualname__ = f"grad_cam_builder({class_name!r})"
    return build
