"""The matrix runner: runs cells (in order here, or through an executor) and commits each to the store.

Computing a cell is :class:`~medkd_bench.run.computer.CellComputer`, which
never touches the run store; :class:`MatrixRunner` adds the store, the
explanations and the run loop. The split lets an executor compute cells in
other processes or on other machines while the driver alone writes the store.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import Any, Protocol

from torch import nn

from medkd_bench.errors import MedkdError, one_line
from medkd_bench.registry import Registry
from medkd_bench.run.artifacts import checkpoint_problem
from medkd_bench.run.cells import Cell, teacher_cell_of
from medkd_bench.run.computer import CellComputer
from medkd_bench.run.explanations import CellExplanations
from medkd_bench.run.options import Reporter, RunOptions, SilentReporter
from medkd_bench.run.store import Store, StoreError
from medkd_bench.system.files import check_writable, sha256_file
from medkd_bench.system.messages import warn
from medkd_bench.system.runtime import Runtime


class Executor(Protocol):
    """Runs planned cells through a :class:`MatrixRunner`; returns ``{"done", "skipped", "failed"}`` counts.

    Implementations live in :mod:`medkd_bench.run.executors`: one module each.
    """

    def run(self, runner: MatrixRunner, cells: Sequence[Cell]) -> dict[str, int]: ...


class MatrixRunner(CellComputer):
    """Runs cells (in order here, or through an executor), committing each to the store as soon as it ends.

    Only this class writes the store: on a cluster it runs on the driver.
    """

    def __init__(self, registry: Registry, options: RunOptions, store: Store, runtime: Runtime,
                 reporter: Reporter | None = None):
        super().__init__(registry, options, runtime)
        self.store = store
        self.reporter = reporter or SilentReporter()
        self.explain_counts = {"explained": 0, "explain_failed": 0}
        self.explanations = CellExplanations(self)
        self._warned: set[str] = set()

    def load_trained(self, cell: Cell) -> nn.Module:
        """A finished cell's model, rebuilt from its checkpoint (which must match the store's SHA-256)."""
        if not self.is_finished(self.hash(cell)):
            raise MedkdError(f"{cell.label()} has no finished checkpoint (run it first)")
        return self.load_checkpoint(cell)

    # ---- running ---------------------------------------------------------
    def run(self, cells: Sequence[Cell], executor: Executor | None = None) -> dict[str, int]:
        """Run ``cells`` with ``executor`` (default: in this process, in order)."""
        check_writable(self.options.work_dir, "--work-dir")
        check_writable(self.options.leaderboard_dir, "--leaderboard-dir")
        self.explanations.explainer_names()  # unknown explainer names fail before any training
        self.load_data(cells)
        summary = executor.run(self, cells) if executor is not None else self.run_in_order(cells)
        self.measure_missing_costs(cells)
        self.fill_missing_probabilities(cells)
        if self.options.onnx:
            self.reporter.phase("exporting the students to ONNX, checking and timing them on ONNX Runtime")
            self.deploy_onnx(cells)
        return {**summary, **self.explain_counts}

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

        for name in dict.fromkeys(c.dataset for c in cells if not self.store.is_done(self.hash(c))):
            data = self.data(name)
            if reads_files(self.registry.get("dataset", name)):
                # A reviewer's data checks, once per dataset (cached): warnings, not errors.
                for line in warning_lines(name, audit(data, self.options.data_root,
                                                      self.options.dataset_options.get(name, {}),
                                                      cache_dir=self.options.work_dir / "cache")):
                    warn(line)

    def run_in_order(self, cells: Sequence[Cell]) -> dict[str, int]:
        """Every cell in this process, in plan order: what runs when no executor is given."""
        summary = {"done": 0, "skipped": 0, "failed": 0}
        for index, cell in enumerate(cells, start=1):
            summary[self.run_cell(cell, index, len(cells))] += 1
        return summary

    def measure_missing_costs(self, cells: Sequence[Cell]) -> int:
        """Timed cost metrics for finished cells stored without them (pool workers leave them out); how many.

        CPU figures stored before the CPU share was recorded are timed again: without
        it nobody can tell a quiet timing from one taken beside other work. CUDA figures
        stored before latency as deployed was measured are timed again for it.

        Runs after the cells, when nothing else trains, from each cell's checkpoint.
        A run interrupted before this point leaves them missing; the next run fills them in.
        """
        filled = 0
        for cell in cells:
            h = self.hash(cell)
            rec = self.store.get(h)
            if rec is None or rec.status != "done" or not self.is_finished(h):
                continue
            if not needs_timing(rec.metrics, self.runtime.device.type):
                continue
            if not filled:
                self.reporter.phase("timing the trained models (latency, throughput), nothing else running")
            model = None if self.has_cost(cell) else self.load_checkpoint(cell)  # one load per architecture
            self.store.update_metrics(h, self.cost_of(cell, model))
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

        filled = 0
        for cell in cells:
            h = self.hash(cell)
            rec = self.store.get(h)
            if (rec is None or rec.status != "done" or "test_probabilities" in rec.metrics
                    or "test_predictions" not in rec.metrics or not self.is_finished(h)):
                continue
            model = self.load_checkpoint(cell)
            preds, probs = split_outputs(model, self.data(cell.dataset), "test",
                                         self.runtime_for(self.model_spec(cell)))
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
        done = 0
        for cell in cells:
            h = self.hash(cell)
            rec = self.store.get(h)
            if (cell.method == "teacher" or rec is None or rec.status != "done" or "onnx_latency_ms" in rec.metrics
                    or not self.is_finished(h)):
                continue
            size = self.dataset_config(cell.dataset)["img_size"]
            path = self.options.work_dir / "onnx" / f"{h}.onnx"
            data = self.data(cell.dataset)
            try:
                model = self.load_checkpoint(cell)
                export_onnx(model, size, path)
                check = check_onnx(path, model, data.normalise(data.splits["test"].images))
            except Exception as exc:  # the exporter's failures are many and deep: one line, the run goes on
                warn(f"{cell.label()}: ONNX export failed ({one_line(exc)}); no ONNX figures for it")
                continue
            if not check.ok:
                warn(f"{cell.label()}: {check.problem()}; no ONNX figures for it")
                continue
            key = self.cost_key(cell)
            if key not in latencies:
                latencies[key] = onnx_latency(path, size, self.options.latency_runs)
            self.store.update_metrics(h, {**latencies[key], "onnx_max_abs_logit_diff": check.max_abs_diff,
                                          "onnx_tolerance": check.tolerance, "onnx_tied_predictions": check.ties,
                                          "onnx_file": str(path.relative_to(self.options.work_dir)),
                                          "onnx_sha256": sha256_file(path)})
            done += 1
        return done

    def is_finished(self, cell_hash: str) -> bool:
        """Done in the store, and its checkpoint on disk with the SHA-256 the store recorded.

        A missing or damaged checkpoint means the cell is trained again (with a
        warning naming the file) instead of failing every cell that needs it.
        """
        rec = self.store.get(cell_hash)
        if rec is None or rec.status != "done":
            return False
        path = self.checkpoint_path(cell_hash)
        problem = checkpoint_problem(path, rec.artifacts)
        if problem is None:
            return True
        if str(path) not in self._warned:  # checked again by later steps of the run: say it once
            self._warned.add(str(path))
            warn(f"checkpoint {path} of finished cell {cell_hash} is {problem}: training the cell again")
        return False

    def check_teacher(self, cell: Cell) -> None:
        """A distilled cell needs its teacher finished, checkpoint intact; raises with the teacher's own error otherwise.

        A teacher still done in the store whose checkpoint is damaged and whose
        retraining did not finish cannot teach: its soft targets would come from
        the damaged weights.
        """
        if not cell.distilled:
            return
        h = self.hash(teacher_cell_of(cell))
        teacher_rec = self.store.get(h)
        if teacher_rec is None or teacher_rec.status != "done":
            raise MedkdError(f"teacher {cell.teacher!r} has not been trained on {cell.dataset} "
                             f"({teacher_rec.error if teacher_rec and teacher_rec.error else 'no finished cell'})")
        if not self.is_finished(h):
            why = f" ({teacher_rec.retrain_error})" if teacher_rec.retrain_error else ""
            raise MedkdError(f"teacher {cell.teacher!r} on {cell.dataset}: its checkpoint is missing or damaged and "
                             f"training it again did not finish{why}")

    def begin(self, cell: Cell, index: int, total: int) -> str:
        """Mark ``cell`` running in the store; its hash."""
        h = self.hash(cell)
        self.reporter.cell_started(cell, index, total, self.cell_settings(cell).epochs)
        self.store.start(h, cell.dataset, cell.teacher, cell.student, cell.method, cell.seed, self.config(cell))
        return h

    def record_done(self, cell: Cell, metrics: dict[str, Any], timings: dict[str, float],
                    artifacts: dict[str, str]) -> None:
        self.store.finish(self.hash(cell), metrics, timings, artifacts)
        self.reporter.cell_finished(cell, "done", f"test accuracy {metrics['accuracy']:.3f}")

    def record_failed(self, cell: Cell, message: str, timings: dict[str, float], trace: str | None = None) -> None:
        """Store a cell's one-line failure (and its traceback, for ``--debug``) unless it already finished.

        A finished cell that was being trained again keeps its result; the
        failure is its retrain attempt's, and the line says so.
        """
        h = self.hash(cell)
        if self.store.fail(h, message, timings, trace):
            rec = self.store.get(h)
            kept = rec is not None and rec.status == "done"
            self.reporter.cell_finished(cell, "failed", f"training it again failed: {message}; its previous result "
                                        "is kept" if kept else message)

    def record_skipped(self, cell: Cell) -> None:
        self.reporter.cell_finished(cell, "skipped", "finished earlier")

    def explain_finished(self, cell: Cell, model: nn.Module | None = None) -> None:
        explained, failed = self.explanations.explain(cell, model)
        self.explain_counts["explained"] += explained
        self.explain_counts["explain_failed"] += failed

    def run_cell(self, cell: Cell, index: int = 1, total: int = 1) -> str:
        """Train and score a cell unless it is finished, then explain it. Never raises for a cell's own failure."""
        model: nn.Module | None = None
        if self.is_finished(self.hash(cell)):
            status = "skipped"
            self.record_skipped(cell)
        else:
            model, status = self._train_cell(cell, index, total)
        if status != "failed":
            self.explain_finished(cell, model)
        return status

    def _train_cell(self, cell: Cell, index: int, total: int) -> tuple[nn.Module | None, str]:
        h = self.begin(cell, index, total)
        timings: dict[str, float] = {}
        try:
            self.check_teacher(cell)
            result = self.compute(cell, timings, on_epoch=lambda epoch, epochs, row:
                                  self.reporter.epoch_done(cell, epoch, epochs, row))
        except KeyboardInterrupt:
            self.store.fail(h, "interrupted", timings)
            raise
        except StoreError:
            raise  # the store itself fails: the run stops cleanly, its finished cells kept
        except Exception as exc:
            self.record_failed(cell, one_line(exc), timings, traceback.format_exc())
            return None, "failed"
        self.record_done(cell, result.metrics, result.timings, result.artifacts)
        return result.model, "done"


#: What a stored timing must carry to count as done, per device: on CPU the CPU share it got
#: (without it a quiet timing looks like a busy one), on CUDA latency as deployed (or why it has none).
TIMING_COMPLETE = {"cpu": "latency_cpu_share", "cuda": "latency_deployed_method"}


def needs_timing(metrics: dict[str, Any], device_type: str) -> bool:
    """Whether a finished cell's stored cost metrics lack a timing this device records; older stores' are redone once."""
    required = TIMING_COMPLETE.get(device_type)
    return "latency_ms" not in metrics or (required is not None and required not in metrics)
