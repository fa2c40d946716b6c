"""medkd-bench: which teacher distils best into a small student, and does it look at the right place.

This module is the public API: plugins (built-in and third-party: models, datasets, explainers,
distillation methods) import
from here, from :mod:`medkd_bench.testing` (the conformance kit) and from
:mod:`medkd_bench.nas` (the OFA student search); everything else is internal.
"""

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

__all__ = [
    "Choice",
    "DatasetSpec",
    "ExplainerSpec",
    "FolderDataset",
    "ImageSample",
    "LogUniform",
    "MedkdError",
    "MethodContext",
    "MethodSpec",
    "ModelOutputs",
    "ModelSpec",
    "SearchedStudent",
    "SplitData",
    "StudentSpec",
    "TeacherSpec",
    "TrainSettings",
    "Uniform",
    "bad_file",
    "find_folder",
    "folder_digest",
    "grad_cam_builder",
    "hookimpl",
    "iter_folder_datasets",
    "iter_searched_students",
    "kd_loss",
    "keep_images",
    "list_files",
    "list_images",
    "last_module",
    "nhwc_to_nchw",
    "ofa_head_split",
    "ofa_stride16_block",
    "pair_masks",
    "read_samples",
    "require_folder",
    "split_class",
    "timm_builder",
    "timm_pretrained_builder",
]
