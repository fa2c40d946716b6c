"""`datasets add`: the user's own image folders and CSV manifests, registered from spec files.

Trees are real PNG/JPEG/TIFF/BMP files at 40 px, a handful per class. One quick matrix runs on
the class-folder layout (to its leaderboard page); the other layouts are checked with
`datasets check` and by loading the registered spec's splits.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medkd_bench.registry import load_registry
from tests.fixture_trees import colour_image, grey_image, lung_mask
from tests.helpers import TINY_DATA, assert_one_line_error
from tests.test_datasets_cli import TINY_TEACHER

CLASSES = ("benign", "malignant", "normal")


def class_tree(root: Path, per_class: int = 6, masks: Path | None = None, classes=CLASSES, suffix=".png") -> Path:
    """``root/<class>/<class>_<i>.png`` (grey), masks mirrored under ``masks``."""
    for label, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(grey_image(label, i)).save(root / cls / f"{cls}_{i}{suffix}")
            if masks is not None:
                (masks / cls).mkdir(parents=True, exist_ok=True)
                Image.fromarray(lung_mask()).save(masks / cls / f"{cls}_{i}{suffix}")
    return root


def split_tree(root: Path, masks: Path | None = None) -> Path:
    """``root/{Train,val,test}/<class>/``: RGB images as JPEG, TIFF and BMP; counts 3/2/1 per class."""
    for split, n in (("Train", 3), ("val", 2), ("test", 1)):
        for label, cls in enumerate(CLASSES[:2]):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                name = f"{cls}_{i}{('.jpg', '.tif', '.bmp')[i % 3]}"
                Image.fromarray(colour_image(label, i)).save(folder / name)
                if masks is not None:
                    (masks / split / cls).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(lung_mask()).save(masks / split / cls / name)
    (root / "README.txt").write_text("files at the top of the root are not read")
    return root


def add(run_cli, tmp_path: Path, name: str, *args: str):
    return run_cli(["datasets", "add", name, *args, "--out", str(tmp_path / "specs" / f"{name}.json")])


@pytest.fixture
def specs(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "specs"
    folder.mkdir()
    monkeypatch.setenv("MEDKD_DATASETS", str(folder))
    return folder


@pytest.mark.slow
def test_class_folders_with_masks_run_a_quick_matrix_to_their_leaderboard(tmp_path, specs, run_cli, dirs):
    class_tree(tmp_path / "imgs", masks=tmp_path / "masks")
    added = add(run_cli, tmp_path, "my-xray", "--folder", str(tmp_path / "imgs"), "--masks", str(tmp_path / "masks"))
    assert added.exit_code == 0, added.err
    assert "added dataset my-xray: 3 classes (benign, malignant, normal), class-folders, grey, with masks; " \
           "files: train 12, val 3, test 3" in added.out
    doc = json.loads((specs / "my-xray.json").read_text())
    assert doc["classes"] == list(CLASSES) and doc["channels"] == 1 and doc["img_size"] == 64
    assert doc["split"] == {"seed": 0, "val_fraction": 0.1, "test_fraction": 0.1}

    plugin = tmp_path / "tiny_teacher.py"
    plugin.write_text(TINY_TEACHER)
    result = run_cli(["run", "--plugin", str(plugin), "--matrix", "quick", "--teachers", "tiny-resnet",
                      "--datasets", "my-xray", "--explainers", "grad-cam", *TINY_DATA, *dirs])
    assert result.exit_code == 0, result.out + result.err
    assert "3 trained" in result.out
    board = (tmp_path / "boards" / "my-xray.md").read_text()
    assert "tiny-resnet" in board and "ofa-595" in board
    assert "](plots/my-xray.pareto.png)" in board and (tmp_path / "boards" / "plots" / "my-xray.pareto.png").is_file()
    with open(tmp_path / "boards" / "results.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["dataset"] == "my-xray"]
    assert sorted(r["method"] for r in rows) == ["kd", "label-only", "teacher"]
    assert all(r["status"] == "done" and r["accuracy"] and r["roc_auc"] for r in rows)
    with sqlite3.connect(tmp_path / "work" / "runs.sqlite") as db:
        configs = [json.loads(row[0]) for row in db.execute("SELECT config FROM cells")]
    files = {json.dumps(c["dataset"]["files"], sort_keys=True) for c in configs}
    assert len(files) == 1
    fingerprint = json.loads(files.pop())
    assert fingerprint["files"] == 36 and len(fingerprint["spec"]) == 16 and len(fingerprint["split"]) == 16
    assert len(list((tmp_path / "work" / "cache" / "my-xray").iterdir())) == 3  # decoded once, cached


def test_split_folders_keep_the_official_split_and_read_rgb_jpeg_tiff_bmp(tmp_path, specs, run_cli):
    split_tree(tmp_path / "data", masks=tmp_path / "masks")
    added = add(run_cli, tmp_path, "derm", "--folder", str(tmp_path / "data"), "--masks", str(tmp_path / "masks"),
                "--seed", "3")
    assert added.exit_code == 0, added.err
    assert "split-folders, RGB, with masks; files: train 6, val 4, test 2" in added.out
    assert "--val, --test and --seed are not used" in added.out
    spec = load_registry().datasets["derm"]
    assert spec.classes == CLASSES[:2] and spec.channels == 3 and spec.mask_names == ("mask",)
    assert spec.localisation_mask == "mask" and not spec.needs_root and spec.options == {}
    test = spec.load("test", 32, None, {})
    assert test.images.shape == (2, 3, 32, 32) and test.labels.tolist() == [0, 1]
    assert test.masks["mask"][:, :, :16].all() and not test.masks["mask"][:, :, 16:].any()
    assert len(spec.load("train", 32, None, {})) == 6


def test_manifest_with_split_and_mask_columns_is_checked_and_loads(tmp_path, specs, run_cli):
    class_tree(tmp_path / "files" / "img", per_class=3, masks=tmp_path / "files" / "seg", classes=("a", "b"))
    lines = ["path,label,split,mask"]
    for cls in ("a", "b"):
        for i, split in enumerate(("train", "val", "test")):
            lines.append(f"img/{cls}/{cls}_{i}.png,{cls.upper()},{split},seg/{cls}/{cls}_{i}.png")
    (tmp_path / "files" / "list.csv").write_text("\n".join(lines) + "\n")
    added = add(run_cli, tmp_path, "listed", "--csv", str(tmp_path / "files" / "list.csv"))
    assert added.exit_code == 0, added.err
    assert "2 classes (A, B), manifest, grey, with masks; files: train 2, val 2, test 2" in added.out
    check = run_cli(["datasets", "check", "listed", "--img-size", "32", "--work-dir", str(tmp_path / "work")])
    assert check.exit_code == 0, check.err
    assert "fingerprint: spec " in check.out and "ok: listed: every file read" in check.out
    spec = load_registry().datasets["listed"]
    val = spec.load("val", 32, None, {})
    assert val.labels.tolist() == [0, 1] and val.masks["mask"].shape == (2, 32, 32)


def test_manifest_without_split_is_split_by_seed_per_label(tmp_path, specs, run_cli):
    class_tree(tmp_path / "img", per_class=10, classes=("x", "y"), suffix=".jpg")
    rows = [f"img/{c}/{c}_{i}.jpg,{c}" for c in ("x", "y") for i in range(10)]
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    added = add(run_cli, tmp_path, "seeded", "--csv", str(tmp_path / "m.csv"), "--val", "0.2", "--test", "0.3",
                "--channels", "rgb")
    assert added.exit_code == 0, added.err
    assert "RGB; files: train 10, val 4, test 6" in added.out
    spec = load_registry().datasets["seeded"]
    assert spec.channels == 3 and spec.options == {"seed": 0, "val_fraction": 0.2, "test_fraction": 0.3}
    first = spec.fingerprint(None, spec.options)
    assert spec.fingerprint(None, {**spec.options, "seed": 1})["split"] != first["split"]  # seed moves files
    assert spec.fingerprint(None, spec.options) == first
    Image.fromarray(grey_image(0, 99)).save(tmp_path / "img" / "x" / "x_0.jpg")  # a replaced file
    assert spec.fingerprint(None, spec.options)["sha256"] != first["sha256"]


def test_grey_detection_reads_equal_rgb_planes_as_grey(tmp_path, specs, run_cli):
    root = tmp_path / "imgs"
    for label, cls in enumerate(("p", "q")):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.repeat(grey_image(label, i)[..., None], 3, axis=2)).save(root / cls / f"{i}.png")
    added = add(run_cli, tmp_path, "greyish", "--folder", str(root))
    assert added.exit_code == 0 and ", grey;" in added.out


def test_a_changed_folder_is_never_silently_reused(tmp_path, specs, run_cli):
    class_tree(tmp_path / "imgs", per_class=4)
    assert add(run_cli, tmp_path, "mine", "--folder", str(tmp_path / "imgs"), "--val", "0.25",
               "--test", "0.25").exit_code == 0
    spec = load_registry().datasets["mine"]
    before = spec.fingerprint(None, spec.options)
    Image.fromarray(grey_image(0, 50)).save(tmp_path / "imgs" / "benign" / "new.png")
    after = spec.fingerprint(None, spec.options)
    assert after["files"] == before["files"] + 1 and after["split"] != before["split"]
    (tmp_path / "imgs" / "extra").mkdir()
    check = run_cli(["datasets", "check", "mine", "--work-dir", str(tmp_path / "work")])
    assert_one_line_error(check, "differ from the ['benign', 'malignant', 'normal'] recorded in")


def test_skip_bad_adds_a_folder_with_a_stray_file_and_is_remembered(tmp_path, specs, run_cli):
    class_tree(tmp_path / "imgs", per_class=4, classes=("a", "b"))
    (tmp_path / "imgs" / "a" / "notes.txt").write_text("not an image")
    strict = add(run_cli, tmp_path, "stray", "--folder", str(tmp_path / "imgs"), "--val", "0.25", "--test", "0.25")
    assert_one_line_error(strict, "notes.txt: not an image file")
    assert not (tmp_path / "specs" / "stray.json").exists()
    added = add(run_cli, tmp_path, "stray", "--folder", str(tmp_path / "imgs"), "--val", "0.25", "--test", "0.25",
                "--skip-bad")
    assert added.exit_code == 0 and "warning: 1 bad file(s)" in added.out and "every command leaves" in added.out
    work = ["--work-dir", str(tmp_path / "work"), "--img-size", "32"]
    remembered = run_cli(["datasets", "check", "stray", *work])  # the spec file says --skip-bad
    assert remembered.exit_code == 0 and "1 bad file(s) will be left out (datasets add --skip-bad)" in remembered.out
    doc = json.loads((specs / "stray.json").read_text())
    (specs / "stray.json").write_text(json.dumps({**doc, "skip_bad": False}))
    assert_one_line_error(run_cli(["datasets", "check", "stray", *work]), "--skip-bad")
    assert run_cli(["datasets", "check", "stray", *work, "--skip-bad"]).exit_code == 0


def _bad_one_class(tmp: Path) -> list[str]:
    class_tree(tmp / "imgs", classes=("only",))
    return ["--folder", str(tmp / "imgs")]


def _bad_small_class(tmp: Path) -> list[str]:
    class_tree(tmp / "imgs", per_class=2, classes=("a", "b"))
    return ["--folder", str(tmp / "imgs")]


def _bad_missing_row_file(tmp: Path) -> list[str]:
    class_tree(tmp / "img", per_class=3, classes=("a", "b"))
    (tmp / "m.csv").write_text("path,label,split\nimg/a/a_0.png,a,train\nimg/a/gone.png,a,val\n"
                               "img/a/a_2.png,a,test\nimg/b/b_0.png,b,train\n")
    return ["--csv", str(tmp / "m.csv")]


def _bad_orphan_mask(tmp: Path) -> list[str]:
    class_tree(tmp / "imgs", masks=tmp / "masks", classes=("a", "b"))
    Image.fromarray(lung_mask()).save(tmp / "masks" / "b" / "lonely.png")
    return ["--folder", str(tmp / "imgs"), "--masks", str(tmp / "masks")]


def _bad_image_without_mask(tmp: Path) -> list[str]:
    class_tree(tmp / "imgs", masks=tmp / "masks", classes=("a", "b"))
    (tmp / "masks" / "a" / "a_3.png").unlink()
    return ["--folder", str(tmp / "imgs"), "--masks", str(tmp / "masks")]


def _bad_header(tmp: Path) -> list[str]:
    (tmp / "m.csv").write_text("file,lable\nx.png,a\n")
    return ["--csv", str(tmp / "m.csv")]


def _bad_split_value(tmp: Path) -> list[str]:
    (tmp / "m.csv").write_text("path,label,split\nx.png,a,train\ny.png,b,training\n")
    return ["--csv", str(tmp / "m.csv")]


def _bad_split_folders(tmp: Path) -> list[str]:
    (tmp / "imgs" / "train" / "a").mkdir(parents=True)
    (tmp / "imgs" / "test" / "a").mkdir(parents=True)
    return ["--folder", str(tmp / "imgs")]


@pytest.mark.parametrize(("make", "message"), [
    (_bad_one_class, "imgs: class folders: only 'only'; a classifier needs at least two classes"),
    (_bad_small_class, "class 'a' has 2 file(s), too few for train, val and test"),
    (_bad_missing_row_file, "gone.png: missing, listed in {tmp}/m.csv row 3"),
    (_bad_orphan_mask, "lonely.png: mask without an image of the same name in {tmp}/imgs/b"),
    (_bad_image_without_mask, "a_3.png: image without its mask ({tmp}/masks/a)"),
    (_bad_header, "m.csv: header must be path,label[,split][,mask] (found file,lable)"),
    (_bad_split_value, "m.csv row 3: split 'training' must be train, val or test"),
    (_bad_split_folders, "imgs: no 'val' folder; a split layout needs train, val and test"),
])
def test_bad_input_is_one_line_naming_the_file_or_row_and_writes_nothing(tmp_path, specs, run_cli, make, message):
    args = make(tmp_path)
    result = add(run_cli, tmp_path, "bad", *args)
    assert_one_line_error(result, message.format(tmp=tmp_path))
    assert list(specs.iterdir()) == []  # nothing written, not even a temporary file


@pytest.mark.parametrize(("args", "message"), [
    (["--folder", "x", "--csv", "y"], "give exactly one of --folder ROOT and --csv MANIFEST"),
    ([], "give exactly one of --folder ROOT and --csv MANIFEST"),
    (["--csv", "y", "--masks", "m"], "--masks: a manifest names its masks in a mask column"),
    (["--folder", "x", "--val", "0.5", "--test", "0.5"], "--val 0.5 + --test 0.5 must be below 1"),
    (["--folder", "x", "--val", "0"], "'0' is out of range"),
    (["--folder", "no-such-folder"], "missing image folder"),
    (["--csv", "no-such.csv"], "manifest no-such.csv: no such file"),
])
def test_bad_flags_are_one_line_errors(tmp_path, specs, run_cli, args, message):
    result = add(run_cli, tmp_path, "flags", *args)
    assert_one_line_error(result, message)
    assert list(specs.iterdir()) == []


def test_names_are_checked_against_the_rule_and_the_registry(tmp_path, specs, run_cli):
    class_tree(tmp_path / "imgs", per_class=4, classes=("a", "b"))
    folder = ["--folder", str(tmp_path / "imgs"), "--val", "0.25", "--test", "0.25"]
    bad_name = add(run_cli, tmp_path, "My Data", *folder)
    assert_one_line_error(bad_name, "dataset name 'My Data' is not allowed (names are lowercase slugs")
    taken = add(run_cli, tmp_path, "lc25000", *folder)
    assert_one_line_error(taken, "dataset 'lc25000' is already registered by plugin 'lc25000'")
    assert add(run_cli, tmp_path, "mine", *folder).exit_code == 0
    again = add(run_cli, tmp_path, "mine", *folder)
    assert_one_line_error(again, "already registered by plugin 'image-folder'")
    in_work_dir = run_cli(["datasets", "add", "other", *folder, "--work-dir", str(tmp_path / "w")])
    assert in_work_dir.exit_code == 0 and f"commands given --work-dir {tmp_path / 'w'} find it" in in_work_dir.out
    assert (tmp_path / "w" / "datasets" / "other.json").is_file()
    exists = run_cli(["datasets", "add", "other", *folder, "--work-dir", str(tmp_path / "w")])
    assert_one_line_error(exists, "already registered by plugin 'image-folder'")
    elsewhere = run_cli(["datasets", "add", "third", *folder, "--out", str(tmp_path / "loose" / "third.json")])
    assert elsewhere.exit_code == 0 and "note: it is not where datasets are looked for" in elsewhere.out
    again = run_cli(["datasets", "add", "third", *folder, "--out", str(tmp_path / "loose" / "third.json")])
    assert_one_line_error(again, "third.json: exists; remove it")


def test_bad_spec_files_fail_with_one_line_naming_the_file(tmp_path, specs, run_cli, monkeypatch):
    class_tree(tmp_path / "imgs", per_class=4, classes=("a", "b"))
    assert add(run_cli, tmp_path, "mine", "--folder", str(tmp_path / "imgs"), "--val", "0.25",
               "--test", "0.25").exit_code == 0
    doc = json.loads((specs / "mine.json").read_text())
    (specs / "copy.json").write_text(json.dumps(doc))
    dup = run_cli(["datasets", "check", "mine"])
    assert_one_line_error(dup, "both name 'mine'")
    (specs / "copy.json").write_text(json.dumps({**doc, "name": "copy", "channels": 2}))
    bad = run_cli(["datasets", "check", "mine"])
    assert_one_line_error(bad, "copy.json: 'channels' must be 1 or 3")
    (specs / "copy.json").write_text("{not json")
    assert "copy.json: not valid JSON" in run_cli(["datasets", "check", "mine"]).err
    monkeypatch.setenv("MEDKD_DATASETS", str(tmp_path / "nowhere"))
    gone = run_cli(["plugins"])
    assert_one_line_error(gone, "MEDKD_DATASETS entry", "nowhere: no such file or folder")


def test_a_seeded_split_option_changes_the_split_and_is_range_checked(tmp_path, specs, run_cli):
    class_tree(tmp_path / "imgs", per_class=10, classes=("a", "b"))
    assert add(run_cli, tmp_path, "mine", "--folder", str(tmp_path / "imgs")).exit_code == 0
    spec = load_registry().datasets["mine"]
    one = spec.load("test", 32, None, spec.options)
    other = spec.load("test", 32, None, {**spec.options, "seed": 5})
    assert one.labels.tolist() == other.labels.tolist() == [0, 1]
    assert not torch.equal(one.images, other.images)
    wrong = run_cli(["datasets", "check", "mine", "--dataset-option", "mine.val_fraction=2"])
    assert_one_line_error(wrong, "mine.val_fraction")


def test_a_quick_look_still_starts_from_generated_data(tmp_path, specs, run_cli, dirs):
    class_tree(tmp_path / "imgs", per_class=4, classes=("a", "b"))
    assert add(run_cli, tmp_path, "aaa-first", "--folder", str(tmp_path / "imgs"), "--val", "0.25",
               "--test", "0.25").exit_code == 0
    quick = run_cli(["run", "--matrix", "quick", "--dry-run", *dirs])
    assert quick.exit_code == 0 and "synthetic-cxr | teacher" in quick.out and "aaa-first |" not in quick.out
    full = run_cli(["run", "--matrix", "full", "--dry-run", "--students", "ofa-595", *dirs])
    assert "aaa-first | teacher vgg19" in full.out  # no --data-root needed: the spec names the folder


@pytest.mark.parametrize(("csv_text", "message"), [
    ("path,label\n", "m.csv: no rows below the header"),
    ("path,label\nimg/a/a_0.png,\n", "m.csv row 2: path and label must not be empty"),
    ("path,label\nimg/a/a_0.png,a\nimg/a/a_0.png,b\n", "m.csv row 3: img/a/a_0.png is listed again (first in row 2)"),
    ("path,label\nimg/a/a_0.png,a\nimg/a/a_1.png,a\n", "m.csv: one label ('a'); a classifier needs at least two"),
    ("path,label,mask\nimg/a/a_0.png,a,\nimg/b/b_0.png,b,x.png\n", "m.csv row 2: empty mask"),
    ("path,label,split\nimg/a/a_0.png,a,train\nimg/b/b_0.png,b,train\nimg/a/a_1.png,a,test\n",
     "m.csv: no row in split 'val'"),
    ("path,label\n" + "".join(f"img/{c}/{c}_{i}.png,{c}\n" for c in "ab" for i in range(2)),
     "class 'a' has 2 file(s), too few for train, val and test"),
])
def test_manifest_problems_are_one_line_naming_the_file_and_row(tmp_path, specs, run_cli, csv_text, message):
    class_tree(tmp_path / "img", per_class=3, classes=("a", "b"))
    (tmp_path / "m.csv").write_text(csv_text)
    result = add(run_cli, tmp_path, "bad", "--csv", str(tmp_path / "m.csv"))
    assert_one_line_error(result, message)
    assert list(specs.iterdir()) == []


def test_an_empty_class_folder_and_a_missing_mask_root_are_errors(tmp_path, specs, run_cli):
    class_tree(tmp_path / "imgs", per_class=4, classes=("a", "b"))
    (tmp_path / "imgs" / "c").mkdir()
    empty = add(run_cli, tmp_path, "bad", "--folder", str(tmp_path / "imgs"))
    assert_one_line_error(empty, f"empty class folder {tmp_path / 'imgs' / 'c'}")
    (tmp_path / "imgs" / "c").rmdir()
    no_masks = add(run_cli, tmp_path, "bad", "--folder", str(tmp_path / "imgs"), "--masks", str(tmp_path / "none"))
    assert_one_line_error(no_masks, "missing bad mask folder")


@pytest.mark.parametrize(("change", "message"), [
    ({"format": "other"}, "not a medkd-bench dataset"),
    ({"version": 2}, "version 2 not supported"),
    ({"name": "Bad Name"}, "dataset name 'Bad Name' is not allowed"),
    ({"layout": "zip"}, "layout 'zip' must be one of"),
    ({"classes": ["a"]}, "'classes' must be two or more distinct names"),
    ({"img_size": "64"}, "missing or malformed 'img_size'"),
    ({"split": {}}, "'split' must be empty exactly for the split-folders layout"),
    ({"split": {"seed": 0}}, "'split' needs seed, val_fraction and test_fraction"),
    ({"mask_root": 3}, "malformed 'mask_root'"),
    ({"has_masks": 1}, "missing or malformed 'has_masks'"),
    ({"skip_bad": "yes"}, "'skip_bad' must be true or false"),
])
def test_every_spec_file_key_is_checked(tmp_path, change, message):
    from medkd_bench import MedkdError
    from medkd_bench.data.dataset_files import SPEC_FORMAT, from_document

    doc = {"format": SPEC_FORMAT, "version": 1, "name": "ok", "layout": "class-folders", "source": "/x",
           "mask_root": None, "has_masks": False, "classes": ["a", "b"], "channels": 1, "img_size": 64,
           "split": {"seed": 0, "val_fraction": 0.1, "test_fraction": 0.1}}
    assert from_document(doc, tmp_path / "ok.json").name == "ok"
    with pytest.raises(MedkdError, match="dataset spec file .*ok.json: ") as err:
        from_document({**doc, **change}, tmp_path / "ok.json")
    assert message in str(err.value)


@pytest.mark.slow
def test_a_manifest_and_a_medmnist_file_run_to_their_pages_rows_and_plots(tmp_path, specs, run_cli, dirs):
    """The issue's other two layouts end to end, in one run: a CSV manifest (seeded split) and a MedMNIST .npz."""
    from tests.fixture_trees import medmnist_npz

    class_tree(tmp_path / "files" / "img", per_class=6, classes=("a", "b"))
    rows = ["path,label"] + [f"img/{c}/{c}_{i}.png,{c}" for c in ("a", "b") for i in range(6)]
    (tmp_path / "files" / "list.csv").write_text("\n".join(rows) + "\n")
    assert add(run_cli, tmp_path, "listed", "--csv", str(tmp_path / "files" / "list.csv")).exit_code == 0
    medmnist_npz(tmp_path / "data" / "pneumoniamnist.npz", per_split={"train": 8, "val": 4, "test": 4})
    plugin = tmp_path / "tiny_teacher.py"
    plugin.write_text(TINY_TEACHER)
    result = run_cli(["run", "--plugin", str(plugin), "--teachers", "tiny-resnet", "--methods", "kd",
                      "--datasets", "listed,medmnist-pneumoniamnist", "--data-root", str(tmp_path / "data"),
                      "--explainers", "grad-cam", *TINY_DATA, *dirs])
    assert result.exit_code == 0, result.out + result.err
    assert "6 trained" in result.out
    boards = tmp_path / "boards"
    with open(boards / "results.csv", newline="") as f:
        done = [(r["dataset"], r["method"]) for r in csv.DictReader(f) if r["status"] == "done" and r["accuracy"]]
    for dataset in ("listed", "medmnist-pneumoniamnist"):
        page = (boards / f"{dataset}.md").read_text()
        assert "tiny-resnet" in page and f"](plots/{dataset}.pareto.png)" in page
        assert (boards / "plots" / f"{dataset}.pareto.png").is_file()
        assert sorted(m for d, m in done if d == dataset) == ["kd", "label-only", "teacher"]
    assert "normal | pneumonia" in (boards / "medmnist-pneumoniamnist.md").read_text()  # MedMNIST's class names
