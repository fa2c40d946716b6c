"""Tiny copies of the published dataset layouts, written as real PNG/JPEG files.

The trees mirror COVID-QU-Ex and LC25000 folder for folder (names with
spaces included) at 40 px, a handful of images per class, so the readers run
exactly as on the real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COVID_CLASSES = ("COVID-19", "Non-COVID", "Normal")
COVID_SPLITS = ("Train", "Val", "Test")
COVID_SUBSETS = {"lung": "Lung Segmentation Data", "infection": "Infection Segmentation Data"}
LC_CLASSES = (("lung_image_sets", "lung_aca"), ("lung_image_sets", "lung_n"), ("lung_image_sets", "lung_scc"),
              ("colon_image_sets", "colon_aca"), ("colon_image_sets", "colon_n"))
SIZE = 40


def lung_mask(size: int = SIZE) -> np.ndarray:
    """Left half of the image, top to bottom (after resizing, still the left half)."""
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[:, : size // 2] = 255
    return mask


def infection_mask(size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[size // 4 : size // 2, size // 8 : size // 2] = 255
    return mask


def grey_image(label: int, index: int, size: int = SIZE) -> np.ndarray:
    """Brightness by class, texture by index: classes differ, files are not identical."""
    rng = np.random.default_rng([label, index])
    return np.clip(60 + 60 * label + rng.normal(0, 10, (size, size)), 0, 255).astype(np.uint8)


def covid_tree(root: Path, subset: str = "lung", per_split: dict[str, int] | None = None) -> Path:
    """``root/<Subset> Data/<Subset> Data/{Train,Val,Test}/<class>/{images,lung masks[,infection masks]}``."""
    per_split = per_split or {"Train": 4, "Val": 2, "Test": 3}
    base = root / COVID_SUBSETS[subset] / COVID_SUBSETS[subset]
    for split in COVID_SPLITS:
        for label, cls in enumerate(COVID_CLASSES):
            folder = base / split / cls
            for sub in ("images", "lung masks") + (("infection masks",) if subset == "infection" else ()):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            for i in range(per_split[split]):
                name = f"{cls.lower()}_{split.lower()}_{i}.png"
                Image.fromarray(grey_image(label, i)).save(folder / "images" / name)
                Image.fromarray(lung_mask()).save(folder / "lung masks" / name)
                if subset == "infection":
                    infection = infection_mask() if cls == "COVID-19" else np.zeros((SIZE, SIZE), np.uint8)
                    Image.fromarray(infection).save(folder / "infection masks" / name)
    return base


def colour_image(label: int, index: int, size: int = SIZE) -> np.ndarray:
    rng = np.random.default_rng([label, index, 7])
    base = np.array([(40 * label) % 256, 200 - 30 * label, 120], dtype=np.float64)
    return np.clip(base + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)


def lc_tree(root: Path, per_class: int = 10, size: int = SIZE) -> Path:
    """``root/lung_colon_image_set/{lung,colon}_image_sets/<class>/<class>N.jpeg`` (LC25000 naming)."""
    base = root / "lung_colon_image_set"
    for label, (group, cls) in enumerate(LC_CLASSES):
        folder = base / group / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(colour_image(label, i, size)).save(folder / f"{cls}{i + 1}.jpeg", quality=90)
    return base


def medmnist_npz(path: Path, size: int = 28, channels: int = 1, classes: int = 2,
                 per_split: dict[str, int] | None = None, **replace: np.ndarray) -> Path:
    """A file in MedMNIST's format: ``{split}_images`` uint8 (N, H, W[, 3]), ``{split}_labels`` (N, 1).

    Labels cycle through the classes; ``replace`` swaps in (or, with None, drops) any key.
    """
    per_split = per_split or {"train": 6, "val": 3, "test": 3}
    arrays: dict[str, np.ndarray] = {}
    for k, (split, n) in enumerate(per_split.items()):
        labels = np.arange(n) % classes
        images = np.stack([grey_image(int(label), k * 100 + i, size) if channels == 1 else
                           colour_image(int(label), k * 100 + i, size) for i, label in enumerate(labels)])
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels.reshape(-1, 1).astype(np.uint8)
    for key, value in replace.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def raw16(label: int, index: int, size: int = SIZE) -> np.ndarray:
    """A uint16 image spanning about 1,000-60,000, as a radiology export: a class-dependent gradient plus noise.

    Every value is above 255, so a reader that clips to 8 bits sees a blank (all-white) image.
    """
    rng = np.random.default_rng([label, index, 16])
    ramp = np.linspace(0.0, 1.0, size)[None, :] * (0.5 + 0.5 * label)
    values = 1_000 + 59_000 * np.clip(ramp + rng.uniform(0, 0.5, (size, size)), 0, 1.5) / 1.5
    return values.astype(np.uint16)


def save_png16(path: Path, values: np.ndarray) -> Path:
    """``values`` (uint16) as a 16-bit greyscale PNG, written by Pillow ('I;16')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(values.astype(np.uint16))
    assert image.mode == "I;16"
    image.save(path)
    return path


def save_float_tiff(path: Path, values: np.ndarray) -> Path:
    """``values`` as a 32-bit float TIFF (Pillow mode 'F'), as quantitative maps are exported."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(values.astype(np.float32))
    assert image.mode == "F"
    image.save(path)
    return path


def save_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", **elements: object) -> Path:
    """``pixels`` as a DICOM file written by pydicom: (H, W) one frame, (F, H, W) multi-frame.

    Signed pixels (int16) are stored with Pixel Representation 1; ``elements``
    adds data elements by keyword (RescaleIntercept, WindowCenter, ...).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.set_pixel_data(pixels, photometric, 16)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
