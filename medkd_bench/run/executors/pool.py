"""Cells in worker processes on this machine (``--jobs N``), a share of the threads each.

On a 2-core CPU two one-thread processes train 1.16x faster than one
two-thread process. Each worker runs whole cells (training, scoring and
explanations) exactly as the runner does in process and writes the SQLite
store itself (WAL serialises the writes); the driver measures cost metrics
afterwards, when nothing else runs.

Ctrl-C is the driver's business alone. Workers ignore SIGINT, and the driver
turns it into a flag its scheduling loop reads, so the interrupt never lands
inside ``concurrent.futures`` or ``multiprocessing`` code holding a lock. On
that flag the driver terminates its workers, marks their cells interrupted and
exits: ``kill -INT`` of the driver alone (a supervisor, ``timeout -s INT``)
stops the run as promptly as a terminal's Ctrl-C to the whole process group.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field

from medkd_bench.errors import MedkdError, one_line
from medkd_bench.run.cells import Cell, baseline_cell_of, teacher_cell_of
from medkd_bench.run.executors.worker import WorkerRecipe, worker_setup
from medkd_bench.run.runner import MatrixRunner

#: Scheduling order of ready cells in a pool: teachers first, since every distilled cell waits for one.
METHOD_PRIORITY = {"teacher": 0, "label-only": 1}  # then every distilled cell

#: How often the driver's scheduling loop looks at the Ctrl-C flag while cells run (seconds).
INTERRUPT_POLL_S = 0.2
#: How long terminated workers get to exit before they are killed (seconds).
TERMINATE_GRACE_S = 5.0


@dataclass
class RecordingReporter:
    """A pool worker's reporter: keeps the finished-cell lines for the driver to print."""

    events: list[tuple[str, str]] = field(default_factory=list)

    def cell_started(self, cell: Cell, index: int, total: int, epochs: int) -> None:
        pass

    def epoch_done(self, epoch: int, epochs: int, row: dict[str, float]) -> None:
        pass

    def cell_finished(self, cell: Cell, status: str, detail: str) -> None:
        self.events.append((status, detail))


@dataclass
class PoolOutcome:
    """What a pool worker returns for one cell: its status and the lines to report."""

    status: str  # "done", "skipped" or "failed"
    events: list[tuple[str, str]]
    explained: int
    explain_failed: int


_POOL_RUNNER: list[MatrixRunner] = []  # the worker process's runner, built once by its initializer


def _pool_worker_init(recipe: WorkerRecipe) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops its workers itself (module docstring)
    from medkd_bench.run.store import Store

    registry, runtime = worker_setup(recipe)
    store = Store(recipe.options.work_dir / "runs.sqlite")
    runner = MatrixRunner(registry, recipe.options, store, runtime, RecordingReporter())
    runner.measure_timings = False
    _POOL_RUNNER[:] = [runner]


def run_cell_in_worker(cell: Cell, index: int, total: int) -> PoolOutcome:
    """The pool task body: the same ``run_cell`` as the local executor, in a worker process."""
    runner = _POOL_RUNNER[0]
    reporter = runner.reporter
    assert isinstance(reporter, RecordingReporter)
    reporter.events = []
    before = dict(runner.explain_counts)
    status = runner.run_cell(cell, index, total)
    return PoolOutcome(status, reporter.events, runner.explain_counts["explained"] - before["explained"],
                       runner.explain_counts["explain_failed"] - before["explain_failed"])


def cell_dependencies(cell: Cell, planned: set[Cell]) -> list[Cell]:
    """Planned cells that must finish (trained and explained) before ``cell`` starts.

    A distilled cell needs its teacher's checkpoint and maps, and the label-only
    baseline's maps for its panel and agreement: the same inputs the local
    executor's plan order gives it, so both executors write the same results.
    """
    if not cell.distilled:
        return []
    return [c for c in (teacher_cell_of(cell), baseline_cell_of(cell)) if c in planned]


@dataclass
class PoolExecutor:
    """Cells in ``jobs`` worker processes on this machine (``--jobs N``), ``recipe.threads`` torch threads each.

    Each worker runs whole cells exactly as :class:`LocalExecutor` does and
    writes the store itself (SQLite in WAL mode serialises the writes). Cost
    metrics (latency, throughput) are left to the driver, which measures them
    after the pool has finished: timed next to another training process they
    would be slow by up to 2x. A worker that dies (killed, out of memory)
    fails only the cell it ran; the pool is restarted for the rest.
    """

    recipe: WorkerRecipe
    jobs: int

    def __post_init__(self) -> None:
        if self.jobs < 2:
            raise MedkdError("--jobs: a worker pool needs at least 2 workers (1 runs in this process)")

    def run(self, runner: MatrixRunner, cells: Sequence[Cell]) -> dict[str, int]:
        return _PoolSchedule(self, runner, cells).run()


class _PoolSchedule:
    """One pool run's bookkeeping on the driver: waiting cells, cells in flight, attempts.

    When a worker dies, the pool breaks and every cell in flight is lost, not
    only the culprit's. Each lost cell is tried once more, alone in the pool,
    so the cell that kills its worker again is the one recorded as failed.
    """

    def __init__(self, executor: PoolExecutor, runner: MatrixRunner, cells: Sequence[Cell]):
        self.executor = executor
        self.runner = runner
        self.cells = list(cells)
        self.total = len(cells)
        self.planned = set(cells)
        self.summary = {"done": 0, "skipped": 0, "failed": 0}
        self.pool: ProcessPoolExecutor | None = None
        self.in_flight: dict[Future, tuple[int, Cell, int]] = {}  # future -> (index, cell, attempt)
        self.settled: set[Cell] = set()
        self.ctrl_c = threading.Event()

    def _pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: a forked copy of a process that already runs OpenMP threads can deadlock.
        if self.pool is None:
            self.pool = ProcessPoolExecutor(self.executor.jobs, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_pool_worker_init, initargs=(self.executor.recipe,))
        return self.pool

    def _may_start(self, cell: Cell, attempt: int) -> bool:
        if not all(dep in self.settled for dep in cell_dependencies(cell, self.planned)):
            return False
        if any(a > 1 for _, _, a in self.in_flight.values()):  # a suspect runs alone
            return False
        return not self.in_flight if attempt > 1 else len(self.in_flight) < self.executor.jobs

    def start_ready(self, waiting: list[tuple[int, Cell, int]]) -> list[tuple[int, Cell, int]]:
        """Submit the cells that may start now (suspects first); the cells still waiting."""
        still: list[tuple[int, Cell, int]] = []
        for index, cell, attempt in sorted(waiting, key=lambda w: w[2] == 1):
            if not self._may_start(cell, attempt):
                still.append((index, cell, attempt))
                continue
            self.runner.reporter.cell_started(cell, index, self.total, 0)
            future = self._pool().submit(run_cell_in_worker, cell, index, self.total)
            self.in_flight[future] = (index, cell, attempt)
        return still

    def settle(self, future: Future, index: int, cell: Cell, attempt: int,
               waiting: list[tuple[int, Cell, int]]) -> bool:
        """Report a finished future (a lost cell goes back to ``waiting``); True if its worker died."""
        try:
            outcome = future.result()
        except BrokenProcessPool as exc:
            if attempt == 1:
                waiting.append((index, cell, attempt + 1))
            else:
                message = f"worker process died running this cell alone (out of memory or killed?): {one_line(exc)}"
                self.runner.record_failed(cell, message, {})
                self.summary["failed"] += 1
                self.settled.add(cell)
            return True
        for status, detail in outcome.events:
            self.runner.reporter.cell_finished(cell, status, detail)
        self.summary[outcome.status] += 1
        self.runner.explain_counts["explained"] += outcome.explained
        self.runner.explain_counts["explain_failed"] += outcome.explain_failed
        self.settled.add(cell)
        return False

    def run(self) -> dict[str, int]:
        waiting: list[tuple[int, Cell, int]] = []
        for index, cell in enumerate(self.cells_in_priority(), start=1):
            if self.runner.is_finished(self.runner.hash(cell)) and not self.runner.explanations.missing(cell):
                self.runner.record_skipped(cell)  # nothing to do: no worker needed
                self.summary["skipped"] += 1
                self.settled.add(cell)
            else:
                waiting.append((index, cell, 1))
        try:
            with _ctrl_c_sets(self.ctrl_c):
                self._schedule(waiting)
        except KeyboardInterrupt:
            self._terminate_workers()  # before marking: a worker could otherwise still write its cell
            for _, cell, _ in self.in_flight.values():
                self.runner.store.fail(self.runner.hash(cell), "interrupted")
            raise
        finally:
            self._drop_pool(cancel=True)
        return self.summary

    def _schedule(self, waiting: list[tuple[int, Cell, int]]) -> None:
        waiting = self.start_ready(waiting)
        while self.in_flight:
            finished, _ = wait(list(self.in_flight), timeout=INTERRUPT_POLL_S, return_when=FIRST_COMPLETED)
            if self.ctrl_c.is_set():  # before settling: a worker killed by the same Ctrl-C is no broken pool
                raise KeyboardInterrupt
            broken = False
            for future in finished:
                broken |= self.settle(future, *self.in_flight.pop(future), waiting)
            if broken:  # the pool is gone: the other cells in flight finished or died with it
                rest, self.in_flight = self.in_flight, {}
                wait(list(rest))
                for future, entry in rest.items():
                    self.settle(future, *entry, waiting)
                self._drop_pool()
            waiting = self.start_ready(waiting)

    def _terminate_workers(self) -> None:
        """SIGTERM every worker, SIGKILL the ones still alive after a grace period; wait for all."""
        if self.pool is None:
            return
        # ProcessPoolExecutor offers no public handle on its processes before Python 3.14's terminate_workers().
        processes = list((getattr(self.pool, "_processes", None) or {}).values())
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(TERMINATE_GRACE_S)
            if process.is_alive():
                process.kill()
                process.join()

    def _drop_pool(self, cancel: bool = False) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=cancel)
            self.pool = None

    def cells_in_priority(self) -> list[Cell]:
        """Plan order, teachers first (stable): every dataset's teachers start before any distilled cell waits."""
        return sorted(self.cells, key=lambda c: METHOD_PRIORITY.get(c.method, 2))


@contextmanager
def _ctrl_c_sets(flag: threading.Event) -> Iterator[None]:
    """While the pool runs, SIGINT sets ``flag`` instead of raising wherever the main thread happens to be."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: flag.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
