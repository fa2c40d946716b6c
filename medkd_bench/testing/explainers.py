"""Conformance checks for explainer plugins: maps the panels and agreement metrics can use."""

from __future__ import annotations

import numpy as np
import torch

from medkd_bench.specs import (
    ExplainerSpec,
)
from medkd_bench.testing.common import check_identity, require, spec_failure, tiny_workload

#: The small timm model explainers are checked around (random weights, no download).
EXPLAINER_PROBE_MODEL = ("resnet10t", "layer3")


def check_explainer_spec(spec: ExplainerSpec, img_size: int = 32, num_classes: int = 3) -> None:
    """Assert that an :class:`ExplainerSpec` turns a real model into usable saliency maps.

    The explainer is built around a small timm CNN with random weights and
    must return float ``(N, H, W)`` maps, finite and within ``[0, 1]``, one
    per image, for the requested target classes: the panels overlay them on
    the input and the agreement metrics compare them pixel by pixel.
    """
    import timm

    require(isinstance(spec, ExplainerSpec), spec, f"expected an ExplainerSpec, got {type(spec).__name__}")
    check_identity(spec)
    require(callable(spec.build), spec, "build must be callable as build(model, target_layers, reshape_transform)")
    model_name, layer = EXPLAINER_PROBE_MODEL
    with tiny_workload():
        model = timm.create_model(model_name, pretrained=False, num_classes=num_classes).eval()
        images = torch.randn(2, 3, img_size, img_size)
        targets = [0, num_classes - 1]
        try:
            explain = spec.build(model, [model.get_submodule(layer)], None)
            maps = np.asarray(explain(images, targets))
        except Exception as exc:
            raise spec_failure(spec, f"explaining timm {model_name} at {layer} raised {type(exc).__name__}: {exc}") from exc
    require(maps.shape == (2, img_size, img_size), spec,
             f"maps must be (N, H, W) = (2, {img_size}, {img_size}), got {maps.shape}")
    require(np.issubdtype(maps.dtype, np.floating), spec, f"maps must be floats, got {maps.dtype}")
    require(bool(np.isfinite(maps).all()), spec, "maps contain NaN or inf")
    low, high = float(maps.min()), float(maps.max())
    require(low >= -1e-6 and high <= 1.0 + 1e-6, spec, f"maps must be scaled to [0, 1], got [{low:.3g}, {high:.3g}]")
