"""Fault injection: a result is stored as done only if everything it came from is finite, whole and its own.

NaN models, damaged artifacts and stores, hostile names, a full disk, a
second run on the same work dir: each must end in a one-line reason, with
everything else kept, never in a silently wrong number.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from medkd_bench.run.explanations import CellExplanations
from medkd_bench.run.lock import WorkDirLock
from medkd_bench.run.store import Store, guarded
from tests.helpers import QUICK, TINY_DATA, plugin_fixture


def _store(root: Path) -> Store:
    return Store(root / "work" / "runs.sqlite")


def _one_line_error(result, *fragments: str) -> None:
    lines = [line for line in result.err.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), result.err
    assert "Traceback" not in result.err, result.err
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])


# ---- non-finite results -------------------------------------------------------------------------


def test_a_nan_teacher_fails_its_cell_and_its_kd_student_names_it(run_cli, dirs, tmp_path):
    result = run_cli(["run", "--plugin", plugin_fixture("nan_teacher"), "--plugin", plugin_fixture("str_builder"), "--methods", "kd",
                      "--teachers", "nan-teacher,str-teacher", "--students", "ofa-595", "--datasets",
                      "synthetic-cxr", "--explainers", "grad-cam", *TINY_DATA, *dirs])
    assert result.exit_code == 1
    with _store(tmp_path) as store:
        cells = {(c.method, c.teacher): c for c in store.cells()}
    nan, text = cells[("teacher", "nan-teacher")], cells[("teacher", "str-teacher")]
    assert nan.status == "failed" and nan.error == "training loss is nan in epoch 1, batch 1"
    assert "NonFiniteError" in (nan.traceback or "")  # kept for --debug
    assert text.status == "failed"
    assert text.error == "teacher 'str-teacher': build() returned str, expected torch.nn.Module"
    for teacher in ("nan-teacher", "str-teacher"):
        kd = cells[("kd", teacher)]
        assert kd.status == "failed" and f"teacher {teacher!r} has not been trained" in kd.error
    assert cells[("label-only", "")].status == "done"
    assert not list((tmp_path / "work").glob("soft_targets/*"))  # nothing computed from the NaN teacher was cached


@pytest.mark.parametrize("args, named", [
    (["--temperature", "nan"], "'--temperature'"),
    (["--temperature", "0"], "'--temperature'"),
    (["--alpha", "2"], "'--alpha'"),
    (["--alpha", "inf"], "'--alpha'"),
    (["--epochs", "0"], "'--epochs'"),
    (["--epochs", "-1"], "'--epochs'"),
    (["--img-size", "7"], "'--img-size'"),
    (["--img-size", "100000"], "'--img-size'"),
    (["--seed", "-3"], "'--seed'"),
    (["--cpus-per-cell", "nan", "--executor", "ray"], "'--cpus-per-cell'"),
    (["--dataset-option", "synthetic-cxr.n_train=abc"], "--dataset-option synthetic-cxr.n_train=abc"),
    (["--dataset-option", "synthetic-cxr.n_train=-5"], "--dataset-option synthetic-cxr.n_train=-5"),
    (["--dataset-option", "synthetic-cxr.n_train=2.5"], "--dataset-option synthetic-cxr.n_train=2.5"),
    (["--dataset-option", "synthetic-cxr.colour=1"], "has no option 'colour'"),
    (["--dataset-option", "nosuch.n_train=1"], "unknown dataset 'nosuch'"),
])
def test_bad_numbers_are_refused_before_any_work(run_cli, dirs, tmp_path, args, named):
    result = run_cli(["run", "--matrix", "quick", *args, *dirs])
    assert result.exit_code == 2
    _one_line_error(result, named)
    assert not (tmp_path / "work").exists() and not (tmp_path / "boards").exists()


def test_unreadable_weights_are_refused_by_content_before_any_work(run_cli, dirs, tmp_path):
    import pickle

    import torch

    fake = tmp_path / "weights.safetensors"  # a torch zip behind a safetensors name: read as what it is
    torch.save({"x": torch.zeros(2)}, fake)
    hostile = tmp_path / "hostile.pt"
    torch.save({"x": torch.zeros(2), "code": SimpleNamespace(a=1)}, hostile)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not weights at all")
    legacy = tmp_path / "legacy.pkl"
    legacy.write_bytes(pickle.dumps({"a": 1}))
    for path, fragment in ((hostile, "holds Python objects besides tensors"),
                           (garbage, "neither a safetensors file nor a torch.save checkpoint"),
                           (legacy, "neither a safetensors file nor a torch.save checkpoint")):
        result = run_cli(["run", "--matrix", "quick", "--weights", f"ofa-595={path}", *dirs])
        assert result.exit_code == 2
        _one_line_error(result, f"--weights ofa-595={path}", fragment)
        assert "weights_only=False" not in result.err
    from medkd_bench.system.weights import read_state_dict

    assert set(read_state_dict(fake)) == {"x"}
    assert not (tmp_path / "work").exists()


# ---- status only moves forward --------------------------------------------------------------------


def test_a_finished_cell_is_never_downgraded(tmp_path):
    with Store(tmp_path / "runs.sqlite") as store:
        store.start("h", "d", "t", "", "teacher", 0, {})
        store.finish("h", {"accuracy": 0.9}, {}, {})
        assert store.fail("h", "interrupted") is False  # Ctrl-C while it was being explained
        assert store.get("h").status == "done" and store.get("h").metrics == {"accuracy": 0.9}
        store.save_explanation("h", "grad-cam", 3, 0, "done", {"n_images": 3})
        store.save_explanation("h", "grad-cam", 3, 0, "failed", error="interrupted")
        assert store.explanation("h", "grad-cam", 3, 0).status == "done"
        store.start("k", "d", "t", "", "teacher", 1, {})  # left running by a killed run
        assert store.mark_running_interrupted() == 1
        assert store.get("k").status == "failed" and store.get("k").error.startswith("interrupted")


# ---- damaged artifacts and stores -------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


def test_damaged_checkpoints_and_soft_targets_are_rebuilt_with_the_same_results(run_cli, quick_run):
    dirs = ["--work-dir", str(quick_run / "work"), "--leaderboard-dir", str(quick_run / "boards")]
    with _store(quick_run) as store:
        before = {c.method: c for c in store.cells()}
    work = quick_run / "work"
    _truncate(work / "checkpoints" / f"{before['teacher'].hash}.safetensors")
    _truncate(work / "checkpoints" / f"{before['kd'].hash}.safetensors")
    (soft,) = (work / "soft_targets").glob("*.pt")
    _truncate(soft)
    result = run_cli([*QUICK, "--explainers", "all", *dirs])
    assert result.exit_code == 0, result.err
    assert f"checkpoints/{before['teacher'].hash}.safetensors of finished cell" in result.err.replace("\n", "")
    assert "is damaged" in result.err and "training the cell again" in result.err
    assert f"soft targets {soft}" in result.err.replace("\n", "")
    assert "trained" in result.out
    with _store(quick_run) as store:
        after = {c.method: c for c in store.cells()}
    for method in ("teacher", "kd"):
        assert after[method].status == "done"
        assert after[method].metrics["test_predictions"] == before[method].metrics["test_predictions"]
        assert after[method].finished_at > before[method].finished_at  # retrained, not trusted
    assert after["label-only"].finished_at == before["label-only"].finished_at  # untouched


def test_damaged_saliency_maps_are_computed_again(tmp_path, capsys):
    host = SimpleNamespace(options=SimpleNamespace(work_dir=tmp_path))
    explanations = CellExplanations(host)  # only the cache's file handling is exercised here
    path = explanations.maps_path("abc", "grad-cam", 2)
    good = np.random.default_rng(0).random((2, 4, 4)).astype(np.float32)
    assert explanations._cached_maps(path, 2, lambda: good) is good
    _truncate(path)
    again = explanations._cached_maps(path, 2, lambda: good * 1)
    assert np.array_equal(again, good) and "are damaged" in capsys.readouterr().err
    path.write_bytes(b"")
    with pytest.raises(Exception, match="not finite"):
        explanations._cached_maps(path, 2, lambda: np.full((2, 4, 4), np.nan, np.float32))
    assert not path.exists() or path.stat().st_size == 0  # NaN maps are never cached


# ---- bit flips: every artifact is checked by the SHA-256 recorded when it was written ----------------


def _flip(path: Path, offset: int, mask: int = 0xFF) -> None:
    """XOR one byte of ``path`` (a negative offset counts from the end): same size, no truncation."""
    raw = bytearray(path.read_bytes())
    raw[offset] ^= mask
    path.write_bytes(bytes(raw))


def _flip_sign_of_every_7th_float(path: Path, floats: bytes) -> None:
    """Flip the sign bit of every 7th float32 of ``floats`` where those bytes lie in ``path``."""
    raw = bytearray(path.read_bytes())
    start = raw.find(floats)
    assert start >= 0, "the tensor's bytes are stored as they are"
    for i in range(0, len(floats) // 4, 7):
        raw[start + 4 * i + 3] ^= 0x80  # little-endian: the sign is the top bit of the fourth byte
    path.write_bytes(bytes(raw))


def test_bit_flipped_soft_targets_are_computed_again(run_cli, quick_run):
    import torch

    dirs = ["--work-dir", str(quick_run / "work"), "--leaderboard-dir", str(quick_run / "boards")]
    work = quick_run / "work"
    with _store(quick_run) as store:
        before = {c.method: c for c in store.cells()}
    (soft,) = (work / "soft_targets").glob("*.pt")
    good = torch.load(soft, weights_only=True)
    _flip_sign_of_every_7th_float(soft, good.numpy().tobytes())
    damaged = torch.load(soft, weights_only=True)  # torch.load does not check the zip's CRCs
    assert not torch.equal(damaged, good) and bool(torch.isfinite(damaged).all())
    # A flipped byte in the KD cell's checkpoint retrains it, which reads the soft targets again.
    _flip(work / "checkpoints" / f"{before['kd'].hash}.safetensors", -5)
    result = run_cli([*QUICK, "--explainers", "all", *dirs])
    assert result.exit_code == 0, result.err
    err = result.err.replace("\n", "")
    assert f"soft targets {soft} are damaged (its SHA-256 differs" in err
    assert torch.equal(torch.load(soft, weights_only=True), good)  # computed again from the teacher
    with _store(quick_run) as store:
        kd = {c.method: c for c in store.cells()}["kd"]
    assert kd.finished_at > before["kd"].finished_at
    assert kd.config == before["kd"].config  # the same config hash
    assert kd.metrics["test_predictions"] == before["kd"].metrics["test_predictions"]


def test_bit_flipped_saliency_maps_are_computed_again(run_cli, quick_run):
    """One high byte flipped in the teacher's maps (a value like -2.4 in maps within [0, 1]) changes nothing stored."""
    dirs = ["--work-dir", str(quick_run / "work"), "--leaderboard-dir", str(quick_run / "boards")]
    work = quick_run / "work"
    with _store(quick_run) as store:
        cells = {c.method: c for c in store.cells()}
        before = store.explanation(cells["kd"].hash, "grad-cam", 3, 0)
    teacher_maps = work / "maps" / f"{cells['teacher'].hash}-grad-cam-3.npy"
    good = np.load(teacher_maps)
    _flip(teacher_maps, -good.nbytes + 4 * int(np.argmax(good.reshape(-1) > 0.1)) + 3)
    assert np.load(teacher_maps).min() < 0  # np.load takes it silently
    with sqlite3.connect(work / "runs.sqlite") as db:  # the KD cell's agreement is computed again
        db.execute("DELETE FROM explanations WHERE cell_hash = ? AND explainer = 'grad-cam'", (cells["kd"].hash,))
    result = run_cli([*QUICK, "--explainers", "grad-cam", *dirs])
    assert result.exit_code == 0, result.err
    assert f"saliency maps {teacher_maps} are damaged (its SHA-256 differs" in result.err.replace("\n", "")
    assert np.array_equal(np.load(teacher_maps), good)
    with _store(quick_run) as store:
        after = store.explanation(cells["kd"].hash, "grad-cam", 3, 0)
    assert after.status == "done"
    assert after.metrics["agreement"] == before.metrics["agreement"]


def test_explain_refuses_a_bit_flipped_checkpoint(run_cli, quick_run):
    dirs = ["--work-dir", str(quick_run / "work"), "--leaderboard-dir", str(quick_run / "boards")]
    with _store(quick_run) as store:
        kd = {c.method: c for c in store.cells()}["kd"]
    checkpoint = quick_run / "work" / "checkpoints" / f"{kd.hash}.safetensors"
    _flip(checkpoint, -5)
    pictures = sorted((quick_run / "boards").rglob("*.png"))
    result = run_cli(["explain", "--dataset", "synthetic-cxr", "--teacher", "visformer-s", "--student", "ofa-595",
                      "--explainer", "grad-cam", "--images", "1", *dirs])
    assert result.exit_code == 2, result.out + result.err
    _one_line_error(result, f"checkpoint {checkpoint}", "SHA-256 differs from the store's")
    assert sorted((quick_run / "boards").rglob("*.png")) == pictures  # no panel from damaged weights


def test_maps_without_a_recorded_digest_or_outside_0_1_are_computed_again(tmp_path, capsys):
    """Behind the SHA-256, the content checks stay: maps the record vouches for must still lie within [0, 1]."""
    from medkd_bench.system.digests import write_recorded

    explanations = CellExplanations(SimpleNamespace(options=SimpleNamespace(work_dir=tmp_path)))
    path = explanations.maps_path("abc", "grad-cam", 2)
    good = np.random.default_rng(0).random((2, 4, 4)).astype(np.float32)

    def save(maps: np.ndarray):
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, maps)
        return write

    path.parent.mkdir(parents=True)
    save(good)(path)  # as an older version wrote them: no record beside them
    assert np.array_equal(explanations._cached_maps(path, 2, lambda: good * 1), good)
    assert f"saliency maps {path} are unverifiable" in capsys.readouterr().err.replace("\n", "")
    write_recorded(path, save(good - 3))  # recorded, but not maps
    assert np.array_equal(explanations._cached_maps(path, 2, lambda: good * 1), good)
    assert "outside [0, 1]" in capsys.readouterr().err
    assert np.array_equal(explanations._cached_maps(path, 2, lambda: pytest.fail("computed again")), good)
    assert capsys.readouterr().err == ""  # whole again: read silently


@pytest.mark.parametrize("content", [b"", b"this is not an sqlite database, just bytes" * 20])
def test_an_empty_or_damaged_store_is_a_one_line_error(run_cli, dirs, tmp_path, content):
    store = tmp_path / "work" / "runs.sqlite"
    store.parent.mkdir(parents=True)
    store.write_bytes(content)
    for args in (["leaderboard", *dirs], ["run", "--matrix", "quick", *TINY_DATA, *dirs]):
        result = run_cli(args)
        assert result.exit_code == 2
        _one_line_error(result, f"run store {store}")
    assert store.read_bytes() == content  # never rewritten as a fresh store
    assert not (tmp_path / "boards" / "README.md").exists()


def test_a_truncated_store_is_a_one_line_error(run_cli, quick_run):
    store = quick_run / "work" / "runs.sqlite"
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _truncate(store)
    result = run_cli(["leaderboard", "--work-dir", str(quick_run / "work"), "--leaderboard-dir",
                      str(quick_run / "boards")])
    assert result.exit_code == 2
    _one_line_error(result, f"run store {store}")


# ---- names and paths -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "/abs/x", "a/b", "Upper", ".hidden"])
def test_names_that_would_escape_their_folder_are_refused(run_cli, dirs, tmp_path, monkeypatch, name):
    monkeypatch.setenv("MEDKD_TEST_HOSTILE_NAME", name)
    monkeypatch.chdir(tmp_path)
    result = run_cli(["run", "--matrix", "quick", "--plugin", plugin_fixture("hostile_name"), *dirs])
    assert result.exit_code == 2
    _one_line_error(result, f"teacher name {name!r} is not allowed")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_output_paths_stay_inside_their_folder(tmp_path):
    from medkd_bench.errors import MedkdError
    from medkd_bench.system.files import path_inside

    assert path_inside(tmp_path, "panels", "a", "b.png") == tmp_path / "panels" / "a" / "b.png"
    for parts in (("..", "x.md"), ("/abs/x.md",), ("panels", "../../x.png")):
        with pytest.raises(MedkdError, match="outside"):
            path_inside(tmp_path, *parts)


# ---- one run per work dir, a full disk ---------------------------------------------------------------


def test_a_second_run_on_the_same_work_dir_is_refused(run_cli, dirs, tmp_path):
    with WorkDirLock(tmp_path / "work"):
        result = run_cli(["run", "--matrix", "quick", *TINY_DATA, *dirs])
    assert result.exit_code == 2
    _one_line_error(result, f"another medkd-bench run (PID {os.getpid()}) is using it")
    assert not (tmp_path / "work" / "runs.sqlite").exists()
    with WorkDirLock(tmp_path / "work"):  # released: the next run may take it
        pass


def test_a_full_disk_mid_run_stops_cleanly_and_a_rerun_completes(run_cli, dirs, tmp_path, monkeypatch):
    finish = Store.finish
    calls = []

    def finish_then_full(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) > 1:  # SQLite's own error when the disk fills under it
            raise sqlite3.OperationalError("database or disk is full")
        return finish.__wrapped__(self, *args, **kwargs)

    monkeypatch.setattr(Store, "finish", guarded(finish_then_full))  # as the store's own methods are
    result = run_cli([*QUICK, "--explainers", "grad-cam", *dirs])
    assert result.exit_code == 1
    assert "database or disk is full; the run stopped, finished cells are kept" in result.err
    assert "Traceback" not in result.err
    with _store(tmp_path) as store:
        statuses = sorted(c.status for c in store.cells())
    assert statuses.count("done") == 1  # the first cell, finished before the disk filled, is kept
    monkeypatch.setattr(Store, "finish", finish)
    again = run_cli([*QUICK, "--explainers", "grad-cam", *dirs])
    assert again.exit_code == 0, again.err
    assert "1 already done" in again.out.replace("\n", " ")


# ---- what a run writes, and --debug ---------------------------------------------------------------------


def test_dry_run_writes_nothing(run_cli, dirs, tmp_path):
    result = run_cli(["run", "--matrix", "quick", "--dry-run", *TINY_DATA, *dirs])
    assert result.exit_code == 0 and "new" in result.out
    assert not (tmp_path / "work").exists() and not (tmp_path / "boards").exists()


def test_debug_prints_the_traceback_of_a_failed_cell(run_cli, dirs):
    result = run_cli(["--debug", "run", "--plugin", plugin_fixture("str_builder"), "--teachers", "str-teacher",
                      "--students", "ofa-595", "--datasets", "synthetic-cxr", "--explainers", "grad-cam",
                      *TINY_DATA, *dirs])
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.err and "build() returned str" in result.err


# ---- one page, one set of settings --------------------------------------------------------------------


def test_runs_with_other_settings_get_pages_of_their_own(run_cli, quick_run):
    dirs = ["--work-dir", str(quick_run / "work"), "--leaderboard-dir", str(quick_run / "boards")]
    again = run_cli([*QUICK, "--explainers", "grad-cam", "--dataset-option", "synthetic-cxr.n_test=6", *dirs])
    assert again.exit_code == 0, again.err
    boards = quick_run / "boards"
    pages = sorted(p.name for p in boards.glob("synthetic-cxr*.md"))
    assert len(pages) == 2 and "synthetic-cxr.md" in pages
    main = (boards / "synthetic-cxr.md").read_text()  # the most recent run's settings (no default run here)
    (other_name,) = [p for p in pages if p != "synthetic-cxr.md"]
    other = (boards / other_name).read_text()
    assert "test images: 6;" in main and "synthetic-cxr.n_test=6" in main.split("## Teachers")[0]
    assert "test images: 9;" in other and "synthetic-cxr.n_test=9" in other.split("## Teachers")[0]
    assert f"]({other_name})" in main  # linked from the main page
    for text, n_test in ((main, 6), (other, 9)):
        commands = [line for line in text.splitlines() if line.startswith("medkd-bench run")]
        assert commands and all(f"synthetic-cxr.n_test={n_test}" in c and "--epochs 1" in c for c in commands)
    index = (boards / "README.md").read_text()
    assert "(synthetic-cxr.md)" in index and f"({other_name})" in index


def test_page_settings_name_only_the_pages_dataset():
    from medkd_bench.report.pages import dataset_settings, pages_for, settings_flags
    from medkd_bench.run.store import CellRecord

    settings = {"epochs": 2, "dataset_options": {"a": {"n_test": 6}, "b": {"n_test": 3}}}
    assert dataset_settings(settings, "a") == {"epochs": 2, "dataset_options": {"a": {"n_test": 6}}}
    assert settings_flags(dataset_settings(settings, "c")) == ["--epochs", "2"]

    def record(h: str) -> CellRecord:
        return CellRecord(h, "a", "t", "", "teacher", 0, "done", {}, {}, {}, {}, None, 0.0, 0.0)

    runs = {"x": [(1, {}), (3, {"epochs": 2})], "y": [(2, {"epochs": 2})], "z": [(4, {"dataset_options": {"b": {}}})]}
    pages = pages_for("a", [record("x"), record("y"), record("z")], runs)
    assert [p.file for p in pages][0] == "a.md" and pages[0].settings == {}  # defaults keep the main page
    assert sorted(r.hash for r in pages[0].records) == ["x", "z"]
    assert sorted(r.hash for r in pages[1].records) == ["x", "y"] and pages[1].settings_text == "--epochs 2"


def test_leaderboard_names_pages_whose_rows_it_cannot_see(run_cli, quick_run):
    boards = quick_run / "boards"
    (boards / "lc25000.md").write_text("# lc25000 leaderboard\n\n_Generated by `medkd-bench leaderboard` ..._\n")
    (boards / "notes.md").write_text("my own notes\n")
    result = run_cli(["leaderboard", "--work-dir", str(quick_run / "work"), "--leaderboard-dir", str(boards)])
    assert result.exit_code == 0
    assert "lc25000.md: no rows in run store" in result.err.replace("\n", "")
    index = (boards / "README.md").read_text()
    assert "[lc25000.md](lc25000.md)" in index and "notes.md" not in index
    assert (boards / "lc25000.md").is_file() and (boards / "notes.md").is_file()
