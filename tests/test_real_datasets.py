"""covid-qu-ex(-infection) and lc25000(-lung/-colon) on tiny trees in the published layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medkd_bench import MedkdError
from medkd_bench.data.prepare import prepare
from medkd_bench.registry import load_registry
from medkd_bench_plugins.datasets import lc25000
from tests.fixture_trees import COVID_CLASSES, covid_tree, lc_tree

REGISTRY = load_registry()
SIZE = 32


def test_covid_lung_subset_reads_official_split_with_lung_masks(tmp_path: Path):
    covid_tree(tmp_path)
    spec = REGISTRY.datasets["covid-qu-ex"]
    assert spec.classes == COVID_CLASSES and spec.needs_root and spec.channels == 1
    assert spec.mask_names == ("lung",) and spec.localisation_mask == "lung"
    data = prepare(spec, SIZE, tmp_path, {})
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        part = data.splits[split]
        assert part.images.shape == (3 * n, 1, SIZE, SIZE) and part.images.dtype == torch.uint8
        assert torch.bincount(part.labels).tolist() == [n, n, n]
        assert set(part.masks) == {"lung"}
        lung = part.masks["lung"]
        assert lung.dtype == torch.bool and lung[:, :, : SIZE // 2 - 1].all() and not lung[:, :, SIZE // 2 + 1 :].any()
    # Classes were written with different brightness: labels follow the class folders.
    train = data.splits["train"]
    means = [float(train.images[train.labels == c].float().mean()) for c in range(3)]
    assert means[0] < means[1] < means[2]
    # Grey images are stored with one channel and repeated to three for the models.
    assert data.normalise(train.images[:2]).shape == (2, 3, SIZE, SIZE)


def test_covid_infection_subset_has_lung_and_infection_masks(tmp_path: Path):
    covid_tree(tmp_path, "infection")
    spec = REGISTRY.datasets["covid-qu-ex-infection"]
    assert spec.mask_names == ("lung", "infection") and spec.localisation_mask == "infection"
    data = prepare(spec, SIZE, tmp_path, {})
    test = data.splits["test"]
    has_infection = test.masks["infection"].flatten(1).any(1)
    assert has_infection.tolist() == (test.labels == 0).tolist()  # only COVID-19 images have infection
    assert not (test.masks["infection"] & ~test.masks["lung"]).any()
    # The lung subset is not read from the infection subset's folder.
    with pytest.raises(MedkdError, match="no folder 'Lung Segmentation Data/Lung Segmentation Data'"):
        prepare(REGISTRY.datasets["covid-qu-ex"], SIZE, tmp_path, {})


@pytest.mark.parametrize("where", ["parent", "archive", "itself"])
def test_data_root_may_be_the_parent_an_archive_folder_or_the_dataset_folder(tmp_path: Path, where: str):
    parent = tmp_path / "archive" if where == "archive" else tmp_path
    base = lc_tree(parent, per_class=5)
    root = base if where == "itself" else tmp_path
    spec = REGISTRY.datasets["lc25000-colon"]
    assert spec.locate(root) == base
    assert len(prepare(spec, SIZE, root, {}).splits["train"]) == 2 * 3


def test_covid_root_may_be_either_of_the_doubled_folders(tmp_path: Path):
    base = covid_tree(tmp_path)
    locate = REGISTRY.datasets["covid-qu-ex"].locate
    assert locate(tmp_path) == locate(base) == locate(base.parent) == base


def test_lc25000_variants_classes_and_stratified_counts(tmp_path: Path):
    lc_tree(tmp_path, per_class=10)
    expected = {"lc25000": ("lung_aca", "lung_n", "lung_scc", "colon_aca", "colon_n"),
                "lc25000-lung": ("lung_aca", "lung_n", "lung_scc"), "lc25000-colon": ("colon_aca", "colon_n")}
    for name, classes in expected.items():
        spec = REGISTRY.datasets[name]
        assert spec.classes == classes and spec.channels == 3 and spec.mask_names == ()
        data = prepare(spec, SIZE, tmp_path, {})
        k = len(classes)
        # 10 per class: test 20% = 2, val 10% = 1, train 7, in every class.
        for split, n in (("train", 7), ("val", 1), ("test", 2)):
            part = data.splits[split]
            assert part.images.shape == (k * n, 3, SIZE, SIZE)
            assert torch.bincount(part.labels, minlength=k).tolist() == [n] * k
    # The variants read the same files: lung_n in the 5-class task is lung_n in the lung-only one.
    five = prepare(REGISTRY.datasets["lc25000"], SIZE, tmp_path, {}).splits["test"]
    lung = prepare(REGISTRY.datasets["lc25000-lung"], SIZE, tmp_path, {}).splits["test"]
    assert torch.equal(five.images[five.labels == 1], lung.images[lung.labels == 1])


def split_names(name: str, root: Path, options: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"train": set(), "val": set(), "test": set()}
    for by_split in lc25000.assignment(name, root, {**lc25000.DEFAULTS, **options}):
        for split, files in by_split.items():
            out[split] |= {f.name for f in files}
    return out


def test_lc25000_split_is_seeded_stable_and_independent_of_the_machine(tmp_path: Path):
    a = lc_tree(tmp_path / "a", per_class=10)
    # The same names, written in reverse order into another folder: another "machine".
    b = tmp_path / "b" / "lung_colon_image_set" / "colon_image_sets" / "colon_n"
    b.mkdir(parents=True)
    for f in sorted((a / "colon_image_sets" / "colon_n").iterdir(), reverse=True):
        (b / f.name).write_bytes(f.read_bytes())
    first = lc25000.split_class("lc25000-colon", "colon_n", sorted((a / "colon_image_sets" / "colon_n").iterdir()),
                                lc25000.DEFAULTS)
    second = lc25000.split_class("lc25000-colon", "colon_n", list(b.iterdir()), lc25000.DEFAULTS)
    assert {k: [p.name for p in v] for k, v in first.items()} == {k: [p.name for p in v] for k, v in second.items()}
    # A fixed golden split: sha256 gives this on every machine and Python version.
    assert [p.name for p in first["test"]] == GOLDEN_TEST and [p.name for p in first["val"]] == GOLDEN_VAL
    # Splits are disjoint and cover every file; another seed gives another split.
    names = split_names("lc25000", tmp_path / "a", {})
    assert not (names["train"] & names["test"]) and not (names["val"] & names["test"])
    assert len(names["train"] | names["val"] | names["test"]) == 50
    assert split_names("lc25000", tmp_path / "a", {"seed": 1}) != names
    # The checksum is part of the fingerprint and changes with the seed and the fractions.
    fp = REGISTRY.datasets["lc25000"].fingerprint
    base = fp(tmp_path / "a", lc25000.DEFAULTS)
    assert base == fp(tmp_path / "a", lc25000.DEFAULTS) and base["files"] == 50
    assert fp(tmp_path / "a", {**lc25000.DEFAULTS, "seed": 1})["split"] != base["split"]
    assert fp(tmp_path / "a", {**lc25000.DEFAULTS, "test_fraction": 0.3})["split"] != base["split"]


GOLDEN_TEST = ["colon_n3.jpeg", "colon_n6.jpeg"]
GOLDEN_VAL = ["colon_n7.jpeg"]


def test_lc25000_bad_fractions_are_one_line_errors(tmp_path: Path):
    lc_tree(tmp_path, per_class=4)
    spec = REGISTRY.datasets["lc25000-colon"]
    with pytest.raises(MedkdError, match="val_fraction \\+ test_fraction must be below 1"):
        prepare(spec, SIZE, tmp_path, {"val_fraction": 0.5, "test_fraction": 0.5})
    with pytest.raises(MedkdError, match="option test_fraction=2"):
        prepare(spec, SIZE, tmp_path, {"test_fraction": 2})
    for f in sorted((tmp_path / "lung_colon_image_set" / "colon_image_sets" / "colon_n").iterdir())[2:]:
        f.unlink()
    with pytest.raises(MedkdError, match="class 'colon_n' has 2 file\\(s\\), too few"):
        prepare(spec, SIZE, tmp_path, {})
