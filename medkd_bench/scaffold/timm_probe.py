"""Choosing a timm model and its target layer for a scaffolded teacher or student, on a real forward pass."""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterator
from typing import Any

from medkd_bench.errors import MedkdError
from medkd_bench.scaffold.request import DEFAULT_TIMM_MODELS, TimmChoice

#: The image size of the smoke runs and of the conformance kit: a scaffolded model must run at it.
PROBE_SIZE = 32


TIMM_CITATION = "Wightman, PyTorch Image Models, 2019"


#: Papers of the architectures the defaults (and their close relatives) come from.
ARCHITECTURE_CITATIONS = (
    (re.compile(r"^resnet\d"), "He et al., Deep Residual Learning for Image Recognition, CVPR 2016, arXiv:1512.03385"),
    (re.compile(r"^mobilenetv3_"), "Howard et al., Searching for MobileNetV3, ICCV 2019, arXiv:1905.02244"),
    (re.compile(r"^efficientnet_b\d"), "Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional "
                                       "Neural Networks, ICML 2019, arXiv:1905.11946"),
    (re.compile(r"^convnext_"), "Liu et al., A ConvNet for the 2020s, CVPR 2022, arXiv:2201.03545"),
)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """A probe is one 32 px image: extra intra-op threads only add contention."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _feature_stages(model: Any) -> list[dict[str, Any]]:
    """timm's own list of feature stages (``feature_info``): module path and channel count."""
    info = getattr(model, "feature_info", None)
    try:
        return [dict(entry) for entry in info or [] if isinstance(entry, dict) and "module" in entry]
    except TypeError:
        return []


def _check_timm_name(model_name: str) -> None:
    import timm

    if timm.is_model(model_name):
        return
    close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models()"
    raise MedkdError(f"--timm-model {model_name!r}: timm has no such model ({hint})")


def _target_module(model: Any, model_name: str, path: str) -> Any:
    try:
        return model.get_submodule(path)
    except AttributeError:
        children = ", ".join(name for name, _ in model.named_children())
        raise MedkdError(f"--target-layer {path!r}: timm model {model_name!r} has no such submodule "
                         f"(top level: {children})") from None


def _probe(model_name: str, target_layer: str | None) -> tuple[Any, bool, str, Any]:
    """Build the model with random weights and run one 32 px image through it.

    Convolutional models take any size; models with position-dependent parts
    (ViT, Swin) need ``img_size`` at build time, which is retried when the
    plain build fails on the probe. Returns the model, whether it needed
    ``img_size``, the target-layer path and that layer's output.
    """
    import timm
    import torch

    failure: Exception | None = None
    for accepts_img_size in (False, True):
        extra = {"img_size": PROBE_SIZE} if accepts_img_size else {}
        try:
            model = timm.create_model(model_name, pretrained=False, num_classes=2, **extra).eval()
        except Exception as exc:
            failure = failure or exc
            continue
        path = target_layer or _default_target(model, model_name)
        outputs: list[Any] = []
        handle = _target_module(model, model_name, path).register_forward_hook(
            lambda _module, _inputs, output, sink=outputs: sink.append(output))
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE))
        except Exception as exc:
            failure = failure or exc
            continue
        finally:
            handle.remove()
        return model, accepts_img_size, path, outputs[0] if outputs else None
    reason = (str(failure).strip().splitlines() or [""])[0]  # the CLI's errors are one line
    raise MedkdError(f"--timm-model {model_name!r} does not run on {PROBE_SIZE}x{PROBE_SIZE} images "
                     f"({type(failure).__name__}: {reason}); medkd-bench's tests and smoke runs use {PROBE_SIZE} px")


def _default_target(model: Any, model_name: str) -> str:
    stages = _feature_stages(model)
    if not stages:
        raise MedkdError(f"timm model {model_name!r} lists no feature stages: pass --target-layer PATH "
                         "(the dotted path of its last convolutional stage)")
    return str(stages[-1]["module"])


def choose_timm_model(kind: str, model_name: str | None, target_layer: str | None) -> TimmChoice:
    """Resolve ``--timm-model``/``--target-layer`` into a model the generated spec can rely on.

    The default target layer is the last stage of timm's ``feature_info``:
    the deepest feature map that still has spatial extent, which is where
    CAM methods look. Its output must be a 4-D map; channels-last stages
    (Swin) get grad-cam's reshape transform.
    """
    model_name = model_name or DEFAULT_TIMM_MODELS[kind]
    _check_timm_name(model_name)
    with _one_thread():
        model, accepts_img_size, path, output = _probe(model_name, target_layer)
    shape = tuple(output.shape) if hasattr(output, "shape") else None
    if shape is None or len(shape) != 4:
        raise MedkdError(f"target layer {path!r} of timm model {model_name!r} emits {shape or type(output).__name__}, "
                         "not an (N, C, H, W) feature map: pick a convolutional stage with --target-layer")
    channels = {s["module"]: s.get("num_chs") for s in _feature_stages(model)}.get(path)
    nhwc = channels is not None and shape[1] != channels and shape[3] == channels
    reason = "chosen with --target-layer" if target_layer else "the deepest stage in timm's feature_info"
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    return TimmChoice(model_name, path, reason, accepts_img_size, nhwc, params_m)


def timm_citation(model_name: str) -> str:
    for pattern, paper in ARCHITECTURE_CITATIONS:
        if pattern.match(model_name):
            return f"{paper}; implementation: timm {model_name} ({TIMM_CITATION})"
    return f"timm {model_name} ({TIMM_CITATION}); the architecture's paper: add it here"
