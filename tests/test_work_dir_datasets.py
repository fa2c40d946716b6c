"""Datasets found where they were added: ``datasets add --work-dir W`` is registered by every command given ``W``.

The suite sets ``MEDKD_DATASETS=""`` (no spec file from the environment or the
checkout), so whatever these tests find comes from the work dir alone.
Fixtures are real PNG files written by Pillow.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tests.fixture_trees import grey_image
from tests.helpers import TINY_DATA


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
    assert other.exit_code == 2 and "unknown dataset(s) 'my-xray'" in other.err
    assert len(other.err.strip().splitlines()) == 1


def test_worker_processes_register_the_runs_work_dir_datasets(tmp_path, run_cli):
    """Pool and Ray workers rebuild the registry from the recipe: the run's work dir travels in its options."""
    from medkd_bench.run.executors.worker import WorkerRecipe, worker_setup
    from medkd_bench.run.options import RunOptions

    grey_tree(tmp_path / "imgs")
    work = tmp_path / "w"
    assert run_cli(["datasets", "add", "mine", "--folder", str(tmp_path / "imgs"),
                    "--work-dir", str(work)]).exit_code == 0
    registry, _ = worker_setup(WorkerRecipe((), RunOptions(work_dir=work.resolve()), device="cpu", amp="off"))
    assert "mine" in registry.datasets
    registry, _ = worker_setup(WorkerRecipe((), RunOptions(work_dir=tmp_path / "elsewhere"), device="cpu",
                                            amp="off"))
    assert "mine" not in registry.datasets
