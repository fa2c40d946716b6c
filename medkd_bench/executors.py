"""Where cells run: in this process, in worker processes on this machine, or as tasks on a Ray cluster.

Cells are independent apart from one edge: a KD cell needs its teacher's
checkpoint. :class:`LocalExecutor` runs the plan in order in this process.
:class:`PoolExecutor` (``--jobs N``) runs whole cells (training, scoring and
explanations) in N worker processes on this machine, each with its share of
the cores: on a 2-core CPU two one-thread processes train 1.16x faster than
one two-thread process. Workers write the SQLite store themselves (WAL), and
the driver measures cost metrics afterwards, when nothing else runs.
:class:`RayExecutor` submits every cell as a Ray task with its resource
request: teachers and label-only baselines start at once, and each KD cell is
submitted the moment its own teacher finishes. Workers rebuild the registry,
data and runtime from a picklable :class:`WorkerRecipe`, train, write the
checkpoint (and the teacher's soft targets) into the shared work dir with
atomic renames, and return the cell's record; the driver alone writes the
SQLite store, so a lost worker or node can never corrupt it. A task whose
worker dies, or whose cell raises, is retried up to ``max_retries`` times and
then recorded as failed, exactly like a failed local cell.

Explanations (Score-CAM and the others) run on the driver as each cell's
record comes back, from the checkpoint on the shared work dir, while the
cluster trains the next cells: they need the teacher's and baseline's maps
together for agreement and panels, and their results go to the store anyway.
"""

from __future__ import annotations

import multiprocessing
import socket
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from .allocator import keep_freed_memory
from .errors import MedkdError
from .matrix import Cell, CellComputer, MatrixRunner, RunOptions, one_line, teacher_cell_of
from .quiet import quiet_dependency_warnings
from .runtime import Runtime, resolve_runtime

EXECUTORS = ("local", "ray")
#: Scheduling order of ready cells in a pool: teachers first, since every KD cell waits for one.
METHOD_PRIORITY = {"teacher": 0, "label-only": 1, "kd": 2}


class Executor(Protocol):
    """Runs planned cells through a :class:`MatrixRunner`; returns ``{"done", "skipped", "failed"}`` counts."""

    def run(self, runner: MatrixRunner, cells: Sequence[Cell]) -> dict[str, int]: ...


class LocalExecutor:
    """The default and simplest path: every cell in this process, in plan order."""

    def run(self, runner: MatrixRunner, cells: Sequence[Cell]) -> dict[str, int]:
        summary = {"done": 0, "skipped": 0, "failed": 0}
        for index, cell in enumerate(cells, start=1):
            summary[runner.run_cell(cell, index, len(cells))] += 1
        return summary


# ---- the worker side ---------------------------------------------------------


@dataclass(frozen=True)
class WorkerRecipe:
    """Everything a worker needs to rebuild the driver's :class:`CellComputer`; picklable.

    Paths are absolute: a worker's working directory (and machine) differs from
    the driver's, so ``--work-dir`` and ``--plugin`` files must be on a file
    system every node mounts at the same path.
    """

    plugin_files: tuple[str, ...]
    options: RunOptions
    device: str = "auto"
    amp: str = "auto"
    #: torch intra-op threads per task: its CPU request, so tasks sharing a node do not oversubscribe it.
    threads: int = 1
    deterministic: bool = False


@dataclass
class CellOutcome:
    """A cell's record as a worker returns it to the driver."""

    status: str  # "done" or "failed"
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    error: str = ""


def _worker_setup(recipe: WorkerRecipe) -> tuple[Any, Runtime]:
    """A worker process's threads, allocator and warning filters as the CLI sets them; its registry and runtime."""
    import torch

    from .plugins import load_registry

    torch.set_num_threads(recipe.threads)
    keep_freed_memory()
    quiet_dependency_warnings()
    registry = load_registry([Path(p) for p in recipe.plugin_files])
    return registry, resolve_runtime(recipe.device, recipe.amp, recipe.deterministic)


_COMPUTERS: dict[str, CellComputer] = {}


def _computer(recipe: WorkerRecipe) -> CellComputer:
    """One computer per recipe per worker process: its data and soft targets serve every later task."""
    key = repr(recipe)  # RunOptions holds dicts, so the recipe itself is not hashable
    if key not in _COMPUTERS:
        registry, runtime = _worker_setup(recipe)
        _COMPUTERS.clear()  # the latest recipe only: a worker serves one run at a time
        _COMPUTERS[key] = CellComputer(registry, recipe.options, runtime)
    return _COMPUTERS[key]


def compute_cell(recipe: WorkerRecipe, cell: Cell, expected_hash: str) -> CellOutcome:
    """The Ray task body: train and score ``cell``; a cell's own error comes back as a failed outcome."""
    timings: dict[str, float] = {}
    try:
        computer = _computer(recipe)
        got = computer.hash(cell)
        if got != expected_hash:  # e.g. another plugin version installed on this node
            raise MedkdError(f"config hash {got} on worker {socket.gethostname()} differs from the driver's "
                             f"{expected_hash}: install the same medkd-bench and plugins on every node")
        result = computer.compute(cell, timings)
    except Exception as exc:
        return CellOutcome("failed", timings=timings, error=one_line(exc))
    return CellOutcome("done", result.metrics, result.timings, result.artifacts)


# ---- worker processes on this machine ------------------------------------------


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
    from .store import Store

    registry, runtime = _worker_setup(recipe)
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

    A KD cell needs its teacher's checkpoint and maps, and the label-only
    baseline's maps for its panel and agreement: the same inputs the local
    executor's plan order gives it, so both executors write the same results.
    """
    if cell.method != "kd":
        return []
    baseline = Cell(cell.dataset, "label-only", student=cell.student, seed=cell.seed)
    return [c for c in (teacher_cell_of(cell), baseline) if c in planned]


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
            if self.runner.is_finished(self.runner.hash(cell)) and not self.runner.missing_explainers(cell):
                self.runner.record_skipped(cell)  # nothing to do: no worker needed
                self.summary["skipped"] += 1
                self.settled.add(cell)
            else:
                waiting.append((index, cell, 1))
        try:
            waiting = self.start_ready(waiting)
            while self.in_flight:
                finished, _ = wait(list(self.in_flight), return_when=FIRST_COMPLETED)
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
        except KeyboardInterrupt:
            for _, cell, _ in self.in_flight.values():
                self.runner.store.fail(self.runner.hash(cell), "interrupted")
            raise
        finally:
            self._drop_pool(cancel=True)
        return self.summary

    def _drop_pool(self, cancel: bool = False) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=cancel)
            self.pool = None

    def cells_in_priority(self) -> list[Cell]:
        """Plan order, teachers first (stable): every dataset's teachers start before any KD cell waits."""
        return sorted(self.cells, key=lambda c: METHOD_PRIORITY[c.method])


# ---- the driver side ---------------------------------------------------------


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MedkdError("--executor ray: Ray is not installed (pip install 'medkd-bench[ray]')") from None
    return ray


@dataclass
class RayExecutor:
    """Cells as Ray tasks; the driver (this process) schedules them and writes the store.

    ``address`` names an existing cluster (``ray start --head`` on one node,
    ``ray start --address=...`` on the others); without it a local cluster of
    ``num_cpus`` CPUs (default: all) is started and stopped with the run. If
    this process is already connected to Ray (``ray.init`` was called), that
    connection is used and left open.
    """

    recipe: WorkerRecipe
    address: str | None = None
    num_cpus: int | None = None
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0
    max_retries: int = 1
    #: Object store size for a local cluster, in bytes (None: Ray's default).
    object_store_memory: int | None = None

    def __post_init__(self) -> None:
        if self.cpus_per_cell <= 0:
            raise MedkdError("--cpus-per-cell must be positive")
        if self.gpus_per_cell < 0:
            raise MedkdError("--gpus-per-cell must not be negative")
        if self.max_retries < 0:
            raise MedkdError("--max-retries must not be negative")
        if self.recipe.device.startswith("cuda") and self.gpus_per_cell == 0:
            raise MedkdError(f"--device {self.recipe.device} with --executor ray needs --gpus-per-cell > 0 "
                             "(Ray hides GPUs from tasks that request none)")

    def _connect(self, ray: Any) -> bool:
        """Connect to Ray; True when this call started a local cluster (and so must stop it)."""
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address:
            kwargs["address"] = self.address
        else:
            kwargs["num_cpus"] = self.num_cpus
            if self.object_store_memory:
                kwargs["object_store_memory"] = self.object_store_memory
        try:
            ray.init(**kwargs)
        except Exception as exc:
            where = f"--address {self.address}" if self.address else "a local Ray cluster"
            raise MedkdError(f"--executor ray: cannot start or reach {where}: {one_line(exc)}") from exc
        return not self.address

    def check_fits(self, ray: Any) -> None:
        """A request no node can meet would wait forever: refuse it up front on a local cluster.

        On an existing cluster (``--address``) an autoscaler may still add such a node.
        """
        if self.address:
            return
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if not any(r.get("CPU", 0) >= self.cpus_per_cell and r.get("GPU", 0) >= self.gpus_per_cell for r in nodes):
            have = ", ".join(f"{r.get('CPU', 0):g} CPU / {r.get('GPU', 0):g} GPU" for r in nodes) or "no nodes"
            raise MedkdError(f"--cpus-per-cell {self.cpus_per_cell:g} --gpus-per-cell {self.gpus_per_cell:g}: "
                             f"no node of the Ray cluster has that much ({have})")

    def run(self, runner: MatrixRunner, cells: Sequence[Cell]) -> dict[str, int]:
        ray = _import_ray()
        started = self._connect(ray)
        try:
            self.check_fits(ray)
            return _RaySchedule(ray, self, runner, cells).run()
        finally:
            if started:
                ray.shutdown()


class _RaySchedule:
    """One run's bookkeeping on the driver: waiting cells, tasks in flight, attempts."""

    def __init__(self, ray: Any, executor: RayExecutor, runner: MatrixRunner, cells: Sequence[Cell]):
        self.ray = ray
        self.executor = executor
        self.runner = runner
        self.cells = list(cells)
        self.total = len(cells)
        self.summary = {"done": 0, "skipped": 0, "failed": 0}
        self.task = ray.remote(compute_cell)
        self.recipe_ref = ray.put(executor.recipe)
        self.in_flight: dict[Any, tuple[int, Cell, int]] = {}  # ref -> (index, cell, attempt)

    def submit(self, index: int, cell: Cell, attempt: int) -> None:
        # Ray's own retries are off (max_retries=0): the driver retries, so every
        # attempt's failure is seen here and the last one is recorded.
        ref = self.task.options(
            num_cpus=self.executor.cpus_per_cell, num_gpus=self.executor.gpus_per_cell, max_retries=0,
            name=f"medkd {cell.label()}",
        ).remote(self.recipe_ref, cell, self.runner.hash(cell))
        self.in_flight[ref] = (index, cell, attempt)

    def busy_hashes(self) -> set[str]:
        return {self.runner.hash(c) for _, c, _ in self.in_flight.values()}

    def start_ready(self, waiting: list[tuple[int, Cell]]) -> list[tuple[int, Cell]]:
        """Submit every waiting cell whose teacher is settled; the cells still waiting."""
        pending = {self.runner.hash(c) for _, c in waiting} | self.busy_hashes()
        still: list[tuple[int, Cell]] = []
        for index, cell in waiting:
            if cell.method == "kd" and self.runner.hash(teacher_cell_of(cell)) in pending:
                still.append((index, cell))
                continue
            self.runner.begin(cell, index, self.total)
            try:
                self.runner.check_teacher(cell)
            except MedkdError as exc:  # its teacher failed: recorded like the local executor does
                self.runner.record_failed(cell, str(exc), {})
                self.summary["failed"] += 1
                continue
            self.submit(index, cell, attempt=1)
        return still

    def outcome(self, ref: Any) -> CellOutcome:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:  # the worker or its node died, or the task was lost
            return CellOutcome("failed", error=f"Ray task lost: {one_line(exc)}")

    def run(self) -> dict[str, int]:
        waiting: list[tuple[int, Cell]] = []
        for index, cell in enumerate(self.cells, start=1):
            if self.runner.is_finished(self.runner.hash(cell)):
                self.runner.record_skipped(cell)
                self.summary["skipped"] += 1
                self.runner.explain_finished(cell)
            else:
                waiting.append((index, cell))
        try:
            waiting = self.start_ready(waiting)
            while self.in_flight:
                ready, _ = self.ray.wait(list(self.in_flight), num_returns=1)
                index, cell, attempt = self.in_flight.pop(ready[0])
                result = self.outcome(ready[0])
                if result.status != "done" and attempt <= self.executor.max_retries:
                    self.submit(index, cell, attempt + 1)
                    continue
                result.timings["attempts"] = attempt
                if result.status == "done":
                    self.runner.record_done(cell, result.metrics, result.timings, result.artifacts)
                    self.summary["done"] += 1
                    waiting = self.start_ready(waiting)  # its KD cells may start now
                    self.runner.explain_finished(cell)
                else:
                    self.runner.record_failed(cell, result.error, result.timings)
                    self.summary["failed"] += 1
                    waiting = self.start_ready(waiting)
        except KeyboardInterrupt:
            for ref, (_, cell, _) in self.in_flight.items():
                self.ray.cancel(ref, force=True)
                self.runner.store.fail(self.runner.hash(cell), "interrupted")
            raise
        return self.summary


def resolve_jobs(jobs: str, device: str, cells: int) -> int:
    """``--jobs``: a number, or ``auto``: 2 worker processes on a CPU with at least 2 threads, else 1.

    Two processes with half the threads each beat one process with all of
    them on CPU (measured on 2 cores: the full matrix 563 s vs 708 s), since
    small-batch training does not keep two threads busy. On CUDA the GPU is
    the bottleneck and one process keeps it busy, so ``auto`` means 1 there.
    """
    import torch

    if jobs != "auto":
        try:
            n = int(jobs)
        except ValueError:
            raise MedkdError(f"--jobs {jobs!r}: expected a whole number or 'auto'") from None
        if n < 1:
            raise MedkdError(f"--jobs {n}: expected at least 1")
        return n
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return 1 if on_cuda or torch.get_num_threads() < 2 or cells < 2 else 2


def make_executor(kind: str, options: RunOptions, plugin_files: Sequence[Path], device: str, amp: str,
                  address: str | None = None, num_cpus: int | None = None, cpus_per_cell: float | None = None,
                  gpus_per_cell: float | None = None, max_retries: int | None = None,
                  deterministic: bool = False, jobs: int = 1) -> Executor:
    """The executor ``medkd-bench run --executor KIND [--jobs N]`` asks for, with its options checked."""
    ray_options = {"--address": address, "--ray-cpus": num_cpus, "--cpus-per-cell": cpus_per_cell,
                   "--gpus-per-cell": gpus_per_cell, "--max-retries": max_retries}
    if kind == "local":
        given = [name for name, value in ray_options.items() if value is not None]
        if given:
            raise MedkdError(f"{', '.join(given)}: only with --executor ray")
        if jobs > 1:
            import torch

            threads = max(1, torch.get_num_threads() // jobs)
            return PoolExecutor(_recipe(options, plugin_files, device, amp, threads, deterministic), jobs)
        return LocalExecutor()
    if kind != "ray":
        raise MedkdError(f"unknown --executor {kind!r} (choose from: {', '.join(EXECUTORS)})")
    if address and num_cpus is not None:
        raise MedkdError("--ray-cpus sizes a local cluster: not with --address")
    _import_ray()
    cpus = 1.0 if cpus_per_cell is None else cpus_per_cell
    recipe = _recipe(options, plugin_files, device, amp, max(1, int(cpus)), deterministic)
    return RayExecutor(recipe, address=address, num_cpus=num_cpus, cpus_per_cell=cpus,
                       gpus_per_cell=0.0 if gpus_per_cell is None else gpus_per_cell,
                       max_retries=1 if max_retries is None else max_retries)


def _recipe(options: RunOptions, plugin_files: Sequence[Path], device: str, amp: str, threads: int,
            deterministic: bool) -> WorkerRecipe:
    """What workers in other processes (or on other nodes) rebuild the run from: every path absolute."""
    return WorkerRecipe(tuple(str(Path(p).resolve()) for p in plugin_files), absolute_paths(options), device, amp,
                        threads=threads, deterministic=deterministic)


def absolute_paths(options: RunOptions) -> RunOptions:
    """``options`` with every path absolute, as workers in other directories and on other nodes need them.

    The driver's runner must use the same options, so config hashes match on both sides.
    """
    return replace(options, work_dir=options.work_dir.resolve(), leaderboard_dir=options.leaderboard_dir.resolve(),
                   data_root=options.data_root.resolve() if options.data_root else None,
                   weights={k: v.resolve() for k, v in options.weights.items()})


def driver_runtime(device: str, amp: str, deterministic: bool = False) -> Runtime:
    """The runtime for the driver's own work (explanations) under Ray.

    ``--device cuda`` names the workers' device: a head node without a GPU
    explains on its CPU instead of refusing the run.
    """
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        return resolve_runtime("cpu", "auto", deterministic)
    return resolve_runtime(device, amp, deterministic)
