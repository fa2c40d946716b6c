"""End-to-end runs of real models on tiny data: cells, store, resume, failure isolation, panels."""

import json
import os
import re
import sqlite3
from pathlib import Path

import pytest
import torch
from PIL import Image

from medkd_bench.run.store import Store
from tests.helpers import QUICK, TINY_DATA, assert_one_line_error, plugin_fixture


def _store(tmp_path: Path) -> Store:
    return Store(tmp_path / "work" / "runs.sqlite")


def test_quick_matrix_trains_scores_and_resumes(run_cli, dirs, quick_run, tmp_path):
    with _store(tmp_path) as store:
        cells = store.cells()
    assert {(c.method, c.teacher, c.student) for c in cells} == {
        ("teacher", "visformer-s", ""), ("label-only", "", "ofa-595"), ("kd", "visformer-s", "ofa-595")}
    for cell in cells:
        assert cell.status == "done"
        m = cell.metrics
        assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["macro_f1"] <= 1.0
        assert set(m["per_class_f1"]) == {"COVID-19", "Non-COVID", "Normal"}
        assert m["params_m"] > 1 and m["gmacs"] > 0 and m["latency_ms"] > 0 and m["throughput"] > 0
        assert (tmp_path / "work" / cell.artifacts["checkpoint"]).is_file()
    kd = next(c for c in cells if c.method == "kd")
    assert kd.config["teacher"] == next(c.hash for c in cells if c.method == "teacher")
    with _store(tmp_path) as store:
        explanations = {(e.cell_hash, e.explainer): e for e in store.explanations()}
    assert len(explanations) == 3 * 4  # every cell, every registered explainer (--explainers all)
    kd_score_cam = explanations[(kd.hash, "score-cam")]
    assert kd_score_cam.status == "done" and kd_score_cam.metrics["n_images"] == 2
    assert {"agreement", "label_only_agreement", "localisation", "road", "sanity"} <= set(kd_score_cam.metrics)
    assert kd_score_cam.metrics["localisation"]["mask"] == "lesion"
    lung = kd_score_cam.metrics["localisation_other"]["lung"]
    assert lung["mask"] == "lung" and 0.05 < lung["chance"]["mean"] < 0.5
    panel = tmp_path / "boards" / kd_score_cam.artifacts["panel"]
    with Image.open(panel) as img:
        assert img.format == "PNG" and img.width > 300
    board = (tmp_path / "boards" / "synthetic-cxr.md").read_text()
    teachers = board.split("## Teachers")[1].split("## Students")[0]  # the label-only student is not a teacher
    rows = [line for line in teachers.splitlines() if line.startswith("| ") and not line.startswith("| teacher |")]
    assert len(rows) == 1 and rows[0].startswith("| visformer-s")
    # Named by the cell's config hash and sample size: a run under other settings draws its own.
    assert kd_score_cam.artifacts["panel"] == f"panels/synthetic-cxr/score-cam/visformer-s__ofa-595__kd__{kd.hash}-2.png"
    assert f"[score-cam]({kd_score_cam.artifacts['panel']})" in board
    assert (tmp_path / "boards" / "README.md").read_text().count("synthetic-cxr") >= 1

    again = run_cli([*QUICK, *dirs])  # default explainers: score-cam, already stored
    assert again.exit_code == 0
    assert "0 trained, 3 already done, 0 failed; explanations: 0 computed" in again.out

    more = run_cli([*QUICK, *dirs, "--explain-images", "6", "--explainers", "grad-cam"])
    assert "0 trained, 3 already done, 0 failed; explanations: 3 computed" in more.out

    panel = run_cli(["explain", "--dataset", "synthetic-cxr", "--teacher", "visformer-s", "--student", "ofa-595",
                     "--images", "2", "--explainer", "eigen-cam", *dirs])
    assert panel.exit_code == 0, panel.err
    with Image.open(tmp_path / "boards" / "panels" / "synthetic-cxr" / "eigen-cam" / "visformer-s__ofa-595__kd-2.png") as img:
        assert img.height > img.width  # 6 rows (2 per class), 4 columns

    changed = run_cli([*QUICK, *dirs, "--alpha", "0.9"])  # only the KD cell depends on alpha
    assert "1 trained, 2 already done, 0 failed" in changed.out


@pytest.mark.slow
def test_a_failing_cell_is_recorded_and_the_matrix_goes_on(run_cli, dirs, tmp_path):
    args = ["run", "--plugin", plugin_fixture("broken_teacher"), "--methods", "kd", "--teachers", "broken,visformer-s", "--datasets", "synthetic-cxr",
            "--explainers", "grad-cam"]
    result = run_cli([*args, *TINY_DATA, *dirs])
    assert result.exit_code == 1
    assert "3 trained, 0 already done, 2 failed" in result.out
    with _store(tmp_path) as store:
        by_key = {(c.method, c.teacher): c for c in store.cells()}
    assert by_key[("teacher", "broken")].status == "failed"
    assert by_key[("teacher", "broken")].error == "building 'broken' failed: RuntimeError: out of cheese"
    assert by_key[("kd", "broken")].status == "failed"
    assert "teacher 'broken' has not been trained" in by_key[("kd", "broken")].error
    assert by_key[("kd", "visformer-s")].status == "done"
    board = (tmp_path / "boards" / "synthetic-cxr.md").read_text()
    assert "## Failed cells" in board and "out of cheese" in board

    # Finished cells survive a rerun that still fails; the failed ones are retried.
    rerun = run_cli([*args, *TINY_DATA, *dirs])
    assert "0 trained, 3 already done, 2 failed" in rerun.out


def test_store_uses_wal_and_survives_reopen(quick_run, tmp_path):
    db = sqlite3.connect(tmp_path / "work" / "runs.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT count(*) FROM cells WHERE status='done'").fetchone()[0] == 3


def test_latency_seconds_zero_times_exactly_the_latency_runs(quick_run):
    """TINY_DATA's ``--latency-runs 3 --latency-seconds 0``: three timed runs, not a second's worth."""
    with Store(quick_run / "work" / "runs.sqlite") as store:
        cells = store.cells()
    assert len(cells) == 3 and all(c.metrics["latency_runs"] == 3 for c in cells)


def test_leaderboard_command_rerenders_without_training(run_cli, dirs, quick_run, tmp_path):
    board = tmp_path / "boards" / "synthetic-cxr.md"
    board.unlink()
    result = run_cli(["leaderboard", *dirs])
    assert result.exit_code == 0
    assert board.is_file() and "visformer-s" in board.read_text()


def test_explain_needs_a_finished_kd_cell(run_cli, dirs, quick_run):
    result = run_cli(["explain", "--dataset", "synthetic-cxr", "--teacher", "vgg19", "--student", "ofa-595", *dirs])
    assert_one_line_error(result, "no finished kd cell vgg19 -> ofa-595 on synthetic-cxr")


def test_dry_run_lists_cells(run_cli, dirs):
    result = run_cli(["run", "--dry-run", *TINY_DATA, *dirs])
    assert result.exit_code == 0
    assert "38 cells (full)" in result.out  # 2 embedded datasets x (3 teachers + 1 baseline + 3 x 5 methods)
    assert result.out.count("new") == 38


@pytest.fixture
def restore_determinism(monkeypatch):
    """``--deterministic`` switches process-wide torch settings: put them back for other tests."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False


def test_same_seed_same_results_whatever_else_ran(run_cli, dirs, quick_run_template, tmp_path, restore_determinism):
    """Training is seeded per cell: a second run of the quick matrix, in another store, explaining
    more images between cells (which draws random numbers: the sample, ROAD's noise, the sanity check's
    randomly initialised model) and with ``--deterministic`` (which on CPU must change nothing), gives
    the same weights, predictions and metrics. Grad-CAM draws those numbers as Score-CAM does, at a
    fraction of Score-CAM's one forward pass per channel."""
    result = run_cli([*QUICK, *dirs, "--explain-images", "6", "--explainers", "grad-cam", "--deterministic"])
    assert result.exit_code == 0
    assert torch.are_deterministic_algorithms_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    with Store(quick_run_template / "work" / "runs.sqlite") as a, _store(tmp_path) as b:
        first = {(c.method, c.teacher, c.student): c for c in a.cells()}
        second = {(c.method, c.teacher, c.student): c for c in b.cells()}
    assert first.keys() == second.keys()
    for key, cell in first.items():
        assert cell.hash == second[key].hash
        assert cell.metrics["test_predictions"] == second[key].metrics["test_predictions"], key
        assert cell.metrics["history"] == second[key].metrics["history"], key
        for metric in ("accuracy", "macro_f1", "per_class_f1", "best_epoch", "val_accuracy", "data_checksums"):
            assert cell.metrics[metric] == second[key].metrics[metric], (key, metric)
        assert not cell.metrics["deterministic"] and second[key].metrics["deterministic"]


def test_seeds_add_one_row_per_seed_and_mean_sd(run_cli, dirs, quick_run, tmp_path):
    """--seeds 2 over a finished seed-0 quick matrix trains only seed 1's students and reports both.

    The teacher is trained once (seed 0) and both student seeds distil from it, as KD practice does.
    """
    result = run_cli([*QUICK, *dirs, "--seeds", "2", "--explainers", "grad-cam", "--bootstrap", "200"])
    assert result.exit_code == 0, result.err
    assert "2 trained, 3 already done, 0 failed" in result.out
    with _store(tmp_path) as store:
        cells = {(c.method, c.seed): c for c in store.cells()}
    assert set(cells) == {("teacher", 0)} | {(m, s) for m in ("label-only", "kd") for s in (0, 1)}
    assert cells[("kd", 1)].config["teacher"] == cells[("kd", 0)].config["teacher"] == cells[("teacher", 0)].hash
    for cell in cells.values():
        m = cell.metrics
        assert cell.status == "done" and len(m["test_labels"]) == len(m["test_predictions"]) == 9
        assert set(m["data_checksums"]) == {"train", "val", "test"} and m["versions"]["torch"]
    checksums = {json.dumps(c.metrics["data_checksums"], sort_keys=True) for c in cells.values() if c.method != "teacher"}
    assert len(checksums) == 1  # the run seed does not change the data (the teacher's train split is its own)
    board = (tmp_path / "boards" / "synthetic-cxr.md").read_text()
    assert "Seeds: 0, 1." in board and "(200 resamples, seeded)" in board
    students = board.split("## Students")[1].split("## Per-class F1")[0]
    assert students.count("(2 seeds)") == 2 and students.count("|") > 20
    provenance = board.split("## Provenance")[1].split("</details>")[0]
    assert "--seeds 2" in provenance and "--bootstrap 200" in provenance and "--epochs 1" in provenance
    assert all(f"`{c.hash}`" in provenance for c in cells.values())
    # Every seed's panel is drawn; the page shows the lowest seed's, so three seeds of five methods stay readable.
    seed0, seed1 = cells[("kd", 0)].hash, cells[("kd", 1)].hash
    assert (tmp_path / "boards" / "panels" / "synthetic-cxr" / "grad-cam" /
            f"visformer-s__ofa-595__kd__seed1__{seed1}-2.png").is_file()
    assert f"panels/synthetic-cxr/grad-cam/visformer-s__ofa-595__kd__{seed0}-2.png" in board
    assert "__seed1__" not in board


def test_leaderboard_recovers_labels_for_cells_stored_without_them(run_cli, dirs, quick_run, tmp_path):
    """Cells stored before labels were recorded get them back from the dataset plugin: same CIs."""
    before = (tmp_path / "boards" / "synthetic-cxr.md").read_text()
    db = sqlite3.connect(tmp_path / "work" / "runs.sqlite")
    for h, metrics in db.execute("SELECT hash, metrics FROM cells").fetchall():
        m = json.loads(metrics)
        del m["test_labels"]
        db.execute("UPDATE cells SET metrics=? WHERE hash=?", (json.dumps(m), h))
    db.commit()
    db.close()
    assert run_cli(["leaderboard", *dirs]).exit_code == 0
    after = (tmp_path / "boards" / "synthetic-cxr.md").read_text()
    assert re.search(r"\| \d+\.\d \[\d+\.\d, \d+\.\d\] \|", after)
    assert after.split("## Explanations")[0] == before.split("## Explanations")[0]
