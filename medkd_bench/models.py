"""Helpers for plugins that wrap timm models, and for opt-in pretrained weights.

Nothing here downloads: :func:`timm_builder` always builds with random
weights; :func:`timm_pretrained_builder` asks timm to load its own ImageNet
weights and is only called when the user passes ``--pretrained``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .specs import ModelBuilder


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


def last_module(path: str) -> Callable[[nn.Module], list[nn.Module]]:
    """Target-layer picker from a dotted attribute path such as ``"features.34"``."""

    def pick(model: nn.Module) -> list[nn.Module]:
        return [model.get_submodule(path)]

    pick.__qualname__ = f"last_module({path!r})"
    return pick


def nhwc_to_nchw(tensor: Any) -> Any:
    """grad-cam reshape transform for models whose stages emit channels-last maps (Swin)."""
    return tensor.permute(0, 3, 1, 2)


def ofa_stride16_block(model: nn.Module) -> list[nn.Module]:
    """CAM target for OFA MobileNetV3 subnets: the last block before the final stride-2 stage.

    medkd-bench explains every built-in model at stride 16 (4x4 maps at 64 px,
    14x14 at 224 px), so teacher and student maps start from the same grid and
    lesions a few pixels wide are not lost in a 2x2 map. For OFA-595 this block
    has 136 channels: Score-CAM's cost per image is one forward pass per channel.
    """
    blocks = list(model.blocks)
    starts = [i for i, b in enumerate(blocks) if getattr(getattr(b, "conv", None), "stride", 1) == 2]
    if not starts or starts[-1] == 0:
        return [blocks[-1]]
    return [blocks[starts[-1] - 1]]
