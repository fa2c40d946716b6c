"""Explainer builders around grad-cam's CAM classes, for plugins.

A CAM object hooks the model's target layers; it is created inside each call
and released by its context manager, so explaining the same model with several
methods never leaves stale hooks behind.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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


def grad_cam_builder(class_name: str, gpu_batch_size: int | None = None, **attributes: Any) -> ExplainerBuilder:
    """A builder for ``pytorch_grad_cam.<class_name>`` (e.g. ``"GradCAM"``, ``"ScoreCAM"``).

    ``attributes`` are set on the CAM object, e.g. ``batch_size`` for ScoreCAM's
    masked forward passes. ``gpu_batch_size`` replaces ``batch_size`` for images
    on a GPU, where one large batch costs about as much as one small one: with
    a batch at least the target layer's channel count, Score-CAM makes one
    masked forward pass per image instead of several. Out of memory, the batch
    is halved (down to ``batch_size``) and the call repeated.
    """

    def build(model: nn.Module, target_layers: Sequence[nn.Module],
              reshape_transform: ReshapeTransform | None = None) -> ExplainFn:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        _silence_grad_cam_progress()
        cam_class = getattr(pytorch_grad_cam, class_name)

        def explain_with(images: torch.Tensor, targets: Sequence[int], batch: dict[str, Any]) -> np.ndarray:
            with cam_class(model=model, target_layers=list(target_layers),
                           reshape_transform=reshape_transform) as cam:
                for key, value in {**attributes, **batch}.items():
                    setattr(cam, key, value)
                with backward_above_the_target_layer_only(cam, model, target_layers):
                    maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
            return np.asarray(maps, dtype=np.float32)

        def explain(images: torch.Tensor, targets: Sequence[int]) -> np.ndarray:
            sizes = gpu_batch_sizes(gpu_batch_size, attributes.get("batch_size")) if images.is_cuda else [None]
            return halving_on_oom(lambda size: explain_with(images, targets, {} if size is None else
                                                            {"batch_size": size}), sizes)

        return explain

    build.__qualname__ = f"grad_cam_builder({class_name!r})"
    return build


@contextmanager
def backward_above_the_target_layer_only(cam: Any, model: nn.Module,
                                         target_layers: Sequence[nn.Module]) -> Iterator[None]:
    """A gradient CAM's backward pass through the layers above its target layer only.

    grad-cam runs ``loss.backward()`` with the model's parameters requiring gradients, so it
    computes every weight's gradient and every activation's below the target layer, none of
    which a CAM reads: it needs the score's gradient at the target layer's output. Inside this
    block the parameters are frozen and that output becomes the start of the graph, so the
    backward covers only the layers after it (the target's gradients and maps are unchanged,
    to the bit: tests/test_explainers.py). Left as grad-cam does it: CAMs without gradients, a
    CAM that reads the input's gradient (FullGrad) or keeps the graph (``detach=False``), and
    several target layers (one may lie below another).
    """
    if (not cam.uses_gradients or cam.compute_input_gradient or not cam.detach
            or len(target_layers) != 1):
        yield
        return
    trainable = [p for p in model.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    # prepend: before grad-cam's own hooks, which then see (and hook) the output that requires grad
    handle = target_layers[0].register_forward_hook(_start_the_graph_here, prepend=True)
    try:
        yield
    finally:
        handle.remove()
        for parameter in trainable:
            parameter.requires_grad_(True)


def _start_the_graph_here(module: nn.Module, args: Any, output: Any) -> Any:
    """The target layer's output as a new graph input (a clone, so in-place layers after it still work)."""
    if isinstance(output, torch.Tensor) and output.is_floating_point() and not output.requires_grad:
        return output.detach().requires_grad_().clone()
    return None


def gpu_batch_sizes(gpu_batch_size: int | None, batch_size: int | None) -> list[int | None]:
    """The batch sizes to try on a GPU, largest first: ``gpu_batch_size`` halved down to ``batch_size``."""
    if gpu_batch_size is None or batch_size is None or gpu_batch_size <= batch_size:
        return [None]
    sizes: list[int | None] = []
    size = gpu_batch_size
    while size > batch_size:
        sizes.append(size)
        size //= 2
    return [*sizes, batch_size]


def halving_on_oom(call: Callable[[int | None], np.ndarray], sizes: Sequence[int | None]) -> np.ndarray:
    """``call(size)`` with the first batch size that fits in memory; the last one's error if none does."""
    for size in sizes[:-1]:
        try:
            return call(size)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
    return call(sizes[-1])
