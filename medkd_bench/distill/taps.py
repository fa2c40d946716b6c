"""Running a model and collecting what a distillation method needs: feature maps and class activation maps.

Feature maps come from forward hooks on the model's feature layers (its
declared target layers by default: stride 16 for every built-in model), turned
into ``(N, C, H, W)`` by the spec's reshape transform. Class activation maps
apply the model's head at every location of its last feature map and subtract
the head's output for an all-zero location: for a linear head after global
average pooling that is exactly Zhou et al.'s CAM ``W f`` without the bias, as
CAT-KD's authors compute it (a bias-free 1x1 convolution with the classifier's
weights, GzyAftermath/CAT-KD mdistiller/models/cifar/resnet.py line 245 and
tools/train.py lines 133-139, which copy ``fc.weight`` and drop ``fc.bias``).
For a non-linear head (OFA's pooling, 1x1 conv, h-swish, linear; VGG's conv
MLP) it is the head's own per-location verdict relative to a location without
evidence; for OFA-595, whose 1x1 conv has no bias, that constant is again
exactly the classifier's bias.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from medkd_bench.errors import MedkdError
from medkd_bench.specs import LAYER_ROLES, TARGET_LAYERS, MethodSpec, ModelOutputs, ModelSpec

Forward = Callable[[torch.Tensor], torch.Tensor]


def layer_choices(spec: MethodSpec, options: Mapping[str, Any]) -> dict[str, tuple[str | None, str]]:
    """``role -> (option, layer)``: where the method's declared layer options tap each model.

    A role without a layer option (``option`` None) is tapped at its target layers (:data:`TARGET_LAYERS`).
    """
    choices: dict[str, tuple[str | None, str]] = {}
    for role in LAYER_ROLES:
        option = spec.layer_option(role)
        choices[role] = (option, TARGET_LAYERS if option is None else str(options.get(option, TARGET_LAYERS)))
    return choices


def feature_layers(model: nn.Module, spec: ModelSpec, layer: str, who: str) -> list[nn.Module]:
    """The modules whose outputs are a model's feature maps: its target layers, or a named submodule.

    ``who`` names the method and option in the error (``method 'fitnet' (option student_layer)``).
    """
    if layer == TARGET_LAYERS:
        return list(spec.target_layers(model))
    try:
        return [model.get_submodule(layer)]
    except AttributeError:
        raise MedkdError(f"{who}: {spec.name!r} has no layer {layer!r}") from None


def head_split(model: nn.Module, spec: ModelSpec, who: str) -> tuple[Forward, Forward]:
    """``(forward_features, forward_head)`` of a model: the spec's ``head_split`` or timm's own pair."""
    if spec.head_split is not None:
        return spec.head_split(model)
    features, head = getattr(model, "forward_features", None), getattr(model, "forward_head", None)
    if not (callable(features) and callable(head)):
        raise MedkdError(f"{who}: {spec.name!r} has neither a head_split in its spec nor "
                         "forward_features/forward_head methods, so its class maps cannot be computed")
    return features, head


def head_at_locations(head: Forward, features: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``(N, classes, H, W)``: ``head`` applied to each location's feature vector as a 1x1 map, minus ``head(0)``.

    ``features`` is ``(N, C, H, W)``, or ``(N, H, W, C)`` when ``channels_last``
    (timm's ``output_fmt == "NHWC"``, e.g. Swin); the head is given the layout it
    expects. An all-zero vector rides along in the same call and its output is
    subtracted: for a linear head that removes exactly the bias (the CAM is
    ``W f``, as in CAT-KD's code), so the constant does not dilute the pooled,
    normalised maps and the bias gets no gradient from them. One call rather
    than two keeps a head with batch norm in training mode from seeing a batch
    of one.
    """
    if channels_last:
        n, h, w, c = features.shape
        vectors = features.reshape(n * h * w, 1, 1, c)
    else:
        n, c, h, w = features.shape
        vectors = features.permute(0, 2, 3, 1).reshape(n * h * w, c, 1, 1)
    logits = head(torch.cat([vectors, vectors.new_zeros((1, *vectors.shape[1:]))]))
    maps = logits[:-1] - logits[-1:]
    return maps.reshape(n, h, w, -1).permute(0, 3, 1, 2)


class OutputTaps:
    """Calls a model and returns its :class:`ModelOutputs` with what ``needs`` asks for."""

    def __init__(self, model: nn.Module, spec: ModelSpec, needs: Sequence[str], layer: str, who: str):
        self.model = model
        self.layers = feature_layers(model, spec, layer, who) if "features" in needs else []
        self.transform = spec.reshape_transform
        self.split = head_split(model, spec, who) if "class_maps" in needs else None
        self.channels_last = getattr(model, "output_fmt", "NCHW") == "NHWC"

    def __call__(self, x: torch.Tensor) -> ModelOutputs:
        captured: dict[int, torch.Tensor] = {}
        handles = [layer.register_forward_hook(lambda _m, _i, out, k=k: captured.__setitem__(k, out))
                   for k, layer in enumerate(self.layers)]
        try:
            class_maps = None
            if self.split is not None:
                forward_features, forward_head = self.split
                last = forward_features(x)
                logits = forward_head(last)
                class_maps = head_at_locations(forward_head, last, self.channels_last)
            else:
                logits = self.model(x)
        finally:
            for handle in handles:
                handle.remove()
        missing = [k for k in range(len(self.layers)) if k not in captured]
        if missing:
            raise MedkdError(f"feature layer {missing[0]} of the model was not called in its forward pass")
        features = tuple(self._nchw(captured[k]) for k in range(len(self.layers)))
        return ModelOutputs(logits, features, class_maps)

    def _nchw(self, out: torch.Tensor) -> torch.Tensor:
        if isinstance(out, tuple | list):
            out = out[0]
        return self.transform(out) if self.transform is not None else out
