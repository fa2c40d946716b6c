"""medkd-bench: which teacher distils best into a small student, and does it look at the right place.

This module is the public API: plugins (built-in and third-party) import
from here only.
"""

from .cams import grad_cam_builder
from .errors import MedkdError
from .hookspecs import hookimpl
from .imagefiles import (
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
from .models import (
    last_module,
    nhwc_to_nchw,
    ofa_stride16_block,
    timm_builder,
    timm_pretrained_builder,
)
from .ofa_search import SearchedStudent, iter_searched_students
from .specs import (
    DatasetSpec,
    ExplainerSpec,
    ModelSpec,
    SplitData,
    StudentSpec,
    TeacherSpec,
    TrainSettings,
)

__version__ = "0.1.0"

__all__ = [
    "DatasetSpec",
    "ExplainerSpec",
    "ImageSample",
    "MedkdError",
    "ModelSpec",
    "SearchedStudent",
    "SplitData",
    "StudentSpec",
    "TeacherSpec",
    "TrainSettings",
    "bad_file",
    "find_folder",
    "folder_digest",
    "grad_cam_builder",
    "hookimpl",
    "iter_searched_students",
    "keep_images",
    "list_files",
    "list_images",
    "last_module",
    "nhwc_to_nchw",
    "ofa_stride16_block",
    "pair_masks",
    "read_samples",
    "require_folder",
    "timm_builder",
    "timm_pretrained_builder",
]
