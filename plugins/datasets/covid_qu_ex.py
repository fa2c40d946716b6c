"""covid-qu-ex and covid-qu-ex-infection: the COVID-QU-Ex chest X-rays, read from a local copy.

COVID-QU-Ex (Tahir et al., 2021) ships two subsets with the same three
classes and the official Train/Val/Test split, extracted as::

    Lung Segmentation Data/Lung Segmentation Data/{Train,Val,Test}/{COVID-19,Non-COVID,Normal}/
        images/*.png  lung masks/*.png
    Infection Segmentation Data/Infection Segmentation Data/{Train,Val,Test}/{COVID-19,Non-COVID,Normal}/
        images/*.png  lung masks/*.png  infection masks/*.png

The subsets carry different masks, and saliency should be scored against a
different one (the lungs in the first, the infection in the second), so each
subset is its own registered dataset rather than an option: a spec's
``mask_names`` and ``localisation_mask`` are fixed per name, and the
leaderboard keeps the two apart. Masks pair with images by file name.

Images are 256 px grey PNGs, stored with one channel; the host repeats the
plane into all three channels for ImageNet-style models (``data.normalise``).
The infection masks of non-COVID and normal images are empty, and the
localisation metrics leave such images out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from medkd_bench import (
    DatasetSpec,
    ImageSample,
    MedkdError,
    SplitData,
    find_folder,
    folder_digest,
    hookimpl,
    list_images,
    pair_masks,
    read_samples,
    require_folder,
)

CLASSES = ("COVID-19", "Non-COVID", "Normal")
SPLIT_FOLDERS = {"train": "Train", "val": "Val", "test": "Test"}
CITATION = ("Tahir, Chowdhury, Khandakar, Rahman, Qiblawey, Khurshid, Kiranyaz, Ibtehaz, Rahman, Al-Maadeed, "
            "Mahmud, Ezeddin, Hameed, Hamid: COVID-19 infection localization and severity grading from chest "
            "X-ray images, Comput. Biol. Med. 139:105002 (2021); data: COVID-QU-Ex Dataset, Kaggle")


@dataclass(frozen=True)
class Subset:
    """One of the two published subsets: its folder and its masks (mask name -> folder name)."""

    name: str
    folder: str
    masks: tuple[tuple[str, str], ...]
    localisation_mask: str
    description: str


SUBSETS = (
    Subset("covid-qu-ex", "Lung Segmentation Data/Lung Segmentation Data", (("lung", "lung masks"),), "lung",
           "COVID-QU-Ex lung segmentation subset: 33,920 chest X-rays (COVID-19, non-COVID pneumonia, "
           "normal) with lung masks; official Train/Val/Test split."),
    Subset("covid-qu-ex-infection", "Infection Segmentation Data/Infection Segmentation Data",
           (("lung", "lung masks"), ("infection", "infection masks")), "infection",
           "COVID-QU-Ex infection segmentation subset: 5,826 chest X-rays with lung and infection masks "
           "(infection masks empty for non-COVID and normal); official Train/Val/Test split."),
)


def locate(subset: Subset, root: Path) -> Path:
    return find_folder(root, subset.folder, subset.name)


def samples(subset: Subset, split: str, root: Path) -> list[ImageSample]:
    """Every image of a split with its masks, class by class in file-name order."""
    base = require_folder(locate(subset, root) / SPLIT_FOLDERS[split], f"{subset.name} split")
    out: list[ImageSample] = []
    for label, cls in enumerate(CLASSES):
        class_dir = require_folder(base / cls, f"{subset.name} class")
        images = list_images(class_dir / "images")
        pairs = pair_masks(images, {mask: class_dir / folder for mask, folder in subset.masks})
        if not pairs:
            raise MedkdError(f"dataset {subset.name!r}: class {cls!r} has no usable image in {class_dir / 'images'}")
        out += [ImageSample(image, label, masks) for image, masks in pairs]
    return out


def load(subset: Subset, split: str, img_size: int, root: Path | None, options: Mapping[str, Any]) -> SplitData:
    if root is None:
        raise MedkdError(f"dataset {subset.name!r} needs a local copy: pass --data-root or set MEDKD_DATA")
    mask_names = [m for m, _ in subset.masks]
    return read_samples(samples(subset, split, root), img_size, channels=1, mask_names=mask_names,
                        description=f"decoding {subset.name} {split}")


def files(subset: Subset, split: str, root: Path | None, options: Mapping[str, Any]) -> list[Path]:
    """Each image :func:`load` reads, in its order: the data checks name duplicates by file."""
    if root is None:
        raise MedkdError(f"dataset {subset.name!r} needs a local copy: pass --data-root or set MEDKD_DATA")
    return [sample.image for sample in samples(subset, split, root)]


def fingerprint(subset: Subset, root: Path | None, options: Mapping[str, Any]) -> dict[str, Any]:
    if root is None:
        raise MedkdError(f"dataset {subset.name!r} needs a local copy: pass --data-root or set MEDKD_DATA")
    folder = locate(subset, root)
    return folder_digest([folder], folder)


@hookimpl
def register_datasets(register):
    for subset in SUBSETS:
        register(
            DatasetSpec(
                name=subset.name,
                classes=CLASSES,
                load=partial(load, subset),
                img_size=224,
                channels=1,
                mask_names=tuple(m for m, _ in subset.masks),
                localisation_mask=subset.localisation_mask,
                options={},
                needs_root=True,
                citation=CITATION,
                description=subset.description,
                locate=partial(locate, subset),
                fingerprint=partial(fingerprint, subset),
                files=partial(files, subset),
            )
        )
