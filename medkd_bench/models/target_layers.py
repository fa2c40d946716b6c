"""Target-layer pickers and reshape transforms plugins hand to the explainers.

Every built-in model is explained at stride 16 (the same map grid for teacher
and student); token models need their ``(B, H, W, C)`` outputs turned into
``(B, C, H, W)`` first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn


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


def ofa_head_split(model: nn.Module) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """``(forward_features, forward_head)`` of an OFA MobileNetV3 subnet, split at ``final_expand_layer``.

    The head is global average pooling, ``feature_mix_layer`` (1x1 conv, h-swish)
    and the linear classifier: not linear after pooling, so a class activation map
    (``cat-kd``) applies the whole head at every location. The two halves compose
    to exactly ``MobileNetV3.forward``.
    """

    def forward_features(x: Any) -> Any:
        x = model.first_conv(x)
        for block in model.blocks:
            x = block(x)
        return model.final_expand_layer(x)

    def forward_head(x: Any) -> Any:
        x = model.feature_mix_layer(model.global_avg_pool(x))
        return model.classifier(x.view(x.size(0), -1))

    return forward_features, forward_head
