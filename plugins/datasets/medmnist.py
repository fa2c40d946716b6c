"""medmnist-*: the 2D multi-class MedMNIST sets, read from the user's local ``.npz`` files.

MedMNIST (Yang et al., 2023) is the standard small medical benchmark: each
set is one ``.npz`` file holding ``{train,val,test}_images`` (uint8,
``(N, H, W)`` grey or ``(N, H, W, 3)`` RGB) and ``{train,val,test}_labels``
(``(N, 1)`` class indices), with the official split. Nothing is downloaded:
put the files you have under ``--data-root`` (or a ``medmnist/`` folder in
it, or one level below it).

Naming rule, one dataset per file: ``<flag>.npz`` (the 28 px release) is
``medmnist-<flag>``, ``<flag>_<size>.npz`` (MedMNIST+, 64/128/224 px) is
``medmnist-<flag>-<size>``; e.g. ``pneumoniamnist_224.npz`` is
``medmnist-pneumoniamnist-224``. Every name is registered whether or not its
file is there; ``run --matrix full`` plans those whose file is found and names
the rest in one line. Sizes are datasets of their own, not an option: their
leaderboards must not mix.

The default image size is the file's own, except that 28 px files are read
at 32 px (the smallest size a run accepts: the models' stride-32 stages need
it). Any other ``--img-size`` resizes with Pillow's bilinear filter, as the host's
image-file reader does.

ChestMNIST is multi-label (14 findings per image); the benchmark's datasets
are single-label multi-class, so ``medmnist-chestmnist*`` is refused with a
one-line error saying so rather than trained as something it is not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medkd_bench import DatasetSpec, MedkdError, SplitData, hookimpl

CITATION = ("Yang, Shi, Wei, Liu, Zhao, Ke, Pfister, Ni: MedMNIST v2 - A large-scale lightweight benchmark for "
            "2D and 3D biomedical image classification, Scientific Data 10:41 (2023)")
SIZES = (28, 64, 128, 224)
SPLITS = ("train", "val", "test")
KEYS = tuple(f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels"))
ORGANS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver", "lung-left",
          "lung-right", "pancreas", "spleen")
#: flag -> (channels, official class names from MedMNIST's INFO, what it is)
SETS: dict[str, tuple[int, tuple[str, ...], str]] = {
    "pathmnist": (3, ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                      "normal colon mucosa", "cancer-associated stroma", "colorectal adenocarcinoma epithelium"),
                  "colorectal cancer histology patches (NCT-CRC-HE-100K; test CRC-VAL-HE-7K), 9 tissue types"),
    "pneumoniamnist": (1, ("normal", "pneumonia"), "paediatric chest X-rays, pneumonia against normal"),
    "dermamnist": (3, ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                       "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
                       "vascular lesions"), "dermatoscopic images (HAM10000), 7 diseases"),
    "bloodmnist": (3, ("basophil", "eosinophil", "erythroblast",
                       "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte",
                       "monocyte", "neutrophil", "platelet"), "blood cell microscopy, 8 cell types"),
    "organamnist": (1, ORGANS, "abdominal CT (LiTS), axial views, 11 organs"),
    "organcmnist": (1, ORGANS, "abdominal CT (LiTS), coronal views, 11 organs"),
    "organsmnist": (1, ORGANS, "abdominal CT (LiTS), sagittal views, 11 organs"),
    "octmnist": (1, ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
                 "retinal optical coherence tomography, 4 diagnoses"),
    "breastmnist": (1, ("malignant", "normal, benign"), "breast ultrasound, malignant against normal or benign"),
    "retinamnist": (3, ("0", "1", "2", "3", "4"), "retina fundus images (DeepDRiD), 5 diabetic retinopathy grades"),
    "tissuemnist": (1, ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule",
                        "Glomerular endothelial cells", "Interstitial endothelial cells", "Leukocytes", "Podocytes",
                        "Proximal Tubule Segments", "Thick Ascending Limb"),
                    "kidney cortex cells (BBBC051), 8 cell types"),
}
CHEST = ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia", "pneumothorax",
         "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia")
MULTI_LABEL = ("ChestMNIST is multi-label (14 findings per image, labels (N, 14)); medkd-bench's datasets are "
               "single-label multi-class, so it is not supported")


@dataclass(frozen=True)
class Variant:
    """One MedMNIST file: its set, size, dataset name and file name."""

    flag: str
    size: int

    @property
    def name(self) -> str:
        return f"medmnist-{self.flag}" + (f"-{self.size}" if self.size != 28 else "")

    @property
    def file(self) -> str:
        return f"{self.flag}" + (f"_{self.size}" if self.size != 28 else "") + ".npz"


def locate(v: Variant, root: Path) -> Path:
    """``root/FILE``, ``root/medmnist/FILE`` or ``root/*/FILE``; a ChestMNIST file found is refused."""
    root = Path(root)
    if not root.is_dir():
        raise MedkdError(f"dataset {v.name!r}: --data-root {root} is not a folder")
    candidates = [root / v.file, root / "medmnist" / v.file]
    with contextlib.suppress(OSError):
        candidates += [child / v.file for child in sorted(root.iterdir()) if child.is_dir()]
    for path in candidates:
        if path.is_file():
            if v.flag == "chestmnist":
                raise MedkdError(f"{path}: {MULTI_LABEL}")
            return path
    # The same words for every name (the file follows from it), so `run` can name many missing ones in a line.
    raise MedkdError(f"dataset {v.name!r}: no MedMNIST file for it in --data-root {root} (nor in a folder below "
                     "it); medmnist-FLAG reads FLAG.npz, medmnist-FLAG-SIZE reads FLAG_SIZE.npz")


def _need_root(v: Variant, root: Path | None) -> Path:
    if root is None:
        raise MedkdError(f"dataset {v.name!r} needs a local copy: pass --data-root or set MEDKD_DATA")
    return locate(v, root)


def open_npz(path: Path) -> Any:
    """The file opened lazily (each key decompressed when read), its keys checked."""
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:  # not a zip, truncated, unreadable: NumPy raises several kinds
        raise MedkdError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from exc
    if not hasattr(npz, "files"):
        raise MedkdError(f"{path}: a single array, not an .npz archive of {', '.join(KEYS)}")
    missing = [k for k in KEYS if k not in npz.files]
    if missing:
        npz.close()
        raise MedkdError(f"{path}: no key {missing[0]!r} (a MedMNIST file holds {', '.join(KEYS)})")
    return npz


def read_split(v: Variant, path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, C, H, W)`` uint8 images and ``(N,)`` int64 labels of one split, checked against the set."""
    channels, classes, _ = SETS.get(v.flag, (1, CHEST, ""))
    with open_npz(path) as npz:
        images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
    key = f"{path}: key {split + '_images'!r}"
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or images.shape[1] != images.shape[2]:
        raise MedkdError(f"{key}: expected uint8 (N, H, W) or (N, H, W, 3) square images, got {images.dtype} "
                         f"{images.shape}")
    found = 1 if images.ndim == 3 else images.shape[3]
    if found != channels:
        raise MedkdError(f"{key}: {found} channel(s), but {v.flag} images have {channels}")
    key = f"{path}: key {split + '_labels'!r}"
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise MedkdError(f"{key}: labels {labels.shape} are multi-label; medkd-bench needs one class per image")
    labels = labels.reshape(-1)
    if len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
        raise MedkdError(f"{key}: expected {len(images)} integer labels, got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise MedkdError(f"{key}: labels in [{labels.min()}, {labels.max()}], out of range for {len(classes)} "
                         f"classes (0-{len(classes) - 1})")
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, C, H, W)`` uint8 to ``size`` px with Pillow's bilinear filter (as for image files)."""
    from PIL import Image

    if images.shape[2] == size:
        return images
    out = np.empty((len(images), images.shape[1], size, size), dtype=np.uint8)
    for i, image in enumerate(images):
        plane = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        resized = np.asarray(Image.fromarray(plane).resize((size, size), Image.Resampling.BILINEAR))
        out[i] = resized[None] if resized.ndim == 2 else resized.transpose(2, 0, 1)
    return out


def load(v: Variant, split: str, img_size: int, root: Path | None, options: Mapping[str, Any]) -> SplitData:
    if v.flag == "chestmnist":
        raise MedkdError(f"dataset {v.name!r}: {MULTI_LABEL}")
    images, labels = read_split(v, _need_root(v, root), split)
    return SplitData(images=torch.from_numpy(resize(images, img_size)), labels=torch.from_numpy(labels))


def fingerprint(v: Variant, root: Path | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """The file's name and size (as ``folder_digest`` counts files); its keys are checked here, early."""
    if v.flag == "chestmnist":
        raise MedkdError(f"dataset {v.name!r}: {MULTI_LABEL}")
    path = _need_root(v, root)
    open_npz(path).close()
    return {"file": path.name, "bytes": path.stat().st_size}


def variants() -> list[Variant]:
    return [Variant(flag, size) for flag in (*SETS, "chestmnist") for size in SIZES]


@hookimpl
def register_datasets(register):
    for v in variants():
        channels, classes, what = SETS.get(v.flag, (1, CHEST, "chest X-rays (NIH ChestX-ray14): multi-label, refused"))
        register(
            DatasetSpec(
                name=v.name,
                classes=classes,
                load=partial(load, v),
                img_size=max(v.size, 32),
                channels=channels,
                options={},
                needs_root=True,
                citation=CITATION,
                description=f"MedMNIST {v.flag} at {v.size} px ({v.file}): {what}; official split.",
                locate=partial(locate, v),
                fingerprint=partial(fingerprint, v),
            )
        )
