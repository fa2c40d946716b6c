"""Every kind of bad input: one-line error naming the path, exit 2, no half-written cache; --skip-bad."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from medkd_bench.data.prepare import prepare
from medkd_bench.registry import load_registry
from tests.fixture_trees import covid_tree, lc_tree
from tests.helpers import assert_one_line_error

REGISTRY = load_registry()
COVID_TRAIN = Path("Lung Segmentation Data/Lung Segmentation Data/Train")
COLON_N = Path("lung_colon_image_set/colon_image_sets/colon_n")


def _corrupt(root: Path) -> Path:
    path = root / COVID_TRAIN / "Normal" / "images" / "normal_train_1.png"
    path.write_bytes(b"this is not a png at all")
    return path


def _corrupt_mask(root: Path) -> Path:
    path = root / COVID_TRAIN / "COVID-19" / "lung masks" / "covid-19_train_0.png"
    path.write_bytes(path.read_bytes()[:40])
    return path


def _truncated(root: Path) -> Path:
    path = root / COLON_N / "colon_n3.jpeg"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return path


def _stray_file(root: Path) -> Path:
    path = root / COLON_N / "notes.txt"
    path.write_text("slide scanned twice")
    return path


def _mask_without_image(root: Path) -> Path:
    path = root / COVID_TRAIN / "COVID-19" / "images" / "covid-19_train_2.png"
    path.unlink()
    return root / COVID_TRAIN / "COVID-19" / "lung masks" / "covid-19_train_2.png"


def _image_without_mask(root: Path) -> Path:
    (root / COVID_TRAIN / "Non-COVID" / "lung masks" / "non-covid_train_0.png").unlink()
    return root / COVID_TRAIN / "Non-COVID" / "images" / "non-covid_train_0.png"


#: case -> (dataset, break the tree and return the path the error must name, text in the error)
FILE_CASES: dict[str, tuple[str, Callable[[Path], Path], str]] = {
    "corrupt image": ("covid-qu-ex", _corrupt, "unreadable or truncated image"),
    "corrupt mask": ("covid-qu-ex", _corrupt_mask, "unreadable or truncated lung mask"),
    "truncated jpeg": ("lc25000", _truncated, "unreadable or truncated image"),
    "non-image file": ("lc25000", _stray_file, "not an image file"),
    "mask without image": ("covid-qu-ex", _mask_without_image, "lung mask without an image"),
    "image without mask": ("covid-qu-ex", _image_without_mask, "image without its lung mask"),
}


def _trees(root: Path) -> None:
    covid_tree(root)
    lc_tree(root, per_class=6)


def _cache_is_clean(cache: Path) -> None:
    """Every entry present is complete; no temporary folder is left behind."""
    if not cache.exists():
        return
    for entry in cache.glob("*/*"):
        assert ".tmp-" not in entry.name, f"half-written cache entry left: {entry}"
        assert (entry / "meta.json").is_file(), f"cache entry without meta.json: {entry}"


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_bad_file_is_a_one_line_error_naming_it_and_skippable(tmp_path, run_cli, case):
    dataset, breaker, problem = FILE_CASES[case]
    root = tmp_path / "data"
    _trees(root)
    bad = breaker(root)
    work = tmp_path / "work"
    args = ["datasets", "check", dataset, "--root", str(root), "--img-size", "32", "--work-dir", str(work)]
    strict = run_cli(args)
    assert_one_line_error(strict, str(bad))
    assert problem in strict.out  # the problems table
    lenient = run_cli([*args, "--skip-bad"])
    assert lenient.exit_code == 0, lenient.err
    assert "1 bad file(s) will be left out" in lenient.out
    # The run itself: strict stops at the file (from the cache check wrote), lenient warns with a count.
    spec = REGISTRY.datasets[dataset]
    with pytest.raises(Exception, match="pass --skip-bad") as info:
        prepare(spec, 24, root, {}, cache_dir=work / "cache")
    assert str(bad) in str(info.value)
    with pytest.raises(Exception, match="pass --skip-bad"):  # and without any cache
        prepare(spec, 24, root, {}, cache_dir=tmp_path / "fresh")
    _cache_is_clean(tmp_path / "fresh")
    data = prepare(spec, 24, root, {}, cache_dir=tmp_path / "fresh2", skip_bad=True)
    assert [p for p, _ in data.skipped] == [str(bad)]
    _cache_is_clean(tmp_path / "fresh2")


def test_run_with_a_bad_file_exits_2_and_runner_skips_with_skip_bad(tmp_path, run_cli, dirs, capsys):
    from medkd_bench.run.computer import CellComputer
    from medkd_bench.run.run_options import RunOptions
    from medkd_bench.runtime.device import resolve_runtime

    lc_tree(tmp_path / "data", per_class=5)
    bad = _stray_file(tmp_path / "data")
    args = ["run", "--matrix", "quick", "--datasets", "lc25000-colon", "--teachers", "visformer-s",
            "--data-root", str(tmp_path / "data"), "--img-size", "32", "--epochs", "1", *dirs]
    strict = run_cli(args)
    # Real data is read before any cell trains: a bad file is bad input, one line and exit 2.
    assert_one_line_error(strict, str(bad))
    assert "trained" not in strict.out
    # --skip-bad reaches the loader through the run options, and the cache lands under --work-dir.
    work = tmp_path / "work"
    options = RunOptions(work_dir=work, data_root=tmp_path / "data", img_size=32, skip_bad=True)
    data = CellComputer(REGISTRY, options, resolve_runtime("cpu", "off")).data("lc25000-colon")
    assert [p for p, _ in data.skipped] == [str(bad)] and len(data.splits["train"]) == 2 * 3
    assert "left out 1 bad file(s)" in capsys.readouterr().err.replace("\n", " ")
    assert len(list((work / "cache" / "lc25000-colon").iterdir())) == 3
    _cache_is_clean(work / "cache")


def test_missing_root_is_exit_2(tmp_path, run_cli):
    result = run_cli(["datasets", "check", "lc25000", "--root", str(tmp_path / "nowhere")])
    assert_one_line_error(result, f"--data-root {tmp_path / 'nowhere'} is not a folder")
    result = run_cli(["datasets", "check", "covid-qu-ex", "--root", str(tmp_path)])
    assert_one_line_error(result, "no folder 'Lung Segmentation Data/Lung Segmentation Data'")


@pytest.mark.parametrize("dataset,folder", [
    ("covid-qu-ex", COVID_TRAIN / "Non-COVID"),
    ("covid-qu-ex", COVID_TRAIN / "Normal" / "lung masks"),
    ("lc25000", Path("lung_colon_image_set/lung_image_sets/lung_scc")),
])
def test_missing_class_folder_is_exit_2_even_with_skip_bad(tmp_path, run_cli, dataset, folder):
    import shutil

    _trees(tmp_path)
    shutil.rmtree(tmp_path / folder)
    for extra in ([], ["--skip-bad"]):
        result = run_cli(["datasets", "check", dataset, "--root", str(tmp_path), "--work-dir",
                          str(tmp_path / "work"), *extra])
        assert_one_line_error(result, f"folder: {tmp_path / folder}")
    _cache_is_clean(tmp_path / "work" / "cache")


@pytest.mark.parametrize("dataset,folder", [
    ("covid-qu-ex", COVID_TRAIN / "COVID-19"),
    ("lc25000", COLON_N),
])
def test_empty_class_is_exit_2(tmp_path, run_cli, dataset, folder):
    _trees(tmp_path)
    for f in (tmp_path / folder).rglob("*.*"):
        f.unlink()
    result = run_cli(["datasets", "check", dataset, "--root", str(tmp_path), "--skip-bad",
                      "--work-dir", str(tmp_path / "work")])
    assert_one_line_error(result, str(tmp_path / folder))
    assert "empty class folder" in result.err or "has no usable image" in result.err
