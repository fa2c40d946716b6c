"""The plugin contract: everything a plugin hands to the host or gets back from it.

The specs a plugin passes to a ``register`` callback, and what a distillation
method's loss is built from and sees (:class:`MethodContext`,
:class:`ModelOutputs`). A spec carries what the host cannot derive: how to build
the model or load the data, where Score-CAM should look, a citation, and
default training settings. Everything else (parameters, FLOPs, normalisation)
the host measures itself, so plugins stay small.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medkd_bench.errors import MedkdError

#: The one rule for every registered name (teachers, students, datasets, explainers, methods; plugins,
#: searched students and ``datasets add`` alike): names become file names, folder names and leaderboard rows.
NAME_RULE = re.compile(r"^(?=.{1,64}\Z)[a-z][a-z0-9]*(?:-[a-z0-9]+)*\Z")
NAME_RULE_TEXT = ("names are lowercase slugs of at most 64 characters: letters and digits in words joined by "
                  "single dashes, starting with a letter, such as 'resnet34' or 'my-data'")


def check_name(kind: str, name: object, where: str = "") -> str:
    """``name`` if :data:`NAME_RULE` allows it, else one line: ``WHERE: KIND name 'a_b' is not allowed (...)``."""
    if isinstance(name, str) and NAME_RULE.match(name):
        return name
    raise MedkdError(f"{where + ': ' if where else ''}{kind} name {name!r} is not allowed ({NAME_RULE_TEXT})")


#: ``(num_classes, img_size) -> nn.Module`` with random initial weights.
ModelBuilder = Callable[[int, int], nn.Module]
#: Picks the layer(s) a CAM explainer hooks, from a built model.
TargetLayers = Callable[[nn.Module], Sequence[nn.Module]]
#: Turns a token model's activations into ``(N, C, H, W)`` maps (grad-cam's convention).
ReshapeTransform = Callable[[torch.Tensor], torch.Tensor]
#: ``model -> (forward_features, forward_head)``: the model's forward split at its last feature map
#: (before global pooling), so class activation maps can apply the head at every location.
HeadSplit = Callable[[nn.Module], "tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]"]


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser, schedule and stopping rule for one model.

    AdamW with a linear warm-up. With ``early_stopping`` (the default) the model
    trains until its validation accuracy plateaus: a constant rate until it has
    not improved by ``min_delta`` for ``patience`` epochs, then a linear cool-down
    over ``cooldown_fraction`` of the epochs run, with ``epochs`` as the cap
    (:class:`~medkd_bench.train.schedule.PlateauStop`). Without it (``--epochs N``)
    it trains exactly ``epochs`` epochs with a cosine decay. Defaults are per
    model because architectures trained from random weights differ a lot in
    what learning rate and warm-up they survive.
    """

    #: The epoch cap under early stopping; the exact length without it.
    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.0
    grad_clip: float | None = 1.0
    early_stopping: bool = True
    #: Epochs without a validation-accuracy gain above ``min_delta`` before the cool-down starts.
    #: 8, not 5: with 200-240 validation images the curve is noisy, and at patience 5 OFA-595 on
    #: synthetic-histo stopped 6-11 epochs too soon (three seeds: 71.6/56.8/74.2% test at patience 5,
    #: 75.4/68.6/75.2% at 8, for about 30% more epochs; benchmarks/RESULTS.md, 2026-12-05).
    patience: int = 8
    #: ...and at least this many optimiser steps: whichever is longer. An epoch of 300-360 images is
    #: 10-23 steps, one of 900-1,080 is 29-68, so a patience counted in epochs alone gave a small
    #: training set's model a third of the training to show a gain in, and it was stopped while
    #: still learning (measured, synthetic-histo seed 0: OFA-595 at 152 steps of patience stopped at
    #: validation 0.875, at 304 steps it went on to 0.965; benchmarks/RESULTS.md, session 15).
    patience_steps: int = 400
    #: No plateau is declared before this epoch: a model that sits near chance for its first epochs
    #: (measured: OFA-595 on a hard task, best at epoch 1 by luck) is not stopped for a slow start.
    min_epochs: int = 10
    min_delta: float = 0.005
    cooldown_fraction: float = 0.2
    #: An epoch is at least this many optimiser steps: a training set smaller than that is passed over
    #: several times per epoch (each pass its own seeded order and flips), and ``epochs``, ``patience``,
    #: ``min_epochs`` and the warm-up count such epochs. Validation and the batch-norm recalibration
    #: before it cost about as much as a pass over 180 images (measured: OFA-595 on synthetic-cxr, 44%
    #: of a cell's time at one pass per epoch), so they run every N steps instead of every pass.
    #: 0 (the default): an epoch is one pass. Left out of the config hash at 0 (config_hash.py).
    min_steps_per_epoch: int = 0

    def replace(self, **changes: Any) -> TrainSettings:
        from dataclasses import replace

        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class ModelSpec:
    """A network the benchmark can train, score and explain."""

    name: str
    build: ModelBuilder
    target_layers: TargetLayers
    reshape_transform: ReshapeTransform | None = None
    citation: str = ""
    description: str = ""
    train: TrainSettings = field(default_factory=TrainSettings)
    #: Optional ``(num_classes, img_size) -> nn.Module`` loading ImageNet weights
    #: (e.g. timm's own ``pretrained=True``); only used on ``--pretrained``.
    build_pretrained: ModelBuilder | None = None
    #: Bump when the builder's code changes what it builds: it is part of every
    #: cell's config hash, so stored results of the old model are not reused.
    revision: str = "1"
    #: CPU fast path under ``--amp auto``, measured per architecture
    #: (``benchmarks/bench_precision.py``): bf16 autocast pays off for dense
    #: convolutions and attention on CPUs with native bf16 units (AMX), but slows
    #: depthwise-separable networks (OFA-595 trains 1.45x slower in it).
    #: Channels-last helps both kinds: with bf16 it makes VGG19's inference
    #: (Score-CAM, soft targets) 1.6x faster and Visformer-S's training 1.1x.
    cpu_bf16: bool = False
    cpu_channels_last: bool = False
    #: GPU fast path under ``--amp auto`` on CUDA: ``"fp32"`` (TF32 off), ``"tf32"`` (float32 tensors,
    #: TF32 tensor-core matmuls and convolutions), ``"bf16"`` (autocast; fp16 on GPUs without bf16) or
    #: ``"fp16"`` (autocast with a gradient scaler), and the memory format. Measured per architecture
    #: by ``benchmarks/bench_gpu.py``; the default is the tensor-core choice for dense networks.
    gpu_precision: str = "bf16"
    gpu_channels_last: bool = True
    #: The dtype batch-1 latency "as deployed" converts the weights to on a GPU (``"fp16"``,
    #: ``"bf16"`` or ``"fp32"``): half precision unless the architecture loses accuracy in it.
    gpu_deploy_dtype: str = "fp16"
    #: For distillation methods that need class activation maps (``cat-kd``): where the forward
    #: splits into features and head. ``None`` means timm's convention, the model's own
    #: ``forward_features`` and ``forward_head`` (with ``output_fmt`` saying NCHW or NHWC).
    head_split: HeadSplit | None = None


@dataclass(frozen=True)
class TeacherSpec(ModelSpec):
    """A large network trained once per dataset and distilled from."""


@dataclass(frozen=True)
class StudentSpec(ModelSpec):
    """A small network trained on labels alone and by distillation."""


@dataclass
class SplitData:
    """One split held in memory as compact tensors.

    Images are ``uint8`` ``(N, C, H, W)`` so that a few thousand images fit in
    RAM and batches are cheap to slice; masks are ``bool`` ``(N, H, W)``
    keyed by name (e.g. ``"lung"``, ``"lesion"``).
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError("SplitData.images must be uint8 (N, C, H, W)")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("SplitData.labels must have one label per image")
        for name, mask in self.masks.items():
            if mask.shape != (self.images.shape[0], *self.images.shape[2:]):
                raise ValueError(f"SplitData mask {name!r} must be (N, H, W) like the images")

    def __len__(self) -> int:
        return int(self.images.shape[0])


#: ``(split, img_size, root, options) -> SplitData``; split is train/val/test.
DatasetLoader = Callable[[str, int, "Path | None", Mapping[str, Any]], SplitData]
#: ``root -> folder``: where a real dataset's files lie under a ``--data-root``;
#: raises :class:`~medkd_bench.errors.MedkdError` naming what is missing.
DatasetLocator = Callable[[Path], Path]
#: ``(root, options) -> digest``: what the loader would read (file names and sizes,
#: and for a seeded split, which file goes to which split).
DatasetFingerprint = Callable[["Path | None", Mapping[str, Any]], Mapping[str, Any]]
#: ``(split, root, options) -> files``: the file each image of the split is read from, in load order,
#: bad files included (the data checks drop those a run left out).
DatasetFiles = Callable[[str, "Path | None", Mapping[str, Any]], Sequence["Path"]]


@dataclass(frozen=True)
class DatasetSpec:
    """A classification dataset with fixed train/val/test splits."""

    name: str
    classes: tuple[str, ...]
    load: DatasetLoader
    img_size: int = 64
    #: Channels as stored; grey (1) images are repeated to 3 for ImageNet-style models.
    channels: int = 1
    #: Names of the masks each sample carries; ``localisation_mask`` is the one
    #: saliency should fall inside.
    mask_names: tuple[str, ...] = ()
    localisation_mask: str | None = None
    #: Default options, overridable per run (``--dataset-option NAME.key=value``). A value given on
    #: the command line is parsed as the type of its default (bool, int, float or str).
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Allowed range of numeric options, ``key -> (low, high)`` (inclusive; None for the default). A
    #: numeric option without a low must be >= 0, without a high at most 2**31 - 1: options are
    #: counts, fractions and seeds. Bound counts more tightly: a count is memory and time.
    option_ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    #: Real datasets need a local root; embedded ones generate their data.
    needs_root: bool = False
    citation: str = ""
    description: str = ""
    #: Bump when the generated or read data changes; part of every cell's config hash.
    revision: str = "1"
    #: For ``needs_root`` datasets: finds the dataset's folder under a root, so
    #: ``run --matrix full`` can leave out (and name) datasets that are not there.
    locate: DatasetLocator | None = None
    #: For ``needs_root`` datasets: a digest of the files read and the split they
    #: go to. It joins every cell's config hash and keys the decoded-image cache,
    #: so a changed copy of the data never reuses results or cached pixels
    #: (datasets without one are not cached).
    fingerprint: DatasetFingerprint | None = None
    #: Leave bad files out (with a warning naming them) even when a command is not given ``--skip-bad``:
    #: the user chose it once, when adding the dataset (``datasets add --skip-bad``), and a choice made
    #: there must not have to be repeated on every run. Not in the config hash: a cell trains on the
    #: same images either way (a strict run stops instead), and its data checksums are recorded.
    skip_bad: bool = False
    #: For datasets read from files: lists them per split (:data:`DatasetFiles`), so the data checks of
    #: ``datasets check`` and ``run`` (:mod:`medkd_bench.data.audit`) name the two files of a duplicate
    #: and check a grey dataset's files for colour. Optional: without it images are named by index.
    files: DatasetFiles | None = None
    #: A split the loader serves beside train/val/test on which teachers train instead of ``train``:
    #: the student's training images and more, from a source that never overlaps validation or test.
    #: It stands in for the larger corpus a real teacher has seen (the source study's teachers come
    #: ImageNet-pretrained): trained from random weights on the student's few hundred images, no teacher
    #: beats OFA-595 on the embedded chest task (benchmarks/RESULTS.md, 2026-12-05). Students, and every
    #: comparison between them, see ``train`` only; normalisation is the ``train`` split's for both.
    #: None: teachers train on ``train``, as on real data.
    teacher_split: str | None = None
    #: Options a ``run --matrix quick`` smoke run uses unless given (``--dataset-option`` wins): a
    #: smoke run proves the pipeline, and a default sized for a trustworthy comparison (thousands of
    #: test images, teachers on several times the students' images) would take it past its 3 minutes.
    #: Keys must be ``options``' own; recorded in the run like any given option.
    quick_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


#: The matrix's cells that are not distillation; a registered method may not take these names.
BASE_METHODS = ("teacher", "label-only")

#: What a method's loss module may read beyond logits (:class:`ModelOutputs`).
METHOD_NEEDS = ("features", "class_maps")

#: A layer option's value meaning "the model's own target layers" (the default of every layer option).
TARGET_LAYERS = "target"
#: The models a method's layer options point into (:attr:`MethodSpec.layer_options`).
LAYER_ROLES = ("student", "teacher")
#: The layer options of a method that declares none: these options, where the method has them.
DEFAULT_LAYER_OPTIONS = {"student": "student_layer", "teacher": "teacher_layer"}


@dataclass
class ModelOutputs:
    """One model's outputs on a batch, as a method's loss module sees them.

    ``logits`` is ``(N, classes)``; ``features`` holds one ``(N, C, H, W)`` map per
    feature layer (the model's target layers unless a layer option names
    others); ``class_maps`` is ``(N, classes, H, W)``: the classifier head applied
    at every location of the last feature map, minus its output for an all-zero
    location (for a linear head the CAM ``W f`` without the bias, see
    :func:`~medkd_bench.distill.taps.head_at_locations`). Both are filled only when the
    method's spec ``needs`` them. The teacher's side carries no gradient.
    """

    logits: torch.Tensor
    features: tuple[torch.Tensor, ...] = ()
    class_maps: torch.Tensor | None = None


@dataclass(frozen=True)
class MethodContext:
    """What a method's ``build`` gets: its options and the shapes it must fit its own modules to.

    Shapes are per image, ``(C, H, W)``, one per feature layer; ``epochs`` and
    ``steps_per_epoch`` let a loss schedule its terms (DKD's warm-up).
    """

    options: Mapping[str, Any]
    num_classes: int
    epochs: int
    steps_per_epoch: int
    student_features: tuple[tuple[int, ...], ...] = ()
    teacher_features: tuple[tuple[int, ...], ...] = ()
    student_class_maps: tuple[int, ...] | None = None
    teacher_class_maps: tuple[int, ...] | None = None


#: ``context -> loss module``: builds a method's loss for one cell (see :class:`MethodSpec`).
MethodBuilder = Callable[[MethodContext], nn.Module]


@dataclass(frozen=True)
class LogUniform:
    """A positive number tuned on a log scale between ``low`` and ``high`` (loss weights, temperatures, rates)."""

    low: float
    high: float


@dataclass(frozen=True)
class Uniform:
    """A number tuned on a linear scale between ``low`` and ``high`` (mixing weights, smoothing)."""

    low: float
    high: float


@dataclass(frozen=True)
class Choice:
    """One of a few values (a resolution, a norm)."""

    values: tuple[Any, ...]


#: One dimension of a search space (``MethodSpec.search_space``, ``run --tune N``).
SearchParam = LogUniform | Uniform | Choice


@dataclass(frozen=True)
class MethodSpec:
    """A distillation method: how a student learns from a trained teacher.

    ``build(context)`` returns an ``nn.Module`` whose ``forward(student, teacher,
    targets, epoch)`` returns the batch's scalar loss; ``student`` and ``teacher``
    are :class:`ModelOutputs` (logits, and what
    ``needs`` asks for), ``epoch`` the fractional training progress (for warm-ups):
    optimiser steps taken before this one over steps per epoch, so 0 on the first step.
    The module's own parameters (a FitNets regressor) train with the student and
    are discarded afterwards. ``needs`` lists what beyond logits the loss reads:
    ``"features"`` (each model's target layers, stride 16 for every built-in
    model, or the layers its ``layer_options`` name, as ``(N, C, H, W)``) and ``"class_maps"`` (the head applied at every
    location of the last feature map minus its output for a zero location, for a
    linear head the bias-free CAM: ``(N, classes, H, W)``).
    """

    name: str
    build: MethodBuilder
    needs: tuple[str, ...] = ()
    citation: str = ""
    description: str = ""
    #: Bump when the loss's code changes what it computes: part of every distilled cell's config hash.
    revision: str = "1"
    #: Default options (``--method-option NAME.key=value`` overrides, parsed as the default's type).
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Allowed range of numeric options, ``key -> (low, high)`` inclusive; without one a number must be
    #: within 0 .. 2**31 - 1.
    option_ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    #: The options worth tuning and their ranges (``run --tune N``), each containing the default, so the
    #: paper's setting is one point of the search. Options left out keep their defaults when tuned.
    search_space: Mapping[str, SearchParam] = field(default_factory=dict)
    #: Which options name the layer a model is tapped at instead of its target layers, by role
    #: (:data:`LAYER_ROLES`), e.g. ``{"student": "student_layer", "teacher": "teacher_layer"}``: then
    #: ``--method-option fitnet.teacher_layer=stage3`` taps the teacher's ``stage3`` submodule, and a layer a
    #: planned model lacks is an error before any work starts. Each must be one of ``options`` with a text
    #: default (:data:`TARGET_LAYERS` for the target layers). ``None``: :data:`DEFAULT_LAYER_OPTIONS`.
    layer_options: Mapping[str, str] | None = None

    def layer_option(self, role: str) -> str | None:
        """The option naming the ``role`` model's feature layer; None when the method declares none for it."""
        if self.layer_options is None:
            option = DEFAULT_LAYER_OPTIONS[role]
            return option if option in self.options else None
        return self.layer_options.get(role)


#: ``(model, images, targets) -> maps``: images normalised ``(N, 3, H, W)``,
#: targets class indices, maps ``float32`` ``(N, H, W)`` scaled to ``[0, 1]``.
ExplainFn = Callable[[torch.Tensor, Sequence[int]], np.ndarray]
ExplainerBuilder = Callable[[nn.Module, Sequence[nn.Module], "ReshapeTransform | None"], ExplainFn]


@dataclass(frozen=True)
class ExplainerSpec:
    """A saliency method built around a model and its target layers."""

    name: str
    build: ExplainerBuilder
    citation: str = ""
    description: str = ""
