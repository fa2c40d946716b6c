"""lc25000, lc25000-lung, lc25000-colon: LC25000 histopathology, read from a local copy.

LC25000 (Borkowski et al., 2019) is 25,000 768 px colour JPEGs, 5,000 per
class, extracted as::

    lung_colon_image_set/lung_image_sets/{lung_aca,lung_n,lung_scc}/*.jpeg
    lung_colon_image_set/colon_image_sets/{colon_aca,colon_n}/*.jpeg

It has no official split, so each class is split on its own (stratified)
by the host's seeded hash of each file's class and name (:func:`medkd_bench.split_class`:
sort a class's files by ``sha256(f"{seed}/{class}/{file name}")``, then the first
``test_fraction`` go to test, the next ``val_fraction`` to val, the rest to train).
The result depends only on the file names and the options, never on the machine
or on the order the file system lists files, and adding a file moves no other
file between splits. The split's checksum is part of the dataset's
fingerprint, so it is stored in every cell's config and config hash.

The lung-only (3 classes) and colon-only (2 classes) variants are datasets
of their own: a spec's classes are fixed per name, and their leaderboards
must not mix with the 5-class task's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
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
    keep_images,
    list_files,
    read_samples,
    require_folder,
    split_class,
)

ROOT_FOLDER = "lung_colon_image_set"
LUNG = (("lung_image_sets", "lung_aca"), ("lung_image_sets", "lung_n"), ("lung_image_sets", "lung_scc"))
COLON = (("colon_image_sets", "colon_aca"), ("colon_image_sets", "colon_n"))
#: name -> class folders (group, class); the class name is the folder name.
VARIANTS: dict[str, tuple[tuple[str, str], ...]] = {"lc25000": LUNG + COLON, "lc25000-lung": LUNG,
                                                     "lc25000-colon": COLON}
DEFAULTS = {"seed": 0, "val_fraction": 0.1, "test_fraction": 0.2}
SPLITS = ("train", "val", "test")
CITATION = ("Borkowski, Bui, Thomas, Wilson, DeLand, Mastorides: Lung and Colon Cancer Histopathological "
            "Image Dataset (LC25000), arXiv:1912.12142 (2019)")
DESCRIPTIONS = {
    "lc25000": "LC25000 histopathology, 5 classes: lung adenocarcinoma, benign lung, lung squamous cell "
               "carcinoma, colon adenocarcinoma, benign colon; seeded stratified split.",
    "lc25000-lung": "LC25000 lung tissue only, 3 classes (adenocarcinoma, benign, squamous cell carcinoma); "
                    "seeded stratified split.",
    "lc25000-colon": "LC25000 colon tissue only, 2 classes (adenocarcinoma, benign); seeded stratified split.",
}


def locate(name: str, root: Path) -> Path:
    return find_folder(root, ROOT_FOLDER, name)


def assignment(name: str, root: Path, options: Mapping[str, Any]) -> list[dict[str, list[Path]]]:
    """Per class (in class order), its files by split; folder problems raise."""
    base = locate(name, root)
    out = []
    for group, cls in VARIANTS[name]:
        folder = require_folder(base / group / cls, f"{name} class")
        files = list_files(folder)
        if not files:
            raise MedkdError(f"dataset {name!r}: empty class folder {folder}")
        out.append(split_class(name, cls, files, options))
    return out


def split_checksum(name: str, root: Path, options: Mapping[str, Any]) -> str:
    """SHA-256 of every ``split<TAB>class/file`` line: the split, as one stored value."""
    h = hashlib.sha256()
    for by_split in assignment(name, root, options):
        for split in SPLITS:
            for path in by_split[split]:
                h.update(f"{split}\t{path.parent.name}/{path.name}\n".encode())
    return h.hexdigest()[:16]


def load(name: str, split: str, img_size: int, root: Path | None, options: Mapping[str, Any]) -> SplitData:
    if root is None:
        raise MedkdError(f"dataset {name!r} needs a local copy: pass --data-root or set MEDKD_DATA")
    samples = []
    for label, by_split in enumerate(assignment(name, root, options)):
        samples += [ImageSample(path, label) for path in keep_images(by_split[split])]
    return read_samples(samples, img_size, channels=3, description=f"decoding {name} {split}")


def files(name: str, split: str, root: Path | None, options: Mapping[str, Any]) -> list[Path]:
    """Each image :func:`load` reads, in its order: the data checks name duplicates by file."""
    if root is None:
        raise MedkdError(f"dataset {name!r} needs a local copy: pass --data-root or set MEDKD_DATA")
    return [path for by_split in assignment(name, root, options) for path in keep_images(by_split[split])]


def fingerprint(name: str, root: Path | None, options: Mapping[str, Any]) -> dict[str, Any]:
    if root is None:
        raise MedkdError(f"dataset {name!r} needs a local copy: pass --data-root or set MEDKD_DATA")
    base = locate(name, root)
    digest = folder_digest([base / group / cls for group, cls in VARIANTS[name]], base)
    return {**digest, "split": split_checksum(name, root, options)}


@hookimpl
def register_datasets(register):
    for name, folders in VARIANTS.items():
        register(
            DatasetSpec(
                name=name,
                classes=tuple(cls for _, cls in folders),
                load=partial(load, name),
                img_size=224,
                channels=3,
                options=DEFAULTS,
                needs_root=True,
                citation=CITATION,
                description=DESCRIPTIONS[name],
                locate=partial(locate, name),
                fingerprint=partial(fingerprint, name),
                files=partial(files, name),
            )
        )
