"""Datasets found where they were added: ``datasets add --work-dir W`` is registered by every command given ``W``.

The suite sets ``MEDKD_DATASETS=""`` (no spec file from the environment or the
checkout), so whatever these tests find comes from the work dir alone.
Fixtures are real PNG files written by Pillow, plus a truncated JPEG that
``datasets add --skip-bad`` accepts and every later command must leave out by itself.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.fixture_trees import grey_image
from tests.helpers import TINY_DATA, assert_one_line_error
from tests.test_datasets_cli import TINY_TEACHER


def grey_tree(root: Path, per_class: int = 6, classes: tuple[str, ...] = ("benign", "malignant")) -> Path:
    """``root/<class>/<class>_<i>.png``: grey images, brightness by class, noise by index."""
    for label, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(grey_image(label, i)).save(root / cls / f"{cls}_{i}.png")
    return root


def truncated_jpeg(path: Path) -> Path:
    """A JPEG cut off after half its bytes: what an interrupted copy leaves behind."""
    Image.fromarray(grey_image(0, 99)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_dataset_added_in_a_work_dir_is_found_by_every_command_given_it(tmp_path, run_cli):
    grey_tree(tmp_path / "imgs")
    work = tmp_path / "w"
    added = run_cli(["datasets", "add", "my-xray", "--folder", str(tmp_path / "imgs"), "--work-dir", str(work)])
    assert added.exit_code == 0, added.err
    assert (work / "datasets" / "my-xray.json").is_file()
    assert f"commands given --work-dir {work} find it" in added.out and "not where" not in added.out

    wd = ["--work-dir", str(work)]
    check = run_cli(["datasets", "check", "my-xray", "--img-size", "32", *wd])
    assert check.exit_code == 0, check.err
    assert run_cli(["datasets", "preview", "my-xray", "--out", str(tmp_path / "p.png"), "--img-size", "32",
                    *wd]).exit_code == 0
    shown = run_cli(["plugins", "show", "my-xray", *wd])
    assert shown.exit_code == 0 and "dataset my-xray (plugin image-folder)" in shown.out
    assert "my-xray" in run_cli(["plugins", *wd]).out
    planned = run_cli(["run", "--matrix", "quick", "--datasets", "my-xray", "--dry-run", *TINY_DATA, *wd,
                       "--leaderboard-dir", str(tmp_path / "boards")])
    assert planned.exit_code == 0, planned.err
    assert "my-xray | teacher" in planned.out

    # Another work dir does not see it (and says so in one short line).
    other = run_cli(["run", "--datasets", "my-xray", "--dry-run", "--work-dir", str(tmp_path / "other")])
    assert_one_line_error(other, "unknown dataset(s) 'my-xray'")


def test_worker_processes_register_the_runs_work_dir_datasets(tmp_path, run_cli):
    """Pool and Ray workers rebuild the registry from the recipe: the run's work dir travels in its options."""
    from medkd_bench.run.executors.worker import WorkerRecipe, worker_setup
    from medkd_bench.run.run_options import RunOptions

    grey_tree(tmp_path / "imgs")
    work = tmp_path / "w"
    assert run_cli(["datasets", "add", "mine", "--folder", str(tmp_path / "imgs"),
                    "--work-dir", str(work)]).exit_code == 0
    registry, _ = worker_setup(WorkerRecipe((), RunOptions(work_dir=work.resolve()), device="cpu", amp="off"))
    assert "mine" in registry.datasets
    registry, _ = worker_setup(WorkerRecipe((), RunOptions(work_dir=tmp_path / "elsewhere"), device="cpu",
                                            amp="off"))
    assert "mine" not in registry.datasets


@pytest.mark.slow
def test_added_with_work_dir_and_skip_bad_then_run_from_that_work_dir(tmp_path, run_cli):
    """The issue's session: a folder with Thumbs.db and a truncated JPEG, added with --skip-bad, run without it."""
    root = grey_tree(tmp_path / "imgs", per_class=8)
    (root / "benign" / "Thumbs.db").write_bytes(b"\x00" * 64)
    truncated_jpeg(root / "malignant" / "cut.jpg")
    work = tmp_path / "w"
    wd = ["--work-dir", str(work), "--leaderboard-dir", str(tmp_path / "boards")]
    plugin = tmp_path / "tiny_teacher.py"
    plugin.write_text(TINY_TEACHER)
    quick = ["run", "--plugin", str(plugin), "--matrix", "quick", "--teachers", "tiny-resnet", "--explainers",
             "grad-cam", *TINY_DATA, *wd]

    # Added without --skip-bad (add decodes only a sample): the run stops before any training, in one line.
    strict = run_cli(["datasets", "add", "strict-tiles", "--folder", str(root), "--work-dir", str(work)])
    assert strict.exit_code == 0, strict.err
    assert json.loads((work / "datasets" / "strict-tiles.json").read_text())["skip_bad"] is False
    stopped = run_cli([*quick, "--datasets", "strict-tiles"])
    assert_one_line_error(stopped, "cut.jpg", "--skip-bad")
    assert "trained" not in stopped.out
    assert not (tmp_path / "boards" / "strict-tiles.md").exists()  # no page of empty tables

    added = run_cli(["datasets", "add", "tiles", "--folder", str(root), "--work-dir", str(work), "--skip-bad"])
    assert added.exit_code == 0, added.err
    assert json.loads((work / "datasets" / "tiles.json").read_text())["skip_bad"] is True
    check = run_cli(["datasets", "check", "tiles", "--img-size", "32", "--work-dir", str(work)])
    assert check.exit_code == 0, check.out + check.err  # the spec's choice: no --skip-bad needed here either
    assert "bad files: left out (datasets add --skip-bad, recorded in" in check.out and "cut.jpg" in check.out

    result = run_cli([*quick, "--datasets", "tiles"])
    assert result.exit_code == 0, result.out + result.err
    assert "3 trained" in result.out and "0 failed" in result.out
    assert "cut.jpg" in result.err  # left out with a warning naming it, not silently
    assert "(datasets add --skip-bad)" in result.err  # and says whose choice that was
    assert "warning: dataset 'tiles': test size: " in result.err  # the data checks, before training
    page = (tmp_path / "boards" / "tiles.md").read_text()
    assert "tiny-resnet" in page and "ofa-595" in page

    # Commands that read the store afterwards know the dataset from the same work dir.
    assert run_cli(["leaderboard", *wd]).exit_code == 0
    export = run_cli(["export", "--out", str(tmp_path / "rows.csv"), *wd])
    assert export.exit_code == 0, export.err
    with open(tmp_path / "rows.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["dataset"] == "tiles"]
    assert sorted(r["method"] for r in rows) == ["kd", "label-only", "teacher"]
    assert all(r["status"] == "done" for r in rows)
    panel = run_cli(["explain", "--dataset", "tiles", "--teacher", "tiny-resnet", "--student", "ofa-595",
                     "--explainer", "grad-cam", "--images", "1", "--plugin", str(plugin), "--device", "cpu", *wd])
    assert panel.exit_code == 0, panel.err
