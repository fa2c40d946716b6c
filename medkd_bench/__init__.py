"""medkd-bench: which teacher distils best into a small student, and does it look at the right place.

This module is the public API: plugins (built-in and third-party: models, datasets, explainers,
distillation methods) import from here, from :mod:`medkd_bench.testing` (the conformance kit) and from
:mod:`medkd_bench.nas` (the OFA student search); everything else is internal.

Importing this package is cheap: each public name is imported from its module on first
use (PEP 562), so ``medkd_bench.entry`` can install the Ctrl-C handler before torch is
loaded (a run started with SIGINT ignored would otherwise ignore ``kill -INT`` for the
seconds torch takes to import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs read; at run time __getattr__ (below) imports them,
    # and tests/test_public_api.py checks that these imports and _PUBLIC_BY_MODULE name the same things
    from medkd_bench.data.dataset_files import iter_folder_datasets
    from medkd_bench.data.folder_dataset import FolderDataset
    from medkd_bench.data.imagefiles import (
        ImageSample,
        bad_file,
        find_folder,
        folder_digest,
        keep_images,
        list_files,
        list_images,
        pair_masks,
        read_samples,
        require_folder,
    )
    from medkd_bench.data.splits import split_class
    from medkd_bench.errors import MedkdError
    from medkd_bench.explain.cams import grad_cam_builder
    from medkd_bench.hookspecs import hookimpl
    from medkd_bench.models.target_layers import (
        last_module,
        nhwc_to_nchw,
        ofa_head_split,
        ofa_stride16_block,
    )
    from medkd_bench.models.timm_models import timm_builder, timm_pretrained_builder
    from medkd_bench.nas.spec_files import SearchedStudent, iter_searched_students
    from medkd_bench.specs import (
        Choice,
        DatasetSpec,
        ExplainerSpec,
        LogUniform,
        MethodContext,
        MethodSpec,
        ModelOutputs,
        ModelSpec,
        SplitData,
        StudentSpec,
        TeacherSpec,
        TrainSettings,
        Uniform,
    )
    from medkd_bench.train.losses import kd_loss

__version__ = "0.1.0"

_PUBLIC_BY_MODULE: dict[str, tuple[str, ...]] = {
    "medkd_bench.data.dataset_files": ("iter_folder_datasets",),
    "medkd_bench.data.folder_dataset": ("FolderDataset",),
    "medkd_bench.data.imagefiles": (
        "bad_file",
        "find_folder",
        "folder_digest",
        "ImageSample",
        "keep_images",
        "list_files",
        "list_images",
        "pair_masks",
        "read_samples",
        "require_folder",
    ),
    "medkd_bench.data.splits": ("split_class",),
    "medkd_bench.errors": ("MedkdError",),
    "medkd_bench.explain.cams": ("grad_cam_builder",),
    "medkd_bench.hookspecs": ("hookimpl",),
    "medkd_bench.models.target_layers": ("last_module", "nhwc_to_nchw", "ofa_head_split", "ofa_stride16_block"),
    "medkd_bench.models.timm_models": ("timm_builder", "timm_pretrained_builder"),
    "medkd_bench.nas.spec_files": ("iter_searched_students", "SearchedStudent"),
    "medkd_bench.specs": (
        "Choice",
        "DatasetSpec",
        "ExplainerSpec",
        "LogUniform",
        "MethodContext",
        "MethodSpec",
        "ModelOutputs",
        "ModelSpec",
        "SplitData",
        "StudentSpec",
        "TeacherSpec",
        "TrainSettings",
        "Uniform",
    ),
    "medkd_bench.train.losses": ("kd_loss",),
}
_MODULE_OF: dict[str, str] = {name: module for module, names in _PUBLIC_BY_MODULE.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use and keep the name here."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'medkd_bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
