"""`datasets check`, and how `run` plans real datasets (skipped when absent, hashed by their files)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.fixture_trees import covid_tree, lc_tree
from tests.helpers import assert_one_line_error

REAL = ("covid-qu-ex", "covid-qu-ex-infection", "lc25000", "lc25000-colon", "lc25000-lung")

#: A small timm teacher as a single-file plugin, so the end-to-end run stays cheap.
TINY_TEACHER = '''
from medkd_bench import TeacherSpec, TrainSettings, hookimpl, last_module, timm_builder


@hookimpl
def register_teachers(register):
    register(TeacherSpec(name="tiny-resnet", build=timm_builder("resnet10t"),
                         target_layers=lambda m: [m.layer4], citation="test teacher",
                         train=TrainSettings(epochs=1, batch_size=8)))
'''


def test_datasets_check_prints_counts_per_split_and_fingerprint(tmp_path, run_cli):
    covid_tree(tmp_path, "infection")
    result = run_cli(["datasets", "check", "covid-qu-ex-infection", "--root", str(tmp_path), "--img-size", "32",
                      "--work-dir", str(tmp_path / "work")])
    assert result.exit_code == 0, result.err
    out = result.out
    assert "reading " + str(tmp_path / "Infection Segmentation Data" / "Infection Segmentation Data") in \
        out.replace("\n", "")
    assert "fingerprint: files 81" in out  # 3 splits x 3 classes x (4+2+3 images) x 3 folders / 3
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:6]]
            for line in out.splitlines() if line.count("│") >= 6}
    assert rows["COVID-19"] == ["4", "2", "3", "9"] and rows["Normal"] == ["4", "2", "3", "9"]
    assert rows["all"] == ["12", "6", "9", "27"]
    assert rows["non-empty infection mask"] == ["4", "2", "3", "9"]  # COVID-19 only
    assert rows["non-empty lung mask"] == ["12", "6", "9", "27"]
    assert "ok: covid-qu-ex-infection: every file read" in out
    # The check leaves the decoded splits where a run with the same --work-dir finds them.
    assert len(list((tmp_path / "work" / "cache" / "covid-qu-ex-infection").iterdir())) == 3


def test_datasets_check_reads_root_from_the_environment_and_options(tmp_path, run_cli, monkeypatch):
    lc_tree(tmp_path, per_class=10)
    monkeypatch.setenv("MEDKD_DATA", str(tmp_path))
    result = run_cli(["datasets", "check", "lc25000-lung", "--dataset-option", "lc25000-lung.test_fraction=0.3",
                      "--img-size", "32", "--work-dir", str(tmp_path / "work")])
    assert result.exit_code == 0, result.err
    assert "lung_scc │ 6     │ 1   │ 3    │ 10" in result.out
    wrong = run_cli(["datasets", "check", "lc25000-lung", "--dataset-option", "lc25000.seed=1"])
    assert_one_line_error(wrong, "this check is of dataset 'lc25000-lung'")
    unknown = run_cli(["datasets", "check", "no-such-data"])
    assert_one_line_error(unknown, "unknown dataset 'no-such-data'")


def test_full_dry_run_without_data_skips_real_datasets_and_says_why(tmp_path, run_cli, dirs, monkeypatch):
    monkeypatch.delenv("MEDKD_DATA", raising=False)
    result = run_cli(["run", "--matrix", "full", "--dry-run", *dirs])
    assert result.exit_code == 0, result.err
    for name in REAL:
        assert f"skipped dataset {name}: needs a local copy: no --data-root given and MEDKD_DATA is not set" \
            in result.out
    assert "synthetic-cxr | teacher vgg19" in result.out and "lc25000 |" not in result.out
    # Naming a real dataset without its data is an error, not a silent skip.
    named = run_cli(["run", "--datasets", "lc25000", "--dry-run", *dirs])
    assert_one_line_error(named, "needs a local copy")
    # quick prefers the generated dataset even when real data is there.
    lc_tree(tmp_path / "data", per_class=5)
    quick = run_cli(["run", "--matrix", "quick", "--dry-run", "--data-root", str(tmp_path / "data"), *dirs])
    assert "synthetic-cxr | teacher" in quick.out and "lc25000 |" not in quick.out


def test_full_dry_run_with_a_root_plans_the_datasets_found_there(tmp_path, run_cli, dirs):
    lc_tree(tmp_path / "data", per_class=5)
    result = run_cli(["run", "--matrix", "full", "--dry-run", "--data-root", str(tmp_path / "data"), *dirs])
    assert result.exit_code == 0, result.err
    for name in ("lc25000", "lc25000-lung", "lc25000-colon", "synthetic-cxr"):
        assert f"{name} | teacher vgg19" in result.out
    for name in ("covid-qu-ex", "covid-qu-ex-infection"):
        assert f"skipped dataset {name}: dataset '{name}': no folder" in result.out
    # The split's checksum is in the config hash: another seed plans other cells.
    other = run_cli(["run", "--matrix", "full", "--dry-run", "--data-root", str(tmp_path / "data"),
                     "--dataset-option", "lc25000.seed=1", *dirs])
    lines = [line for line in result.out.splitlines() if "lc25000 | teacher vgg19" in line]
    assert lines and lines[0] not in other.out


@pytest.mark.slow
def test_end_to_end_run_on_a_real_layout_records_the_file_fingerprint(tmp_path, run_cli, dirs):
    lc_tree(tmp_path / "data", per_class=8)
    plugin = tmp_path / "tiny_teacher.py"
    plugin.write_text(TINY_TEACHER)
    args = ["run", "--plugin", str(plugin), "--matrix", "quick", "--teachers", "tiny-resnet",
            "--datasets", "lc25000-colon", "--data-root", str(tmp_path / "data"), "--img-size", "32",
            "--epochs", "1", "--latency-runs", "2", "--latency-seconds", "0", "--explainers", "grad-cam", "--explain-images", "2",
            "--sanity-images", "1", *dirs]
    result = run_cli(args)
    assert result.exit_code == 0, result.out + result.err
    assert "3 trained" in result.out
    with sqlite3.connect(tmp_path / "work" / "runs.sqlite") as db:
        configs = [json.loads(row[0]) for row in db.execute("SELECT config FROM cells")]
    files = {json.dumps(c["dataset"]["files"], sort_keys=True) for c in configs}
    assert len(files) == 1
    fingerprint = json.loads(files.pop())
    assert fingerprint["files"] == 16 and len(fingerprint["split"]) == 16
    assert len(list((tmp_path / "work" / "cache" / "lc25000-colon").iterdir())) == 3
    board = (tmp_path / "boards" / "lc25000-colon.md").read_text()
    assert "tiny-resnet" in board and "ofa-595" in board
    again = run_cli(args)
    assert again.exit_code == 0 and "3 already done" in again.out
