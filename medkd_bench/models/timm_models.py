"""Builders for plugins that wrap timm models, and for opt-in pretrained weights.

Nothing here downloads: :func:`timm_builder` always builds with random
weights; :func:`timm_pretrained_builder` asks timm to load its own ImageNet
weights and is only called when the user passes ``--pretrained``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from medkd_bench.specs import ModelBuilder


def _timm_kwargs(accepts_img_size: bool, img_size: int, extra: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(extra)
    if accepts_img_size:
        kwargs["img_size"] = img_size
    return kwargs


def timm_builder(model_name: str, accepts_img_size: bool = False, **extra: Any) -> ModelBuilder:
    """A builder for timm's ``model_name`` with a fresh head of ``num_classes``.

    ``accepts_img_size`` is for models whose position-dependent parts (window
    sizes, position embeddings) are sized from the input, such as Swin or
    Visformer; convolutional models take any size as they are.
    """

    def build(num_classes: int, img_size: int) -> nn.Module:
        import timm

        return timm.create_model(
            model_name, pretrained=False, num_classes=num_classes,
            **_timm_kwargs(accepts_img_size, img_size, extra),
        )

    build.__qualname__ = f"timm_builder({model_name!r})"
    return build


def timm_pretrained_builder(model_name: str, accepts_img_size: bool = False, **extra: Any) -> ModelBuilder:
    """Like :func:`timm_builder` but with timm's own ImageNet weights (needs a network)."""

    def build(num_classes: int, img_size: int) -> nn.Module:
        import timm

        return timm.create_model(
            model_name, pretrained=True, num_classes=num_classes,
            **_timm_kwargs(accepts_img_size, img_size, extra),
        )

    return build
