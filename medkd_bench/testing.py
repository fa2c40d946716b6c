"""Conformance kit: the checks a plugin's own tests call to prove it honours the contract.

The host only trusts what it can check: a spec that builds, runs forward at
the image sizes the benchmark uses, exposes a target layer a CAM can hook,
and can be costed by fvcore; a dataset whose splits are what the trainer
slices; an explainer whose maps the panels and agreement metrics can use.
Each check builds the real components (timm, grad-cam, fvcore) on tiny
inputs and fails with an :class:`AssertionError` that names the spec and the
broken rule, so a contributor sees what to fix before running the matrix.

Import it from ``medkd_bench.testing`` (it is deliberately not re-exported by
``medkd_bench``, so the CLI does not pay for it at start-up)::

    from medkd_bench.testing import check_teacher_spec, registry_of

    def test_conformance():
        check_teacher_spec(registry_of("plugins/teachers/my_teacher.py").teachers["my-teacher"])
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from .specs import (
    DatasetSpec,
    ExplainerSpec,
    ModelSpec,
    SplitData,
    StudentSpec,
    TeacherSpec,
    TrainSettings,
)

__all__ = [
    "NAME_PATTERN",
    "check_dataset_spec",
    "check_explainer_spec",
    "check_student_spec",
    "check_teacher_spec",
    "registry_of",
]

#: Plugin names are lowercase slugs: letters and digits in dash-separated words, starting with a letter.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
SPLITS = ("train", "val", "test")
#: The small timm model explainers are checked around (random weights, no download).
EXPLAINER_PROBE_MODEL = ("resnet10t", "layer3")


def registry_of(*plugins: str | Path | ModuleType) -> Any:
    """The registry that the given plugins alone produce, without any entry point.

    A plugin's tests should not depend on what else is installed (or on a
    stale ``pip install -e .``), so this loads exactly the plugins named: a
    ``Path`` (or a string ending in ``.py``) is a plugin file, as with
    ``--plugin``; another string is an importable module such as
    ``"medkd_resnet34.plugin"``; a module object is registered as it is.
    """
    import importlib

    from .plugins import collect, make_plugin_manager

    files = [Path(p) for p in plugins if isinstance(p, Path) or (isinstance(p, str) and p.endswith(".py"))]
    pm = make_plugin_manager(files, entry_points=False)
    for plugin in plugins:
        if isinstance(plugin, ModuleType):
            pm.register(plugin)
        elif isinstance(plugin, str) and not plugin.endswith(".py"):
            pm.register(importlib.import_module(plugin))
    return collect(pm)


# ---- shared helpers ----------------------------------------------------------------------------


def _fail(spec: Any, rule: str) -> AssertionError:
    """An error that names the spec (kind and name) and the rule it breaks."""
    kind = type(spec).__name__
    name = getattr(spec, "name", "?")
    return AssertionError(f"{kind} {name!r}: {rule}")


def _require(condition: bool, spec: Any, rule: str) -> None:
    if not condition:
        raise _fail(spec, rule)


@contextlib.contextmanager
def _tiny_workload() -> Iterator[None]:
    """One intra-op thread and a private RNG while a check runs.

    The checks push a couple of 32 px images through each model: that gains
    nothing from intra-op parallelism, and on a shared two-core CI runner
    OpenMP threads spinning against other jobs make it an order of magnitude
    slower. Forking the RNG keeps model initialisation inside a check from
    shifting the random stream of the test that called it.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            yield
    finally:
        torch.set_num_threads(threads)


def _check_identity(spec: Any, citation_required: bool = True) -> None:
    """Name and citation: leaderboard rows are keyed by the name and credit the citation."""
    name = getattr(spec, "name", None)
    _require(isinstance(name, str) and bool(NAME_PATTERN.match(name)), spec,
             f"name must be a lowercase slug such as 'resnet34' or 'my-teacher' (got {name!r})")
    if citation_required:
        citation = getattr(spec, "citation", "")
        _require(isinstance(citation, str) and bool(citation.strip()), spec,
                 "citation is empty: cite the paper (authors, title, venue year, arXiv id) "
                 "or, for data, its source")


def _check_train_settings(spec: ModelSpec) -> None:
    """The trainer divides by epochs and batch size and needs at least two images per batch for batch norm."""
    t = spec.train
    _require(isinstance(t, TrainSettings), spec, f"train must be a TrainSettings (got {type(t).__name__})")
    _require(t.epochs >= 1, spec, f"train.epochs must be >= 1 (got {t.epochs})")
    _require(t.batch_size >= 2, spec, f"train.batch_size must be >= 2 for batch norm (got {t.batch_size})")
    _require(t.lr > 0 and math.isfinite(t.lr), spec, f"train.lr must be a positive number (got {t.lr})")
    _require(t.warmup_epochs >= 0, spec, f"train.warmup_epochs must be >= 0 (got {t.warmup_epochs})")


def _build(spec: ModelSpec, num_classes: int, img_size: int) -> nn.Module:
    try:
        model = spec.build(num_classes, img_size)
    except Exception as exc:
        raise _fail(spec, f"build({num_classes}, {img_size}) raised {type(exc).__name__}: {exc}") from exc
    _require(isinstance(model, nn.Module), spec,
             f"build({num_classes}, {img_size}) must return an nn.Module (got {type(model).__name__})")
    return model


def _check_forward(spec: ModelSpec, model: nn.Module, num_classes: int, img_size: int) -> None:
    """Logits of shape (N, num_classes): the trainer's cross-entropy and KD loss assume exactly that."""
    x = torch.randn(2, 3, img_size, img_size)
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        raise _fail(spec, f"forward on (2, 3, {img_size}, {img_size}) raised {type(exc).__name__}: {exc}") from exc
    _require(isinstance(out, torch.Tensor), spec,
             f"forward must return a logits tensor (got {type(out).__name__}); unwrap tuples or dicts")
    _require(tuple(out.shape) == (2, num_classes), spec,
             f"forward on (2, 3, {img_size}, {img_size}) must give logits (2, {num_classes}), "
             f"got {tuple(out.shape)}; build(num_classes, img_size) must size the head from num_classes")
    _require(bool(torch.isfinite(out).all()), spec, f"forward at {img_size} px gives non-finite logits")


def _target_layers(spec: ModelSpec, model: nn.Module) -> list[nn.Module]:
    """The layers the explainer hooks must exist and belong to the model that was built."""
    try:
        layers = list(spec.target_layers(model))
    except Exception as exc:
        raise _fail(spec, f"target_layers(model) raised {type(exc).__name__}: {exc} "
                          "(does the declared target-layer path exist in the built model?)") from exc
    _require(bool(layers), spec, "target_layers(model) returned no layer")
    own = {id(m) for m in model.modules()}
    for layer in layers:
        _require(isinstance(layer, nn.Module) and id(layer) in own, spec,
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
        raise _fail(spec, f"CAM at the declared target layer failed at {img_size} px: {type(exc).__name__}: "
                          f"{exc} (token models need a reshape_transform to (N, C, H, W))") from exc
    maps = np.asarray(maps)
    _require(maps.shape == (1, img_size, img_size), spec,
             f"CAM map at the target layer must be (1, {img_size}, {img_size}), got {maps.shape}")
    _require(bool(np.isfinite(maps).all()), spec, f"CAM map at the target layer is not finite at {img_size} px")


def _check_cost(spec: ModelSpec, model: nn.Module, img_size: int) -> None:
    """Parameters and fvcore MACs are leaderboard columns: both must be countable and positive."""
    from .evaluate import count_gmacs, count_params

    params = count_params(model)
    _require(params > 0, spec, "the model has no parameters")
    try:
        gmacs = count_gmacs(model, img_size)
    except Exception as exc:
        raise _fail(spec, f"fvcore cannot count FLOPs at {img_size} px: {type(exc).__name__}: {exc}") from exc
    _require(math.isfinite(gmacs) and gmacs > 0, spec, f"fvcore counts {gmacs} GMACs at {img_size} px")


def _check_model_spec(spec: ModelSpec, cls: type, num_classes: Sequence[int], img_sizes: Sequence[int],
                      explainer: ExplainerSpec | None) -> None:
    _require(isinstance(spec, cls), spec, f"expected a {cls.__name__}, got {type(spec).__name__}")
    _check_identity(spec)
    _require(callable(spec.build), spec, "build must be callable as build(num_classes, img_size)")
    _require(callable(spec.target_layers), spec, "target_layers must be callable as target_layers(model)")
    _require(spec.reshape_transform is None or callable(spec.reshape_transform), spec,
             "reshape_transform must be None or callable")
    _require(spec.build_pretrained is None or callable(spec.build_pretrained), spec,
             "build_pretrained must be None or callable (it is never called here: it downloads)")
    _check_train_settings(spec)
    _require(bool(num_classes) and bool(img_sizes), spec, "check at least one class count and one image size")
    with _tiny_workload():
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


# ---- datasets ---------------------------------------------------------------------------------


def _load(spec: DatasetSpec, split: str, size: int, root: Path | None, options: Mapping[str, Any]) -> SplitData:
    try:
        data = spec.load(split, size, root, options)
    except Exception as exc:
        raise _fail(spec, f"load({split!r}, {size}, ...) raised {type(exc).__name__}: {exc}") from exc
    _require(isinstance(data, SplitData), spec,
             f"load({split!r}, {size}, ...) must return a SplitData (got {type(data).__name__})")
    return data


def _check_split(spec: DatasetSpec, split: str, size: int, data: SplitData) -> None:
    """What the trainer slices and the panels draw: uint8 images, int labels in range, (N, H, W) bool masks."""
    where = f"split {split!r} at {size} px"
    _require(len(data) > 0, spec, f"{where} is empty")
    images, labels = data.images, data.labels
    _require(images.dtype == torch.uint8, spec, f"{where}: images must be uint8, got {images.dtype}")
    expected = (spec.channels, size, size)
    _require(tuple(images.shape[1:]) == expected, spec,
             f"{where}: images must be (N, {spec.channels}, {size}, {size}) as declared (channels={spec.channels}), "
             f"got {tuple(images.shape)}")
    _require(not labels.dtype.is_floating_point and labels.dtype != torch.bool, spec,
             f"{where}: labels must be integer class indices, got {labels.dtype}")
    if len(labels):
        low, high = int(labels.min()), int(labels.max())
        _require(low >= 0 and high < spec.num_classes, spec,
                 f"{where}: labels must lie in [0, {spec.num_classes - 1}], got [{low}, {high}]")
    missing = [m for m in spec.mask_names if m not in data.masks]
    _require(not missing, spec, f"{where}: declared mask(s) {', '.join(missing)} missing (has: "
                                f"{', '.join(data.masks) or 'none'})")
    for name, mask in data.masks.items():
        _require(mask.dtype == torch.bool and tuple(mask.shape) == (len(data), size, size), spec,
                 f"{where}: mask {name!r} must be bool (N, {size}, {size}), got {mask.dtype} {tuple(mask.shape)}")


def _check_dataset_declaration(spec: DatasetSpec) -> None:
    _check_identity(spec)
    _require(len(spec.classes) >= 2 and len(set(spec.classes)) == len(spec.classes), spec,
             f"classes must be at least two distinct names, got {spec.classes!r}")
    _require(spec.channels in (1, 3), spec, f"channels must be 1 (grey) or 3 (RGB), got {spec.channels}")
    _require(spec.img_size > 0, spec, f"img_size must be positive, got {spec.img_size}")
    _require(spec.localisation_mask is None or spec.localisation_mask in spec.mask_names, spec,
             f"localisation_mask {spec.localisation_mask!r} is not one of mask_names {spec.mask_names!r}")
    _require(isinstance(spec.options, Mapping), spec, "options must be a mapping of defaults")
    _require(callable(spec.load), spec, "load must be callable as load(split, img_size, root, options)")


def check_dataset_spec(spec: DatasetSpec, img_sizes: Sequence[int] = (32,), root: Path | None = None,
                       options: Mapping[str, Any] | None = None, check_determinism: bool = True) -> None:
    """Assert that a :class:`DatasetSpec` yields splits the trainer and the panels can use.

    For each image size, train/val/test load as :class:`SplitData` with
    uint8 images of the declared channels and size, labels in range, every
    class present in train, and every declared mask as bool ``(N, H, W)``.
    With ``check_determinism``, loading train twice gives identical data:
    config hashes and cached teachers assume a dataset never changes under
    the same options. ``options`` override the spec's defaults (e.g. smaller
    ``n_train`` to keep the check fast); ``root`` is needed when
    ``spec.needs_root``.
    """
    _require(isinstance(spec, DatasetSpec), spec, f"expected a DatasetSpec, got {type(spec).__name__}")
    _check_dataset_declaration(spec)
    _require(not spec.needs_root or root is not None, spec,
             "needs a local copy of the data: pass root= to check_dataset_spec")
    unknown = sorted(set(options or {}) - set(spec.options))
    _require(not unknown, spec, f"unknown option(s) {', '.join(unknown)} (known: "
                                f"{', '.join(sorted(spec.options)) or 'none'})")
    opts = {**spec.options, **(options or {})}
    with _tiny_workload():
        for size in img_sizes:
            for split in SPLITS:
                data = _load(spec, split, size, root, opts)
                _check_split(spec, split, size, data)
                if split == "train":
                    present = set(data.labels.tolist())
                    absent = [c for i, c in enumerate(spec.classes) if i not in present]
                    _require(not absent, spec, f"split 'train' at {size} px has no sample of class(es) "
                                               f"{', '.join(map(repr, absent))}: every class must be trainable")
                    if check_determinism:
                        again = _load(spec, split, size, root, opts)
                        _require(torch.equal(data.images, again.images) and torch.equal(data.labels, again.labels),
                                 spec, f"loading split 'train' twice at {size} px gives different data: "
                                       "seed the generator from the options")


# ---- explainers -------------------------------------------------------------------------------


def check_explainer_spec(spec: ExplainerSpec, img_size: int = 32, num_classes: int = 3) -> None:
    """Assert that an :class:`ExplainerSpec` turns a real model into usable saliency maps.

    The explainer is built around a small timm CNN with random weights and
    must return float ``(N, H, W)`` maps, finite and within ``[0, 1]``, one
    per image, for the requested target classes: the panels overlay them on
    the input and the agreement metrics compare them pixel by pixel.
    """
    import timm

    _require(isinstance(spec, ExplainerSpec), spec, f"expected an ExplainerSpec, got {type(spec).__name__}")
    _check_identity(spec)
    _require(callable(spec.build), spec, "build must be callable as build(model, target_layers, reshape_transform)")
    model_name, layer = EXPLAINER_PROBE_MODEL
    with _tiny_workload():
        model = timm.create_model(model_name, pretrained=False, num_classes=num_classes).eval()
        images = torch.randn(2, 3, img_size, img_size)
        targets = [0, num_classes - 1]
        try:
            explain = spec.build(model, [model.get_submodule(layer)], None)
            maps = np.asarray(explain(images, targets))
        except Exception as exc:
            raise _fail(spec, f"explaining timm {model_name} at {layer} raised {type(exc).__name__}: {exc}") from exc
    _require(maps.shape == (2, img_size, img_size), spec,
             f"maps must be (N, H, W) = (2, {img_size}, {img_size}), got {maps.shape}")
    _require(np.issubdtype(maps.dtype, np.floating), spec, f"maps must be floats, got {maps.dtype}")
    _require(bool(np.isfinite(maps).all()), spec, "maps contain NaN or inf")
    low, high = float(maps.min()), float(maps.max())
    _require(low >= -1e-6 and high <= 1.0 + 1e-6, spec, f"maps must be scaled to [0, 1], got [{low:.3g}, {high:.3g}]")
