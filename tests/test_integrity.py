"""Fault injection: a result is stored as done only if everything it came from is finite, whole and its own.

NaN models, damaged artifacts and stores, hostile names, a full disk, a
second run on the same work dir: each must end in a one-line reason, with
everything else kept, never in a silently wrong number.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from medkd_bench.run.explanations import CellExplanations
from medkd_bench.run.lock import WorkDirLock
from medkd_bench.run.store import Store, guarded
from tests.helpers import QUICK, TINY_DATA, assert_one_line_error, plugin_fixture, table_row


def _store(root: Path) -> Store:
    return Store(root / "work" / "runs.sqlite")


# ---- non-finite results -------------------------------------------------------------------------


@pytest.mark.slow
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


# ---- model outputs that do not fit the dataset ------------------------------------------------------


@pytest.mark.slow
def test_a_teacher_with_another_head_in_evaluation_fails_naming_itself_and_the_shapes(run_cli, dirs, tmp_path):
    result = run_cli(["run", "--plugin", plugin_fixture("shape_shifting_teacher"), "--methods", "kd",
                      "--teachers", "shape-shifter", "--students", "ofa-595", "--datasets", "synthetic-cxr",
                      "--explainers", "grad-cam", *TINY_DATA, *dirs])
    assert result.exit_code == 1
    with _store(tmp_path) as store:
        cells = {c.method: c for c in store.cells()}
    teacher = cells["teacher"]
    assert teacher.status == "failed" and not teacher.metrics  # never done with accuracy 0.0
    assert teacher.error == ("teacher 'shape-shifter': logits on the val split have shape (9, 4), expected (9, 3): "
                             "9 image(s) by the dataset's 3 classes")
    assert cells["kd"].status == "failed" and "teacher 'shape-shifter' has not been trained" in cells["kd"].error
    assert cells["label-only"].status == "done"
    assert not list((tmp_path / "work").glob("soft_targets/*"))  # no (N, C+1) soft targets cached


def test_logits_that_do_not_fit_the_dataset_are_refused_in_every_mode():
    import torch

    from medkd_bench.data.prepare import prepare
    from medkd_bench.distill.method import bind_method
    from medkd_bench.registry import load_registry
    from medkd_bench.runtime.device import resolve_runtime
    from medkd_bench.specs import TrainSettings
    from medkd_bench.train.loop import Trainer
    from medkd_bench.train.predict import predict_logits, teacher_soft_targets
    from medkd_bench.train.shapes import OutputShapeError

    registry = load_registry([Path(plugin_fixture("shape_shifting_teacher"))])
    data = prepare(registry.get("dataset", "synthetic-cxr"), 32, None, {"n_train": 8, "n_val": 6, "n_test": 6})
    runtime = resolve_runtime("cpu", "off")
    build = registry.get("teacher", "shape-shifter").build
    classes = data.num_classes
    shifter = build(classes, 32)  # C logits in training, C+1 in evaluation
    wide = build(classes + 1, 32)  # C+1 in training
    batch = (torch.arange(4), torch.zeros(4, dtype=torch.bool), data.splits["train"].images[:4])
    settings = TrainSettings(epochs=1, batch_size=4)

    Trainer(shifter.train(), data, settings, runtime).step(*batch)  # right in training: trains
    with pytest.raises(OutputShapeError, match=r"^logits in training have shape \(4, 4\), expected \(4, 3\)"):
        Trainer(wide.train(), data, settings, runtime).step(*batch)
    kd = bind_method(registry.get("method", "kd"), registry.get("method", "kd").options,
                     teacher_logits=torch.zeros(2, 8, classes), data=data, student_runtime=runtime, epochs=1,
                     steps_per_epoch=2)
    with pytest.raises(OutputShapeError, match=r"^logits in training have shape \(4, 4\)"):
        Trainer(wide.train(), data, settings, runtime, distill=kd).step(*batch)  # a distilled student too
    with pytest.raises(OutputShapeError, match=r"^logits on the val split have shape \(6, 4\), expected \(6, 3\)"):
        predict_logits(shifter, data, data.splits["val"].images, runtime, what="logits on the val split")
    with pytest.raises(OutputShapeError, match=r"^the teacher's soft targets have shape \(8, 4\)"):
        teacher_soft_targets(shifter, data, runtime)

    class Pair(torch.nn.Module):
        def forward(self, x):
            return shifter.head(shifter.features(x).mean((2, 3)))[:, :classes], None

    with pytest.raises(OutputShapeError, match=r"^logits on the test split: the model returned tuple"):
        predict_logits(Pair(), data, data.splits["test"].images, runtime, what="logits on the test split")


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
    assert_one_line_error(result, named)
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
        assert_one_line_error(result, f"--weights ofa-595={path}", fragment)
        assert "weights_only=False" not in result.err
    from medkd_bench.models.weights import read_state_dict

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


def test_retraining_a_finished_cell_keeps_its_result_until_the_new_one_is_done(tmp_path):
    """A done cell trained again (its checkpoint damaged) stays done; the attempt is recorded beside it."""
    with Store(tmp_path / "runs.sqlite") as store:
        store.start("h", "d", "t", "", "teacher", 0, {})
        store.finish("h", {"accuracy": 0.9}, {}, {"checkpoint_sha256": "old"})
        store.start("h", "d", "t", "", "teacher", 0, {})  # its checkpoint was found damaged: trained again
        rec = store.get("h")
        assert rec.status == "done" and rec.metrics == {"accuracy": 0.9}
        assert rec.retrain_status == "running"
        assert store.fail("h", "interrupted") is True  # Ctrl-C: the attempt failed, not the cell
        rec = store.get("h")
        assert rec.status == "done" and rec.metrics == {"accuracy": 0.9} and rec.error is None
        assert (rec.retrain_status, rec.retrain_error) == ("failed", "interrupted")
        assert [c.hash for c in store.cells(status="done")] == ["h"]
        store.start("h", "d", "t", "", "teacher", 0, {})  # again, and the run is killed
        assert store.mark_running_interrupted() == 1
        rec = store.get("h")
        assert rec.status == "done" and rec.retrain_status == "failed" and rec.retrain_error.startswith("interrupted")
        store.start("h", "d", "t", "", "teacher", 0, {})
        store.finish("h", {"accuracy": 0.8}, {}, {"checkpoint_sha256": "new"})
        rec = store.get("h")
        assert rec.status == "done" and rec.metrics == {"accuracy": 0.8} and rec.retrain_status is None
        assert store.fail("h", "interrupted") is False  # nothing running: a done cell is left alone


def _flip_last_byte(path: Path) -> None:
    """One bit flipped in the file's last byte (a checkpoint's weights): it still loads, but is not the same."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))


def test_ctrl_c_while_a_damaged_cell_is_retrained_keeps_its_result_on_the_page(run_cli, quick_run, monkeypatch):
    from medkd_bench.run.computer import CellComputer

    dirs = ["--work-dir", str(quick_run / "work"), "--leaderboard-dir", str(quick_run / "boards")]
    page = quick_run / "boards" / "synthetic-cxr.md"
    kd_row = table_row(page.read_text(), "## Students", ["ofa-595", "visformer-s", "kd"])
    assert kd_row is not None and "| - | - |" not in kd_row  # a gain and a McNemar value
    with _store(quick_run) as store:
        before = {c.method: c for c in store.cells()}
    _flip_last_byte(quick_run / "work" / before["label-only"].artifacts["checkpoint"])
    compute = CellComputer.compute

    def interrupted(self, cell, timings, on_epoch=None):
        if cell.method == "label-only":
            raise KeyboardInterrupt  # Ctrl-C while the damaged baseline is being trained again
        return compute(self, cell, timings, on_epoch)

    monkeypatch.setattr(CellComputer, "compute", interrupted)
    result = run_cli([*QUICK, "--explainers", "all", *dirs])
    assert result.exit_code == 130
    assert "is damaged" in result.err and "training the cell again" in result.err
    with _store(quick_run) as store:
        base = store.get(before["label-only"].hash)
    assert base.status == "done" and base.metrics == before["label-only"].metrics  # the previous result, kept
    assert base.retrain_status == "failed" and base.retrain_error == "interrupted"
    rendered = run_cli(["leaderboard", *dirs])
    assert rendered.exit_code == 0, rendered.err
    text = page.read_text()
    # The same scores and gain (the cost columns can differ: a run retakes a latency timed on a busy machine).
    scores = lambda row: row.split(" | ")[:8]  # noqa: E731
    assert scores(table_row(text, "## Students", ["ofa-595", "visformer-s", "kd"])) == scores(kd_row)
    assert "retraining it did not finish (interrupted)" in text  # the page says why the old result stands

    monkeypatch.setattr(CellComputer, "compute", compute)
    again = run_cli([*QUICK, "--explainers", "all", *dirs])
    assert again.exit_code == 0, again.err
    with _store(quick_run) as store:
        base = store.get(before["label-only"].hash)
    assert base.status == "done" and base.retrain_status is None
    assert base.finished_at > before["label-only"].finished_at  # trained again, not trusted
    assert base.metrics["test_predictions"] == before["label-only"].metrics["test_predictions"]
    assert "did not finish" not in page.read_text()


def test_a_teacher_whose_retraining_failed_teaches_no_student(run_cli, quick_run, monkeypatch):
    """Its old result stays on the page, but its damaged checkpoint must not give a student soft targets."""
    from medkd_bench.run.computer import CellComputer

    dirs = ["--work-dir", str(quick_run / "work"), "--leaderboard-dir", str(quick_run / "boards")]
    with _store(quick_run) as store:
        before = {c.method: c for c in store.cells()}
    for method in ("teacher", "kd"):
        _flip_last_byte(quick_run / "work" / before[method].artifacts["checkpoint"])
    compute = CellComputer.compute

    def failing(self, cell, timings, on_epoch=None):
        if cell.method == "teacher":
            raise RuntimeError("out of cheese")
        return compute(self, cell, timings, on_epoch)

    monkeypatch.setattr(CellComputer, "compute", failing)
    result = run_cli([*QUICK, *dirs])
    assert result.exit_code == 1
    out = result.out.replace("\n", " ")
    assert "training it again failed: RuntimeError: out of cheese; its previous result is kept" in out
    with _store(quick_run) as store:
        after = {c.method: c for c in store.cells()}
    assert after["teacher"].status == "done" and after["teacher"].retrain_error == "RuntimeError: out of cheese"
    assert after["kd"].status == "done" and after["kd"].metrics == before["kd"].metrics
    assert after["kd"].retrain_error == ("teacher 'visformer-s' on synthetic-cxr: its checkpoint is missing or "
                                         "damaged and training it again did not finish (RuntimeError: out of cheese)")
    page = (quick_run / "boards" / "synthetic-cxr.md").read_text()
    assert "| teacher visformer-s, seed 0 | retraining it did not finish (RuntimeError: out of cheese) |" in page


def test_a_finished_cell_whose_explaining_stopped_says_its_result_is_kept(quick_run):
    """A pool worker stopped by Ctrl-C while explaining a cell the store already holds as done: the line
    said "failed <cell>: after it finished: interrupted", as if the result were lost."""
    from medkd_bench.registry import load_registry
    from medkd_bench.run.cells import Cell
    from medkd_bench.run.computer import CellComputer
    from medkd_bench.run.run_options import RunOptions
    from medkd_bench.run.runner import MatrixRunner
    from medkd_bench.runtime.device import resolve_runtime

    lines: list[tuple[str, str]] = []
    reporter = SimpleNamespace(cell_finished=lambda cell, status, detail: lines.append((status, detail)))
    with _store(quick_run) as store:
        teacher = next(c for c in store.cells() if c.method == "teacher")
        computer = CellComputer(load_registry(), RunOptions(work_dir=quick_run / "work"), resolve_runtime("cpu", "off"))
        computer.hash = lambda cell: teacher.hash  # the stored cell, whatever these options would hash it to
        runner = MatrixRunner(computer, store, reporter)
        runner.record_failed(Cell(teacher.dataset, "teacher", teacher=teacher.teacher), "interrupted", {})
        assert store.get(teacher.hash).status == "done"
    assert lines == [("failed", "its result is kept; explaining it did not finish: interrupted (a rerun explains it)")]
    assert runner.summary["explain_failed"] == 1 and runner.summary["failed"] == 0


# ---- damaged artifacts and stores -------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


def test_damaged_checkpoints_and_soft_targets_are_rebuilt_with_the_same_results(run_cli, quick_run):
    dirs = ["--work-dir", str(quick_run / "work"), "--leaderboard-dir", str(quick_run / "boards")]
    with _store(quick_run) as store:
        before = {c.method: c for c in store.cells()}
        explained_before = {(e.cell_hash, e.explainer): e.finished_at for e in store.explanations()}
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
    with _store(quick_run) as store:  # a retrained cell is explained again, by every explainer of the run
        explained = {(e.cell_hash, e.explainer): e.finished_at for e in store.explanations()}
    for method in ("teacher", "kd"):
        again = [key for key, t in explained.items() if key[0] == after[method].hash and t > explained_before[key]]
        assert len(again) == 4, method


def test_a_teacher_trained_again_teaches_from_its_new_checkpoint(run_cli, quick_run):
    """A teacher's checkpoint replaced by another training of it (on another kind of CPU the same cell gives
    other weights): a student distilled afterwards learned from soft targets cached from the checkpoint it
    replaced, while the feature-map methods loaded the new one. The cache follows the checkpoint's SHA-256,
    and each distilled cell records which checkpoint taught it."""
    import torch
    from safetensors.torch import load_file, save_file

    from medkd_bench.files.digests import sha256_file

    dirs = ["--work-dir", str(quick_run / "work"), "--leaderboard-dir", str(quick_run / "boards")]
    work = quick_run / "work"
    with _store(quick_run) as store:
        teacher = next(c for c in store.cells() if c.method == "teacher")
        first_kd = next(c.hash for c in store.cells() if c.method == "kd")
    (old_cache,) = (work / "soft_targets").glob("*.pt")
    old_logits = torch.load(old_cache, weights_only=True)
    (old_maps_file,) = (work / "maps").glob(f"{teacher.hash}-*-grad-cam-2.npy")
    old_maps = np.load(old_maps_file)
    checkpoint = work / "checkpoints" / f"{teacher.hash}.safetensors"
    state = load_file(str(checkpoint))
    state["head.weight"] = -state["head.weight"]  # another training's weights: other logits
    save_file(state, str(checkpoint))
    digest = sha256_file(checkpoint)
    db = sqlite3.connect(work / "runs.sqlite")  # as the store records a teacher trained again
    db.execute("UPDATE cells SET artifacts = ? WHERE hash = ?",
               (json.dumps({**teacher.artifacts, "checkpoint_sha256": digest}), teacher.hash))
    db.commit()
    db.close()
    result = run_cli([*QUICK, "--alpha", "0.9", "--explainers", "grad-cam", *dirs])  # a new KD cell
    assert result.exit_code == 0, result.err
    with _store(quick_run) as store:
        taught = [c.metrics.get("teacher_checkpoint_sha256") for c in store.cells()
                  if c.method == "kd" and c.hash != first_kd]
    assert taught == [digest]
    new_cache = [p for p in (work / "soft_targets").glob("*.pt") if p != old_cache]
    assert len(new_cache) == 1 and digest[:16] in new_cache[0].name
    assert not torch.allclose(torch.load(new_cache[0], weights_only=True), old_logits)
    # The new student is compared with the new teacher's maps, not with those cached from the old checkpoint.
    (new_maps,) = (work / "maps").glob(f"{teacher.hash}-{digest[:16]}-grad-cam-2.npy")
    assert not np.allclose(np.load(new_maps), old_maps)
    # Explanations of the teacher and of the first student, computed from the old checkpoint, are computed again
    # by a run that plans them (the first student's by the default run: nothing trains).
    again = run_cli([*QUICK, "--explainers", "grad-cam", *dirs])
    assert again.exit_code == 0 and "0 trained, 3 already done" in again.out, again.out + again.err
    with _store(quick_run) as store:
        assert store.explanation(teacher.hash, "grad-cam", 2, 0).metrics["checkpoint_sha256"] == digest
        assert store.explanation(first_kd, "grad-cam", 2, 0).metrics["teacher_checkpoint_sha256"] == digest
    # The page says which rows learned from the checkpoint the teacher's row no longer has; results.csv per cell.
    boards = quick_run / "boards"
    assert run_cli(["leaderboard", "--work-dir", str(work), "--leaderboard-dir", str(boards)]).exit_code == 0
    kd_rows = [line for page in boards.glob("synthetic-*.md") for line in page.read_text().splitlines()
               if "| kd |" in line and "panels/" in line]  # the students table's, whose panel links name the cell
    assert {first_kd in line for line in kd_rows} == {True, False}
    assert all(("↻" in line) == (first_kd in line) for line in kd_rows)
    assert "**Teachers trained again**: 1 distilled cell (kd from" in "".join(
        p.read_text() for p in boards.glob("synthetic-*.md"))
    rows = {r["config_hash"]: r for r in csv.DictReader((boards / "results.csv").open())}
    assert [h for h, r in rows.items() if r["taught_by_earlier_teacher_checkpoint"] == "True"] == [first_kd]


def test_damaged_saliency_maps_are_computed_again(tmp_path, capsys):
    host = SimpleNamespace(options=SimpleNamespace(work_dir=tmp_path))
    explanations = CellExplanations(host, None)  # only the cache's file handling is exercised here
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
        before = store.explanation(cells["kd"].hash, "grad-cam", 2, 0)
    (teacher_maps,) = (work / "maps").glob(f"{cells['teacher'].hash}-*-grad-cam-2.npy")  # hash, checkpoint digest
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
        after = store.explanation(cells["kd"].hash, "grad-cam", 2, 0)
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
    assert_one_line_error(result, f"checkpoint {checkpoint}", "SHA-256 differs from the store's")
    assert sorted((quick_run / "boards").rglob("*.png")) == pictures  # no panel from damaged weights


def test_maps_without_a_recorded_digest_or_outside_0_1_are_computed_again(tmp_path, capsys):
    """Behind the SHA-256, the content checks stay: maps the record vouches for must still lie within [0, 1]."""
    from medkd_bench.files.digests import write_recorded

    explanations = CellExplanations(SimpleNamespace(options=SimpleNamespace(work_dir=tmp_path)), None)
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
        assert_one_line_error(result, f"run store {store}")
    assert store.read_bytes() == content  # never rewritten as a fresh store
    assert not (tmp_path / "boards" / "README.md").exists()


def test_a_truncated_store_is_a_one_line_error(run_cli, quick_run):
    store = quick_run / "work" / "runs.sqlite"
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _truncate(store)
    result = run_cli(["leaderboard", "--work-dir", str(quick_run / "work"), "--leaderboard-dir",
                      str(quick_run / "boards")])
    assert_one_line_error(result, f"run store {store}")


def _two_done_cells(path: Path) -> Store:
    store = Store(path)
    for h, method, student in (("good", "teacher", ""), ("bad", "kd", "ofa-595")):
        store.start(h, "synthetic-cxr", "visformer-s", student, method, 0, {"method": method})
        store.finish(h, {"accuracy": 0.5}, {"train_s": 1.0}, {"checkpoint": f"checkpoints/{h}.safetensors"})
    return store


@pytest.mark.parametrize("column, garbage", [
    ("metrics", "{not json"),
    ("metrics", "[1, 2]"),
    ("metrics", '{"accuracy": "high"}'),
    ("config", "\x00\x01"),
    ("timings", '"12 s"'),
    ("artifacts", "{"),
    ("seed", "12x"),
    ("status", "dnoe"),
    ("finished_at", "yesterday"),
])
def test_a_store_row_that_does_not_parse_is_named_left_out_and_trained_again(tmp_path, capsys, column, garbage):
    path = tmp_path / "runs.sqlite"
    with _two_done_cells(path) as store:
        store._db.execute(f"UPDATE cells SET {column}=? WHERE hash='bad'", (garbage,))
        store._db.commit()
        assert [c.hash for c in store.cells()] == ["good"]  # the rest of the store stays usable
        assert [c.hash for c in store.cells(status="done")] == ["good"]
        assert store.get("bad") is None and not store.is_done("bad") and store.get("good") is not None
        err = capsys.readouterr().err
        warnings = [line for line in err.splitlines() if line.strip()]
        assert len(warnings) == 1, err  # said once per store, however often the row is read
        assert warnings[0].startswith(f"warning: run store {path}: cell synthetic-cxr kd visformer-s ofa-595 seed ")
        assert "(hash bad)" in warnings[0] and f"{column}:" in warnings[0] and "trains it again" in warnings[0]
        store.start("bad", "synthetic-cxr", "visformer-s", "ofa-595", "kd", 0, {"method": "kd"})  # `run` retrains it
        rec = store.get("bad")
        assert rec.status == "running" and rec.metrics == {} and rec.retrain_status is None
        assert store.fail("bad", "interrupted") is True and store.get("bad").status == "failed"
        store.start("bad", "synthetic-cxr", "visformer-s", "ofa-595", "kd", 0, {"method": "kd"})
        store.finish("bad", {"accuracy": 0.25}, {}, {})
        assert store.get("bad").metrics == {"accuracy": 0.25} and len(store.cells()) == 2


def test_unreadable_explanation_and_run_rows_are_left_out_with_a_warning(tmp_path, capsys):
    path = tmp_path / "runs.sqlite"
    with _two_done_cells(path) as store:
        store.save_explanation("good", "grad-cam", 3, 0, "done", {"n_images": 3})
        store.save_explanation("bad", "grad-cam", 3, 0, "done", {"n_images": 3})
        store.begin_run({"epochs": 1}, ["good"])
        store.begin_run({"epochs": 2}, ["bad"])
        store._db.execute("UPDATE explanations SET metrics='{' WHERE cell_hash='bad'")
        store._db.execute("UPDATE runs SET settings='nope' WHERE id=2")
        store._db.commit()
        assert [e.cell_hash for e in store.explanations()] == ["good"]
        assert store.explanation("bad", "grad-cam", 3, 0) is None  # computed again by the next run
        assert store.run_settings() == {"good": [(1, {"epochs": 1})]}
        err = capsys.readouterr().err.replace("\n", " ")
    assert f"run store {path}: explanation grad-cam (3 images, seed 0) of cell bad is unreadable (metrics:" in err
    assert f"run store {path}: run 2's settings are unreadable" in err


def test_a_garbage_metrics_row_blocks_neither_pages_nor_exports_and_run_retrains_it(run_cli, quick_run):
    work, boards = quick_run / "work", quick_run / "boards"
    dirs = ["--work-dir", str(work), "--leaderboard-dir", str(boards)]
    store_path = work / "runs.sqlite"
    with _store(quick_run) as store:
        before = {c.method: c for c in store.cells()}
    kd = before["kd"]
    with sqlite3.connect(store_path) as db:
        db.execute("UPDATE cells SET metrics='{\"accuracy\": 0.5, oops' WHERE hash=?", (kd.hash,))
    named = f"run store {store_path}: cell synthetic-cxr kd visformer-s ofa-595 seed 0 (hash {kd.hash})"

    rendered = run_cli(["leaderboard", *dirs])
    assert rendered.exit_code == 0, rendered.err
    assert named in rendered.err.replace("\n", "") and "JSONDecodeError" in rendered.err
    page = (boards / "synthetic-cxr.md").read_text()
    assert table_row(page, "## Students", ["ofa-595", "visformer-s", "kd"]) is None  # rendered without it
    assert table_row(page, "## Students", ["ofa-595", "-", "label-only"]) is not None

    exported = run_cli(["export", "--format", "json", *dirs])
    assert exported.exit_code == 0, exported.err
    assert named in exported.err.replace("\n", "")
    assert sorted(r["method"] for r in json.loads(exported.out)) == ["label-only", "teacher"]

    again = run_cli([*QUICK, "--explainers", "all", *dirs])
    assert again.exit_code == 0, again.err
    assert named in again.err.replace("\n", "")
    assert "1 trained, 2 already done, 0 failed" in again.out.replace("\n", " ")
    with _store(quick_run) as store:
        rec = store.get(kd.hash)
    assert rec.status == "done" and rec.metrics["test_predictions"] == kd.metrics["test_predictions"]
    assert table_row((boards / "synthetic-cxr.md").read_text(), "## Students", ["ofa-595", "visformer-s", "kd"])


# ---- names and paths -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "/abs/x", "a/b", "Upper", ".hidden"])
def test_names_that_would_escape_their_folder_are_refused(run_cli, dirs, tmp_path, monkeypatch, name):
    monkeypatch.setenv("MEDKD_TEST_HOSTILE_NAME", name)
    monkeypatch.chdir(tmp_path)
    result = run_cli(["run", "--matrix", "quick", "--plugin", plugin_fixture("hostile_name"), *dirs])
    assert_one_line_error(result, f"teacher name {name!r} is not allowed")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_output_paths_stay_inside_their_folder(tmp_path):
    from medkd_bench.errors import MedkdError
    from medkd_bench.files.paths import path_inside

    assert path_inside(tmp_path, "panels", "a", "b.png") == tmp_path / "panels" / "a" / "b.png"
    for parts in (("..", "x.md"), ("/abs/x.md",), ("panels", "../../x.png")):
        with pytest.raises(MedkdError, match="outside"):
            path_inside(tmp_path, *parts)


# ---- one run per work dir, a full disk ---------------------------------------------------------------


def test_a_second_run_on_the_same_work_dir_is_refused(run_cli, dirs, tmp_path):
    with WorkDirLock(tmp_path / "work"):
        result = run_cli(["run", "--matrix", "quick", *TINY_DATA, *dirs])
    assert_one_line_error(result, f"another medkd-bench run (PID {os.getpid()}) is using it")
    assert not (tmp_path / "work" / "runs.sqlite").exists()
    with WorkDirLock(tmp_path / "work"):  # released: the next run may take it
        pass


@pytest.mark.slow
def test_a_full_disk_mid_run_stops_cleanly_and_a_rerun_completes(run_cli, quick_run, monkeypatch):
    """The disk fills as the second cell of a run is stored. From the finished quick matrix with its two
    student cells removed: the teacher's training would only add time."""
    dirs = ["--work-dir", str(quick_run / "work"), "--leaderboard-dir", str(quick_run / "boards")]
    with sqlite3.connect(quick_run / "work" / "runs.sqlite") as db:
        students = [h for (h,) in db.execute("SELECT hash FROM cells WHERE method != 'teacher'")]
        db.executemany("DELETE FROM explanations WHERE cell_hash = ?", [(h,) for h in students])
        db.executemany("DELETE FROM cells WHERE hash = ?", [(h,) for h in students])
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
    with _store(quick_run) as store:
        statuses = {c.method: c.status for c in store.cells()}
    assert statuses["teacher"] == statuses["label-only"] == "done"  # the cell stored before the disk filled is kept
    assert statuses.get("kd") != "done"
    monkeypatch.setattr(Store, "finish", finish)
    again = run_cli([*QUICK, "--explainers", "grad-cam", *dirs])
    assert again.exit_code == 0, again.err
    assert "1 trained, 2 already done" in again.out.replace("\n", " ")


# ---- what a run writes, and --debug ---------------------------------------------------------------------


def test_dry_run_writes_nothing(run_cli, dirs, tmp_path):
    result = run_cli(["run", "--matrix", "quick", "--dry-run", *TINY_DATA, *dirs])
    assert result.exit_code == 0 and "new" in result.out
    assert not (tmp_path / "work").exists() and not (tmp_path / "boards").exists()


@pytest.mark.slow
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
    from medkd_bench.report.pages_by_settings import dataset_settings, pages_for, settings_flags
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


def test_dry_run_says_which_finished_cells_train_again_for_a_lost_checkpoint(run_cli, quick_run):
    """A store whose checkpoints were lost (another machine's work dir, a deleted folder) looked finished to
    ``--dry-run``, and the run then trained every cell again: 35 reference cells, hours of work."""
    dirs = ["--work-dir", str(quick_run / "work"), "--leaderboard-dir", str(quick_run / "boards")]
    with _store(quick_run) as store:
        teacher = next(c for c in store.cells() if c.method == "teacher")
    (quick_run / "work" / "checkpoints" / f"{teacher.hash}.safetensors").unlink()
    plan = run_cli([*QUICK, *dirs, "--dry-run"])
    assert plan.exit_code == 0, plan.err
    rows = [line for line in plan.out.splitlines() if "│" in line and "─" not in line]
    assert [line for line in rows if "checkpoint missing" in line] == [line for line in rows if teacher.hash in line]
    assert "1 of 3 cells would train, 1 of them finished cells whose checkpoint is missing or damaged" in plan.out
