"""Cells as Ray tasks; the driver schedules them, explains them and alone writes the store.

Teachers and label-only baselines start at once, and each distilled cell is
submitted the moment its own teacher finishes. Workers train, write the
checkpoint (and the teacher's soft targets) into the shared work dir with
atomic renames, and return the cell's outcome, so a lost worker or node can
never corrupt the store. A task whose worker dies, or whose cell raises, is
retried up to ``max_retries`` times and then recorded as failed. Explanations
run on the driver as each outcome comes back, while the cluster trains on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from medkd_bench.errors import MedkdError, one_line
from medkd_bench.run.cells import Cell, teacher_cell_of
from medkd_bench.run.executors.worker import WorkerRecipe, compute_cell
from medkd_bench.run.outcomes import CellJob, CellOutcome
from medkd_bench.run.runner import MatrixRunner
from medkd_bench.runtime.device import Runtime, resolve_runtime


def import_ray() -> Any:
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

    def run(self, runner: MatrixRunner, cells: Sequence[Cell]) -> None:
        ray = import_ray()
        started = self._connect(ray)
        try:
            self.check_fits(ray)
            _RaySchedule(ray, self, runner, cells).run()
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
        self.task = ray.remote(compute_cell)
        # The runner's options: tuning (``run --tune``) chooses some between two runs of one executor.
        self.recipe_ref = ray.put(replace(executor.recipe, options=runner.options))
        self.in_flight: dict[Any, tuple[CellJob, int]] = {}  # ref -> (job, attempt)

    def submit(self, job: CellJob, attempt: int) -> None:
        # Ray's own retries are off (max_retries=0): the driver retries, so every
        # attempt's failure is seen here and the last one is recorded.
        ref = self.task.options(
            num_cpus=self.executor.cpus_per_cell, num_gpus=self.executor.gpus_per_cell, max_retries=0,
            name=f"medkd {job.cell.label()}",
        ).remote(self.recipe_ref, replace(job, records={}))  # the rows are for explaining, done here
        self.in_flight[ref] = (job, attempt)

    def start_ready(self, waiting: list[tuple[int, Cell]]) -> list[tuple[int, Cell]]:
        """Open a job for every waiting cell whose teacher is settled; the cells still waiting.

        A job that only explains (its cell finished earlier) is explained here at once.
        """
        hash_of = self.runner.computer.hash
        pending = {hash_of(c) for _, c in waiting} | {job.hash for job, _ in self.in_flight.values()}
        still: list[tuple[int, Cell]] = []
        for index, cell in waiting:  # plan order: a teacher before its distilled cells
            if cell.distilled and hash_of(teacher_cell_of(cell)) in pending:
                still.append((index, cell))
                continue
            job = self.runner.open_job(cell, index, self.total)
            if job is None:
                pending.discard(hash_of(cell))  # settled here: skipped, or failed
            elif job.train:
                self.submit(job, attempt=1)
            else:
                pending.discard(job.hash)
                self.runner.explain(job)
        return still

    def outcome(self, ref: Any) -> CellOutcome:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:  # the worker or its node died, or the task was lost
            return CellOutcome("failed", error=f"Ray task lost: {one_line(exc)}")

    def run(self) -> None:
        waiting = list(enumerate(self.cells, start=1))
        try:
            waiting = self.start_ready(waiting)
            while self.in_flight:
                ready, _ = self.ray.wait(list(self.in_flight), num_returns=1)
                job, attempt = self.in_flight.pop(ready[0])
                result = self.outcome(ready[0])
                if result.status != "done" and attempt <= self.executor.max_retries:
                    self.submit(job, attempt + 1)
                    continue
                result.timings["attempts"] = attempt
                self.runner.record(job, result)
                waiting = self.start_ready(waiting)  # its distilled cells may start now
                if result.status == "done":
                    self.runner.explain(job)  # on the driver, while the cluster trains on
            if waiting:  # cannot happen in plan order; never leave cells unrun silently
                raise RuntimeError(f"ray: {len(waiting)} cell(s) never became ready: {[c.label() for _, c in waiting]}")
        except KeyboardInterrupt:
            for ref, (job, _) in self.in_flight.items():
                self.ray.cancel(ref, force=True)
                self.runner.record_failed(job.cell, "interrupted", {})
            raise


def driver_runtime(device: str, amp: str, deterministic: bool = False, compile_mode: str = "off") -> Runtime:
    """The runtime for the driver's own work (explanations) under Ray.

    ``--device cuda`` names the workers' device: a head node without a GPU
    explains on its CPU instead of refusing the run.
    """
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        return resolve_runtime("cpu", "auto", deterministic, compile_mode=compile_mode)
    return resolve_runtime(device, amp, deterministic, compile_mode=compile_mode)
