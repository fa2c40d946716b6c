"""One ``medkd-bench run``, from a validated request to its summary: the run core's entry point.

``cli/run.py`` parses the flags into a :class:`RunRequest` (the planned
cells, the options, the executor) and prints what :class:`RunSession` gives
back. The session checks what can be checked before any work (options,
method layers, explainer names, writable folders, the leaderboard folder's
owner, the compiler), then holds the work dir's lock and the store for the
run: tuning first (``--tune``), then the cells through the executor, then the
leaderboards. It builds the cell computer once; the runner it drives is the
only writer of the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from copy import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medkd_bench import __version__
from medkd_bench.evaluate.stats import RESAMPLES
from medkd_bench.registry import Registry
from medkd_bench.run.artifacts import checkpoint_problem
from medkd_bench.run.cells import Cell
from medkd_bench.run.computer import CellComputer
from medkd_bench.run.estimate import MatrixEta, measured_seconds
from medkd_bench.run.executors.pool import PoolExecutor
from medkd_bench.run.executors.ray import RayExecutor, driver_runtime
from medkd_bench.run.executors.worker import absolute_paths
from medkd_bench.run.explanations import explainer_names
from medkd_bench.run.records import StoreError
from medkd_bench.run.reporter import Reporter
from medkd_bench.run.run_options import RunOptions
from medkd_bench.run.runner import Executor, MatrixRunner
from medkd_bench.run.store import Store
from medkd_bench.runtime.device import resolve_runtime
from medkd_bench.tune.space import arm_of

#: ``--dry-run``'s status of a done cell the run trains again: ``checkpoint missing``, ``checkpoint damaged``.
RETRAINS = "checkpoint"
#: ``--dry-run --tune N``'s status of a student cell whose arm is still to tune: its options, so its hash, come after.
AFTER_TUNING = "after tuning"


@dataclass
class RunRequest:
    """A ``run`` whose flags are parsed and checked: what to run, with which options, on which executor.

    Paths in ``options`` are as the user gave them (messages name them so);
    the session hashes and computes with their absolute form.
    """

    registry: Registry
    cells: list[Cell]
    options: RunOptions
    executor: Executor
    device: str = "auto"
    amp: str = "auto"
    deterministic: bool = False
    #: ``--tune N``: trials per arm before the final cells (0: none), on seed ``seed``.
    tune: int = 0
    seed: int = 0
    bootstrap: int = RESAMPLES


@dataclass
class RunSummary:
    """What a run did: cells trained, skipped and failed, explanations computed and failed, pages written."""

    done: int
    skipped: int
    failed: int
    explained: int
    explain_failed: int
    leaderboards: list[Path] = field(default_factory=list)


class RunStopped(StoreError):
    """The store failed mid-run: the run stopped; the cells it finished are kept."""


class RunSession:
    """One run of a :class:`RunRequest`; constructing it checks the request before anything is written."""

    def __init__(self, request: RunRequest):
        self.request = request
        options = request.options
        if isinstance(request.executor, RayExecutor):  # the driver explains; its own device may lack the workers'
            self.runtime = driver_runtime(request.device, request.amp, request.deterministic, options.compile_mode)
        else:
            self.runtime = resolve_runtime(request.device, request.amp, request.deterministic,
                                           compile_mode=options.compile_mode)
        # Workers run in other processes (or on other machines): they need absolute paths, and the hashes must
        # agree whichever executor ran a cell, so every run hashes the absolute ones.
        self.computer = CellComputer(request.registry, absolute_paths(options), self.runtime)  # checks the options
        self.computer.check_method_layers(request.cells)
        explainer_names(self.computer)  # unknown explainer names: before the work and leaderboard dirs are touched

    @property
    def store_path(self) -> Path:
        return self.request.options.work_dir / "runs.sqlite"

    def planned(self) -> list[tuple[Cell, str, str]]:
        """``--dry-run``: each planned cell, its hash and its status in the store (read only; "new" if none).

        A done cell whose checkpoint is missing or damaged is trained again by
        the run (:class:`~medkd_bench.run.finished.FinishedCells`), so the plan
        says so: a store whose checkpoints were lost would otherwise look finished
        to ``--dry-run`` and then train every cell again.
        """
        store = Store(self.store_path, readonly=True) if self.store_path.exists() else None
        try:
            rows = []
            chosen = self._replayed_choices(store) if self.request.tune else {}
            for cell in self.request.cells:
                arm = arm_of(cell) if self.request.tune else None
                if arm is not None and arm.key not in chosen:
                    rows.append((cell, "-", AFTER_TUNING))
                    continue
                h = self._computer_with(chosen).hash(cell) if arm is not None else self.computer.hash(cell)
                rec = store.get(h) if store is not None else None
                status = rec.status if rec else "new"
                if rec is not None and rec.status == "done":
                    problem = checkpoint_problem(self.computer.checkpoint_path(h), rec.artifacts)
                    status = f"{RETRAINS} {problem.split(' ', 1)[0]}" if problem else status
                rows.append((cell, h, status))
            return rows
        finally:
            if store is not None:
                store.close()

    def _replayed_choices(self, store: Store | None) -> dict[str, dict[str, Any]]:
        """``--dry-run --tune N``: the options of every arm whose N trials are all stored, by arm key.

        Their final cells' hashes are then known; the other arms' are not until
        their tuning ends (their status is :data:`AFTER_TUNING`).
        """
        from medkd_bench.tune.session import arms_of
        from medkd_bench.tune.study import Tuner

        if store is None:
            return {}
        tuner = Tuner(self.computer, store, self.request.tune, self.request.seed)
        replays = (tuner.replay(arm) for arm in arms_of(self.request.cells))
        return {r.arm.key: dict(r.chosen) for r in replays if r is not None}

    def _computer_with(self, chosen: dict[str, dict[str, Any]]) -> CellComputer:
        """The cell computer hashing students with the tuned options ``chosen`` (a copy: the dry run's own)."""
        computer = copy(self.computer)
        computer.options = replace(self.computer.options, tuned=chosen, tune_trials=self.request.tune)
        return computer

    def where(self) -> str:
        executor = self.request.executor
        if isinstance(executor, RayExecutor):
            return f"Ray ({executor.address or 'local cluster'})"
        where = self.runtime.describe()
        if isinstance(executor, PoolExecutor):
            where += f" in {executor.jobs} worker processes, {executor.recipe.threads} thread(s) each"
        return where

    def run(self, say: Callable[[str], None], reporting: Callable[[MatrixEta], AbstractContextManager[Reporter]],
            on_stop: Callable[[Store, list[str]], None] | None = None) -> RunSummary:
        """Tune (if asked), run the cells, write the leaderboards; the summary.

        ``say`` prints a line; ``reporting(eta)`` is the progress display the
        cells run under; ``on_stop(store, hashes)`` is called as the cells end,
        however they end (``--debug`` prints failures' tracebacks with it).
        A store error while the cells run is :class:`RunStopped`.
        """
        from medkd_bench.files.paths import check_writable
        from medkd_bench.report.board_owner import claim_leaderboard_dir
        from medkd_bench.report.leaderboard import render_all
        from medkd_bench.run.lock import WorkDirLock
        from medkd_bench.run.run_options import result_settings
        from medkd_bench.runtime.device import recorded_amp

        request, computer, cells = self.request, self.computer, self.request.cells
        work_dir, board_dir = request.options.work_dir, request.options.leaderboard_dir
        if request.options.compile_mode != "off":  # a missing compiler is bad input: before any work
            from medkd_bench.run.compile_probe import require_compiler

            require_compiler(self.runtime, request.options.compile_mode)
        check_writable(work_dir, "--work-dir")
        check_writable(board_dir, "--leaderboard-dir")
        claim_leaderboard_dir(board_dir, work_dir)  # another work dir's pages there: refused before any work
        with WorkDirLock(work_dir), Store(self.store_path) as store:
            store.mark_running_interrupted()  # left by a killed run: this run holds the lock, so none is live
            runner = MatrixRunner(computer, store)
            if request.tune:
                self._tune(runner, say)
            hashes = [computer.hash(c) for c in cells]
            specs = {(c.role, c.model_name): computer.model_spec(c) for c in cells}.values()
            amp = recorded_amp(computer.runtime, request.amp, specs)
            store.begin_run(result_settings(computer.options, amp, request.deterministic), hashes)
            say(f"medkd-bench {__version__}: {len(cells)} cells on {self.where()}; store {store.path}")
            jobs = request.executor.jobs if isinstance(request.executor, PoolExecutor) else 1
            try:
                with reporting(MatrixEta(measured_seconds(store, cells), jobs, time.perf_counter)) as reporter:
                    runner.reporter = reporter
                    counts = runner.run(cells, request.executor)
            except StoreError as exc:  # mid-run: the cells it finished are in the store
                raise RunStopped(str(exc)) from exc
            finally:
                if on_stop is not None:
                    on_stop(store, hashes)
            say("[dim]writing the leaderboards[/]")
            written = render_all(request.registry, store, board_dir, request.bootstrap)
        return RunSummary(**counts, leaderboards=written)

    def _tune(self, runner: MatrixRunner, say: Callable[[str], None]) -> None:
        """``--tune N``: tune every arm, then hash the final cells with the options chosen.

        The same computer carries on: its data, soft targets and cost figures do
        not depend on the tuned options (teachers are not tuned).
        """
        from medkd_bench.tune.session import chosen_options, tune_matrix

        request = self.request
        result = tune_matrix(runner, request.cells, request.executor, request.tune, request.seed, say=say)
        if result.died:  # an arm left untuned would be compared with tuned ones: no final cell before it is
            arm, why = next(iter(result.died.items()))
            more = f" (and {len(result.died) - 1} more arm(s))" if len(result.died) > 1 else ""
            raise RunStopped(f"tuning {arm}: {why}{more}; its finished trials are kept: run again to resume")
        self.computer.options = replace(self.computer.options, tuned=chosen_options(result.tuned),
                                        tune_trials=request.tune)

