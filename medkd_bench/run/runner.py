"""The matrix runner: the driver of a run, and the only writer of its store.

Computing a cell is :class:`~medkd_bench.run.computer.CellComputer`'s, which
never touches the run store; the runner *has* one. An executor (one module
each in :mod:`medkd_bench.run.executors`) asks the runner to open a
:class:`~medkd_bench.run.outcomes.CellJob` for each cell, computes it (in this
process, in worker processes, on Ray nodes) and hands back a
:class:`~medkd_bench.run.outcomes.CellOutcome`; the runner records it. Only
the runner, in the driver process, writes the store: cells started, done and
failed (every failure through :meth:`MatrixRunner.record_failed`), their
explanations, and the back-fills after the cells (timings, probabilities, ONNX).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from torch import nn

from medkd_bench.errors import MedkdError, one_line
from medkd_bench.evaluate.cost import timed_busy
from medkd_bench.files.digests import sha256_file
from medkd_bench.messages import warn
from medkd_bench.run.cells import Cell, baseline_cell_of, teacher_cell_of
from medkd_bench.run.computer import CellComputer
from medkd_bench.run.explanations import CellExplanations
from medkd_bench.run.finished import FinishedCells
from medkd_bench.run.outcomes import CellJob, CellOutcome, ExplanationResult
from medkd_bench.run.records import CellRecord
from medkd_bench.run.reporter import Reporter, SilentReporter
from medkd_bench.run.run_options import RunOptions
from medkd_bench.run.store import Store


class Executor(Protocol):
    """Computes the cells a :class:`MatrixRunner` opens jobs for, and hands each outcome back to it to record.

    Implementations live in :mod:`medkd_bench.run.executors`: one module each.
    """

    def run(self, runner: MatrixRunner, cells: Sequence[Cell]) -> None: ...


class MatrixRunner:
    """Runs cells through an executor, recording each in the store as soon as it ends; the store's only writer."""

    def __init__(self, computer: CellComputer, store: Store, reporter: Reporter | None = None):
        self.computer = computer
        self.store = store
        self.reporter = reporter or SilentReporter()
        self.finished = FinishedCells(computer, store.get)
        self.explanations = CellExplanations(computer, self.finished)
        self.summary = _empty_summary()

    @property
    def options(self) -> RunOptions:
        return self.computer.options

    # ---- running ---------------------------------------------------------
    def run(self, cells: Sequence[Cell], executor: Executor) -> dict[str, int]:
        """Run ``cells`` with ``executor``, then the back-fills; the counts of what happened."""
        self.load_data(cells)
        self.summary = _empty_summary()
        # Before the cells as well as after: a run stopped during its cells (each part of a long run
        # resumed from the store is) would otherwise never time what earlier parts finished.
        self.measure_missing_costs(cells)
        executor.run(self, cells)
        self.measure_missing_costs(cells)
        self.fill_missing_probabilities(cells)
        if self.options.onnx:
            self.reporter.phase("exporting the students to ONNX, checking and timing them on ONNX Runtime")
            self.deploy_onnx(cells)
        return dict(self.summary)

    def load_data(self, cells: Sequence[Cell]) -> None:
        """Read (or generate) every dataset with unfinished cells before any training; check the file-read ones.

        A missing folder, a bad file or an unusable split (a train split of one
        image, say ``synthetic-cxr.n_train=1``) is bad input: it stops the run
        with one line (exit 2) instead of failing, and re-reading, in every cell
        and leaving a page of empty tables. The local executor's cells use the
        data read here; a pool's driver needs it afterwards for the cost figures.
        Each dataset read from files (a root, or folders its spec names, as
        ``datasets add`` writes) is given the data checks of ``datasets check``;
        a failed one is a warning line.
        """
        from medkd_bench.data.audit import audit, warning_lines
        from medkd_bench.run.plan import reads_files

        computer = self.computer
        for name in dict.fromkeys(c.dataset for c in cells if not self.store.is_done(computer.hash(c))):
            data = computer.data(name)
            if reads_files(computer.registry.get("dataset", name)):
                # A reviewer's data checks, once per dataset (cached): warnings, not errors.
                for line in warning_lines(name, audit(data, self.options.data_root,
                                                      self.options.dataset_options.get(name, {}),
                                                      cache_dir=self.options.work_dir / "cache")):
                    warn(line)

    def measure_missing_costs(self, cells: Sequence[Cell]) -> int:
        """Timed cost metrics for finished cells stored without them (pool workers leave them out); how many.

        CPU figures stored before the CPU share was recorded are timed again: without
        it nobody can tell a quiet timing from one taken beside other work. CUDA figures
        stored before latency as deployed was measured are timed again for it.

        Runs before and after the cells, when nothing else trains, from each cell's checkpoint:
        cells a run finished and its interruption left untimed are timed when the next run starts.
        """
        computer, filled = self.computer, 0
        for cell in cells:
            h = computer.hash(cell)
            rec = self.store.get(h)
            if rec is None or rec.status != "done" or not self.finished.is_finished(h):
                continue
            if not needs_timing(rec.metrics, computer.runtime.device.type):
                continue
            if not filled:
                self.reporter.phase("timing the trained models (latency, throughput), nothing else running")
            model = None if computer.has_cost(cell) else computer.load_checkpoint(cell)  # one load per architecture
            cost = computer.cost_of(cell, model)
            complete = not timing_incomplete(rec.metrics, computer.runtime.device.type)
            if complete and _cpu_share(cost) < _cpu_share(rec.metrics):
                continue  # retaken beside other work again, and busier than the stored timing: keep that one
            self.store.update_metrics(h, cost)
            filled += 1
        return filled

    def fill_missing_probabilities(self, cells: Sequence[Cell]) -> int:
        """Test-split class probabilities for finished cells stored before they were recorded; how many.

        ROC AUC and calibration need them. They are recomputed from the cell's
        checksummed checkpoint and kept only if their argmax reproduces every
        stored test prediction: otherwise the checkpoint does not give the
        stored numbers, which is said once, and those scores stay missing.
        """
        from medkd_bench.train.predict import split_outputs

        computer, filled = self.computer, 0
        for cell in cells:
            h = computer.hash(cell)
            rec = self.store.get(h)
            if (rec is None or rec.status != "done" or "test_probabilities" in rec.metrics
                    or "test_predictions" not in rec.metrics or not self.finished.is_finished(h)):
                continue
            model = computer.load_checkpoint(cell)
            preds, probs = split_outputs(model, computer.data(cell.dataset), "test",
                                         computer.runtime_for(computer.model_spec(cell)))
            if preds != rec.metrics["test_predictions"]:
                differ = sum(a != b for a, b in zip(preds, rec.metrics["test_predictions"], strict=False))
                warn(f"{cell.label()}: its checkpoint predicts {differ} test image(s) differently from the "
                     "stored predictions; ROC AUC and calibration are left out for it (rerun in a fresh "
                     "--work-dir to recompute the cell)")
                continue
            self.store.update_metrics(h, {"test_probabilities": probs})
            filled += 1
        return filled

    def deploy_onnx(self, cells: Sequence[Cell]) -> int:
        """Export each finished student to ONNX, check it on the test split, time it on ONNX Runtime; how many.

        Runs after the cells, when nothing else trains (the latency is timed). A
        student whose export fails or whose ONNX Runtime predictions differ from
        PyTorch's is named in one warning and gets no ONNX figures; the next
        ``--onnx`` run tries again. The latency is taken once per architecture.
        """
        from medkd_bench.deploy.onnx import check_onnx, export_onnx, onnx_latency

        latencies: dict[tuple, dict[str, float]] = {}
        computer, done = self.computer, 0
        for cell in cells:
            h = computer.hash(cell)
            rec = self.store.get(h)
            if (cell.method == "teacher" or rec is None or rec.status != "done" or "onnx_latency_ms" in rec.metrics
                    or not self.finished.is_finished(h)):
                continue
            size = computer.dataset_config(cell.dataset)["img_size"]
            path = self.options.work_dir / "onnx" / f"{h}.onnx"
            data = computer.data(cell.dataset)
            try:
                model = computer.load_checkpoint(cell)
                export_onnx(model, size, path)
                check = check_onnx(path, model, data.normalise(data.splits["test"].images))
            except Exception as exc:  # the exporter's failures are many and deep: one line, the run goes on
                warn(f"{cell.label()}: ONNX export failed ({one_line(exc)}); no ONNX figures for it")
                continue
            if not check.ok:
                warn(f"{cell.label()}: {check.problem()}; no ONNX figures for it")
                continue
            key = computer.cost_key(cell)
            if key not in latencies:
                latencies[key] = onnx_latency(path, size, self.options.latency_runs, self.options.latency_seconds,
                                              attempts=self.options.latency_attempts)
            self.store.update_metrics(h, {**latencies[key], "onnx_max_abs_logit_diff": check.max_abs_diff,
                                          "onnx_tolerance": check.tolerance, "onnx_tied_predictions": check.ties,
                                          "onnx_file": str(path.relative_to(self.options.work_dir)),
                                          "onnx_sha256": sha256_file(path)})
            done += 1
        return done

    # ---- the driver's side of a cell: what executors call -----------------------------------------------------
    def missing_explanations(self, cell: Cell) -> tuple[str, ...]:
        """The run's explainers without a finished explanation of ``cell`` in the store, or with one of other weights.

        A finished explanation records the checkpoints it was computed from (the cell's, and for a distilled
        cell the teacher's its agreement compares with); when one of them was trained again since, with other
        weights, the explanation is computed again. Rows stored before these digests were recorded are kept.
        """
        h, n = self.computer.hash(cell), len(self.explanations.sample(cell))
        current = {"checkpoint_sha256": self.computer.checkpoint_digest(h)}
        if cell.distilled:
            current["teacher_checkpoint_sha256"] = self.computer.checkpoint_digest(
                self.computer.hash(teacher_cell_of(cell)))
        missing = []
        for explainer in self.explanations.explainer_names():
            rec = self.store.explanation(h, explainer, n, cell.seed)
            if rec is None or rec.status != "done" or any(
                    rec.metrics.get(key) not in (None, digest) for key, digest in current.items() if digest):
                missing.append(explainer)
        return tuple(missing)

    def open_job(self, cell: Cell, index: int, total: int) -> CellJob | None:
        """The job for ``cell``, marked running in the store, or None when it is settled here.

        Settled here: a cell finished earlier with nothing left to explain
        (skipped), or a distilled cell whose teacher did not finish (failed). A
        finished cell with explanations missing is a job that only explains.
        """
        h = self.computer.hash(cell)
        if self.finished.is_finished(h):
            self.record_skipped(cell)
            return self.explain_job(cell, index, total)
        self.reporter.cell_started(cell, index, total, self.computer.cell_settings(cell).epochs)
        self.store.start(h, cell.dataset, cell.teacher, cell.student, cell.method, cell.seed, self.computer.config(cell))
        try:
            self.finished.check_teacher(cell)
        except MedkdError as exc:
            self.record_failed(cell, str(exc), {})
            return None
        # A cell trained (again) is explained with every explainer of the run: rows kept from a checkpoint
        # that was lost describe other weights unless the retraining reproduced them bit for bit.
        return CellJob(cell, index, total, h, True, tuple(self.explanations.explainer_names()),
                       self._rows(cell, own=False))

    def explain_job(self, cell: Cell, index: int, total: int) -> CellJob | None:
        """A job that only explains finished ``cell`` (its missing explanations); None when none is missing."""
        missing = self.missing_explanations(cell)
        return (CellJob(cell, index, total, self.computer.hash(cell), False, missing, self._rows(cell, own=True))
                if missing else None)

    def _rows(self, cell: Cell, own: bool) -> dict[str, CellRecord]:
        """The finished rows explaining ``cell`` reads: its teacher's, its baseline's (and its own, if ``own``)."""
        cells = [teacher_cell_of(cell), baseline_cell_of(cell)] if cell.distilled else []
        rows = {}
        for c in [cell] * own + cells:
            rec = self.finished.row(c)
            if rec is not None and rec.status == "done":
                rows[rec.hash] = rec
        return rows

    def record(self, job: CellJob, outcome: CellOutcome) -> None:
        """Store what an executor computed for ``job``'s cell: done, with its record, or failed."""
        if outcome.status == "done":
            self.store.finish(job.hash, outcome.metrics, outcome.timings, outcome.artifacts)
            self.summary["done"] += 1
            self.reporter.cell_finished(job.cell, "done", f"test accuracy {outcome.metrics['accuracy']:.3f}")
        else:
            self.record_failed(job.cell, outcome.error, outcome.timings, outcome.traceback)

    def explain(self, job: CellJob, model: nn.Module | None = None) -> None:
        """Explain ``job``'s finished cell here, on the driver (``model``: its trained model, else loaded); store it."""
        self.record_explanations(job, self.explanations.explain(job.cell, job.explainers, model, self.reporter.phase))

    def record_explanations(self, job: CellJob, results: list[ExplanationResult]) -> None:
        """Store each explainer's result for ``job``'s cell (computed here or by the executor)."""
        for r in results:
            self.store.save_explanation(job.hash, r.explainer, r.n_images, r.seed, r.status, r.metrics, r.artifacts,
                                        r.error, r.traceback)
            if r.status == "done":
                self.summary["explained"] += 1
            else:
                self.summary["explain_failed"] += 1
                self.reporter.cell_finished(job.cell, "failed", f"{r.explainer}: {r.error}")

    def record_failed(self, cell: Cell, message: str, timings: dict[str, float], trace: str | None = None) -> None:
        """Store a cell's one-line failure (and its traceback, for ``--debug``) unless it already finished.

        Every failure of a cell goes through here: its own error, its teacher's,
        a dead worker or Ray task, an interruption. A finished cell that was
        being trained again keeps its result; the failure is its retrain
        attempt's, and the line says so. A finished cell not being trained
        (explaining it failed, or was interrupted) keeps its row as it is.
        """
        h = self.computer.hash(cell)
        if self.store.fail(h, message, timings, trace):
            self.summary["failed"] += 1
            rec = self.store.get(h)
            kept = rec is not None and rec.status == "done"
            self.reporter.cell_finished(cell, "failed", f"training it again failed: {message}; its previous result "
                                        "is kept" if kept else message)
        else:
            self.summary["explain_failed"] += 1
            self.reporter.cell_finished(cell, "failed", f"its result is kept; explaining it did not finish: {message} "
                                        "(a rerun explains it)")

    def record_skipped(self, cell: Cell) -> None:
        self.summary["skipped"] += 1
        self.reporter.cell_finished(cell, "skipped", "finished earlier")


def _empty_summary() -> dict[str, int]:
    return {"done": 0, "skipped": 0, "failed": 0, "explained": 0, "explain_failed": 0}


#: What a stored timing must carry to count as done, per device: on CPU the CPU share it got
#: (without it a quiet timing looks like a busy one), on CUDA latency as deployed (or why it has none).
TIMING_COMPLETE = {"cpu": "latency_cpu_share", "cuda": "latency_deployed_method"}


def needs_timing(metrics: dict[str, Any], device_type: str) -> bool:
    """Whether a finished cell's stored timing is missing, lacks what this device records, or was taken busy.

    Older stores' timings are redone once. A CPU timing taken beside other work
    (:func:`~medkd_bench.evaluate.cost.timed_busy`, flagged on the pages) is retaken by every
    later run until one is quiet: one timing per architecture, seconds.
    """
    return timing_incomplete(metrics, device_type) or (device_type == "cpu" and timed_busy(metrics))


def timing_incomplete(metrics: dict[str, Any], device_type: str) -> bool:
    """Whether a finished cell's stored timing is missing or lacks what this device records."""
    required = TIMING_COMPLETE.get(device_type)
    return "latency_ms" not in metrics or (required is not None and required not in metrics)


def _cpu_share(metrics: dict[str, Any]) -> float:
    """The CPU share a stored timing got (1.0 where the device records none)."""
    share = metrics.get("latency_cpu_share")
    return 1.0 if share is None else float(share)
