"""MedMNIST: the user's local .npz files with their official splits; ChestMNIST and broken files refused.

Tests write small files of the same format (tests.fixture_trees.medmnist_npz); nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medkd_bench.registry import load_registry
from medkd_bench_plugins.datasets.medmnist import SETS, SIZES, variants
from tests.fixture_trees import medmnist_npz
from tests.helpers import assert_one_line_error

REGISTRY = load_registry()


def test_one_name_per_file_for_every_2d_multiclass_set_and_size():
    names = {v.name: v.file for v in variants()}
    assert names["medmnist-pathmnist"] == "pathmnist.npz"
    assert names["medmnist-pneumoniamnist-224"] == "pneumoniamnist_224.npz"
    assert len(SETS) == 11 and len(names) == 12 * len(SIZES)
    assert all(name in REGISTRY.datasets for name in names)
    path = REGISTRY.datasets["medmnist-pathmnist"]
    assert path.classes[0] == "adipose" and len(path.classes) == 9 and path.channels == 3
    assert path.img_size == 32 and REGISTRY.datasets["medmnist-pathmnist-128"].img_size == 128
    assert REGISTRY.datasets["medmnist-organsmnist"].classes[-1] == "spleen"


def test_rgb_file_loads_official_splits_resized_like_image_files(tmp_path):
    medmnist_npz(tmp_path / "medmnist" / "dermamnist_64.npz", size=64, channels=3, classes=7,
                 per_split={"train": 7, "val": 3, "test": 4})
    spec = REGISTRY.datasets["medmnist-dermamnist-64"]
    assert spec.locate(tmp_path) == tmp_path / "medmnist" / "dermamnist_64.npz"
    native = spec.load("test", 64, tmp_path, {})
    assert native.images.shape == (4, 3, 64, 64) and native.labels.tolist() == [0, 1, 2, 3]
    small = spec.load("test", 32, tmp_path, {})
    expected = Image.fromarray(native.images[1].permute(1, 2, 0).numpy()).resize((32, 32), Image.Resampling.BILINEAR)
    assert np.array_equal(small.images[1].permute(1, 2, 0).numpy(), np.asarray(expected))
    assert len(spec.load("train", 32, tmp_path, {})) == 7
    assert spec.fingerprint(tmp_path, {})["file"] == "dermamnist_64.npz"


def test_datasets_check_and_the_full_matrix_find_the_files_under_the_root(tmp_path, run_cli, dirs):
    medmnist_npz(tmp_path / "data" / "pneumoniamnist.npz")
    check = run_cli(["datasets", "check", "medmnist-pneumoniamnist", "--root", str(tmp_path / "data"),
                     "--work-dir", str(tmp_path / "work")])
    assert check.exit_code == 0, check.err
    assert "images per class and split at 32 px" in check.out and "ok: medmnist-pneumoniamnist" in check.out
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:6]]
            for line in check.out.splitlines() if line.count("│") >= 6}
    assert rows["normal"] == ["3", "2", "2", "7"] and rows["pneumonia"] == ["3", "1", "1", "5"]
    plan = run_cli(["run", "--matrix", "full", "--dry-run", "--data-root", str(tmp_path / "data"), *dirs])
    assert plan.exit_code == 0, plan.err
    assert "medmnist-pneumoniamnist | teacher vgg19" in plan.out
    assert "skipped 47 datasets of plugin medmnist, medmnist-bloodmnist and 46 more alike: " in plan.out


def test_chestmnist_is_refused_with_the_reason(tmp_path, run_cli, dirs):
    medmnist_npz(tmp_path / "chestmnist.npz", train_labels=np.zeros((6, 14), np.uint8))
    check = run_cli(["datasets", "check", "medmnist-chestmnist", "--root", str(tmp_path)])
    assert_one_line_error(check, "chestmnist.npz: ChestMNIST is multi-label", "not supported")
    named = run_cli(["run", "--datasets", "medmnist-chestmnist", "--dry-run", "--data-root", str(tmp_path), *dirs])
    assert_one_line_error(named, "ChestMNIST is multi-label")
    plan = run_cli(["run", "--matrix", "full", "--dry-run", "--data-root", str(tmp_path), *dirs])
    assert "skipped dataset medmnist-chestmnist: " in plan.out


@pytest.mark.parametrize(("replace", "message"), [
    ({"val_labels": None}, "bloodmnist.npz: no key 'val_labels' (a MedMNIST file holds train_images"),
    ({"test_labels": np.array([[0], [8], [1]])}, "key 'test_labels': labels in [0, 8], out of range for 8 classes"),
    ({"train_labels": np.zeros((6, 14), np.uint8)}, "key 'train_labels': labels (6, 14) are multi-label"),
    ({"val_images": np.zeros((3, 28, 28), np.uint8)}, "key 'val_images': 1 channel(s), but bloodmnist images have 3"),
    ({"test_images": np.zeros((3, 28, 28, 3), np.float32)}, "key 'test_images': expected uint8 (N, H, W)"),
    ({"test_labels": np.array([[0], [1]])}, "key 'test_labels': expected 3 integer labels"),
])
def test_a_broken_file_is_one_line_naming_the_file_and_key(tmp_path, run_cli, replace, message):
    medmnist_npz(tmp_path / "bloodmnist.npz", channels=3, classes=8, per_split={"train": 8, "val": 3, "test": 3},
                 **replace)
    result = run_cli(["datasets", "check", "medmnist-bloodmnist", "--root", str(tmp_path),
                      "--work-dir", str(tmp_path / "work")])
    assert_one_line_error(result, message)
    assert not (tmp_path / "work" / "cache" / "medmnist-bloodmnist").exists() or \
        not any(p.name.startswith("test") for p in (tmp_path / "work" / "cache" / "medmnist-bloodmnist").iterdir())


def test_not_an_npz_and_a_missing_file_are_one_line_errors(tmp_path, run_cli):
    (tmp_path / "octmnist.npz").write_text("not a zip")
    bad = run_cli(["datasets", "check", "medmnist-octmnist", "--root", str(tmp_path)])
    assert_one_line_error(bad, "octmnist.npz: not a readable .npz file")
    gone = run_cli(["datasets", "check", "medmnist-octmnist-64", "--root", str(tmp_path)])
    assert_one_line_error(gone, "no MedMNIST file for it in --data-root")


def test_a_single_array_non_square_images_and_no_root_are_one_line_errors(tmp_path, run_cli):
    with open(tmp_path / "breastmnist.npz", "wb") as f:
        np.save(f, np.zeros((2, 28, 28), np.uint8))
    single = run_cli(["datasets", "check", "medmnist-breastmnist", "--root", str(tmp_path)])
    assert_one_line_error(single, "breastmnist.npz: a single array, not an .npz archive")
    medmnist_npz(tmp_path / "retinamnist.npz", channels=3, classes=5, per_split={"train": 5, "val": 2, "test": 2},
                 val_images=np.zeros((2, 28, 20, 3), np.uint8))
    wide = run_cli(["datasets", "check", "medmnist-retinamnist", "--root", str(tmp_path),
                    "--work-dir", str(tmp_path / "work")])
    assert_one_line_error(wide, "key 'val_images': expected uint8 (N, H, W) or (N, H, W, 3) square")
    spec = REGISTRY.datasets["medmnist-retinamnist"]
    with pytest.raises(Exception, match="needs a local copy"):
        spec.load("train", 32, None, {})
    with pytest.raises(Exception, match="is not a folder"):
        spec.locate(tmp_path / "retinamnist.npz")
