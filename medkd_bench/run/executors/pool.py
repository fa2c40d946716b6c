"""Cells in worker processes on this machine (``--jobs N``), a share of the threads each.

On a 2-core CPU two one-thread processes train 1.16x faster than one
two-thread process. Each worker computes whole cells (training, scoring and
explanations) as the local executor does and writes their files, but never
the run store: it sends the cell's outcome down its pipe the moment the cell
is trained, then its explanations, and the driver records both. The driver
measures cost metrics afterwards, when nothing else runs.

The workers are plain processes, one pipe each, not a
``concurrent.futures.ProcessPoolExecutor``: that pool breaks as a whole when
one worker dies (every cell in flight is lost, not only the culprit's), and on
Python 3.11 its shutdown after a dead worker can deadlock in its manager
thread (CPython gh-125451, fixed in 3.12 only), which hung CI for 90 minutes.
Here the driver waits on each worker's pipe and process sentinel, so a dead
worker fails exactly the cell it ran and the others carry on.

A worker never outlives its driver: on Linux the kernel kills it when the
driver dies (``PR_SET_PDEATHSIG``), elsewhere it notices within a second.
Otherwise a ``kill -9`` of the driver left workers finishing their cells and
writing them into the store while the next run held the work-dir lock.

Ctrl-C is the driver's business alone. Workers ignore SIGINT, and the driver
turns it into a flag its scheduling loop reads. On that flag the driver
terminates its workers, records their cells interrupted and exits: ``kill -INT``
of the driver alone (a supervisor, ``timeout -s INT``) stops the run as
promptly as a terminal's Ctrl-C to the whole process group.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for
from multiprocessing.process import BaseProcess
from typing import Any

from medkd_bench.errors import MedkdError
from medkd_bench.run.cells import Cell, baseline_cell_of, teacher_cell_of
from medkd_bench.run.executors.pool_worker import Explained, Progress, WorkerError, worker_main
from medkd_bench.run.executors.worker import WorkerRecipe
from medkd_bench.run.outcomes import CellJob, CellOutcome
from medkd_bench.run.runner import MatrixRunner
from medkd_bench.runtime.interrupts import ctrl_c_deferred, interrupt_requested
from medkd_bench.tune.worker import TuneJob

#: Scheduling order of ready cells in a pool: teachers first, since every distilled cell waits for one.
METHOD_PRIORITY = {"teacher": 0, "label-only": 1}  # then every distilled cell

#: How often the driver's scheduling loop looks at the Ctrl-C flag while cells run (seconds).
INTERRUPT_POLL_S = 0.2
#: How long workers get to exit (asked, then terminated) before they are killed (seconds).
TERMINATE_GRACE_S = 5.0


def cell_dependencies(cell: Cell, planned: set[Cell]) -> list[Cell]:
    """Planned cells that must finish (trained and explained) before ``cell`` is explained.

    A distilled cell's explanations read its teacher's maps and the label-only
    baseline's (its panel, its agreement): the same inputs the local
    executor's plan order gives it, so both executors write the same results.
    """
    if not cell.distilled:
        return []
    return [c for c in (teacher_cell_of(cell), baseline_cell_of(cell)) if c in planned]


def training_dependencies(cell: Cell, planned: set[Cell]) -> list[Cell]:
    """Planned cells that must be trained before ``cell`` trains: a distilled cell's teacher (its checkpoint)."""
    return [teacher_cell_of(cell)] if cell.distilled and teacher_cell_of(cell) in planned else []


@dataclass
class PoolExecutor:
    """Cells in ``jobs`` worker processes on this machine (``--jobs N``), ``recipe.threads`` torch threads each.

    Each worker computes whole cells as :class:`LocalExecutor` does and hands
    back what it computed; the driver (this process) records it in the store.
    Cost metrics (latency, throughput) are left to the driver, which measures
    them after the pool has finished: timed next to another training process
    they would be slow by up to 2x. A worker that dies (killed, out of memory)
    fails only the cell it ran; a fresh worker takes its place.
    """

    recipe: WorkerRecipe
    jobs: int

    def __post_init__(self) -> None:
        if self.jobs < 2:
            raise MedkdError("--jobs: a worker pool needs at least 2 workers (1 runs in this process)")

    def run(self, runner: MatrixRunner, cells: Sequence[Cell]) -> None:
        # The runner's options: tuning (``run --tune``) chooses some between two runs of one pool.
        recipe = replace(self.recipe, options=runner.options)
        PoolSchedule(recipe, self.jobs, runner, cells).run()


@dataclass
class WorkerSlot:
    """One worker process, the driver's end of its pipe, and the job it runs (``None`` when idle)."""

    process: BaseProcess
    conn: Connection
    job: CellJob | TuneJob | None = None  # a tuning job in a tuning pool (pool_tuning.py)


#: What :meth:`PoolSchedule.receive` returns for a worker that died before replying.
DIED = object()


def death_message(exitcode: int | None, running: str = "this cell") -> str:
    """Why a worker's job failed: how its process ended; ``running``: what it was doing."""
    if exitcode is not None and exitcode < 0:
        how = f"killed by {signal.Signals(-exitcode).name}"
    else:
        how = f"exit code {exitcode}"
    return f"worker process died running {running} ({how}; out of memory or killed?)"


class PoolSchedule:
    """One pool run's bookkeeping on the driver: waiting cells, workers and the cells they run."""

    def __init__(self, recipe: WorkerRecipe, jobs: int, runner: MatrixRunner, cells: Sequence[Cell]):
        self.recipe = recipe
        self.jobs = jobs
        self.runner = runner
        self.cells = list(cells)
        self.total = len(cells)
        self.planned = set(cells)
        self.workers: list[WorkerSlot] = []
        self.settled: set[Cell] = set()
        #: Trained (its outcome recorded), perhaps not yet explained: a distilled cell may start training.
        self.trained: set[Cell] = set()
        #: Cells trained by a job without explainers (their teacher's or baseline's explanations were still
        #: running), with their job numbers: each gets a job that explains it once those settle.
        self.unexplained: dict[Cell, int] = {}

    # -- workers ---------------------------------------------------------------------------------------------

    def _spawn(self) -> WorkerSlot:
        # spawn, not fork: a forked copy of a process that already runs OpenMP threads can deadlock.
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        # The kernel's parent-death signal follows the thread that started the child: only the main thread's lasts.
        on_main_thread = threading.current_thread() is threading.main_thread()
        process = context.Process(target=worker_main, name="medkd-bench-worker",
                                  args=(theirs, self.recipe, multiprocessing.current_process().pid,
                                        on_main_thread))
        process.start()
        theirs.close()  # the worker holds its end: EOF here means it is gone
        worker = WorkerSlot(process, ours)
        self.workers.append(worker)
        return worker

    def _can_take_one(self) -> bool:
        return any(w.job is None for w in self.workers) or len(self.workers) < self.jobs

    def _idle_worker(self) -> WorkerSlot:
        return next((w for w in self.workers if w.job is None), None) or self._spawn()

    def _busy(self) -> list[WorkerSlot]:
        return [w for w in self.workers if w.job is not None]

    def _stop_workers(self, ask: bool) -> None:
        """Ask idle workers to exit (when ``ask``), terminate the rest, kill any still alive after a grace period."""
        for worker in self.workers:
            if ask and worker.job is None:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
            else:
                worker.process.terminate()
        for worker in self.workers:
            worker.process.join(TERMINATE_GRACE_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self.workers = []

    # -- scheduling ------------------------------------------------------------------------------------------

    def _may_start(self, cell: Cell) -> bool:
        return all(dep in self.settled or dep in self.trained for dep in training_dependencies(cell, self.planned))

    def _may_explain(self, cell: Cell) -> bool:
        return all(dep in self.settled for dep in cell_dependencies(cell, self.planned))

    def start_ready(self, waiting: list[tuple[int, Cell]]) -> list[tuple[int, Cell]]:
        """Open a job for each cell that may start now and hand it to an idle worker; the cells still waiting.

        A distilled cell trains as soon as its teacher is trained. If its teacher's or its baseline's
        explanations are still running then, it is explained afterwards by a job of its own (first in
        line once they are done), instead of a worker waiting idle for them (a quick matrix's teacher:
        50 s of Score-CAM). A cell the runner settles itself (skipped, or its teacher did not finish)
        needs no worker.
        """
        for cell, index in list(self.unexplained.items()):
            if self._may_explain(cell) and self._can_take_one():
                del self.unexplained[cell]
                self._hand_out_or_settle(cell, self.runner.explain_job(cell, index, self.total))
        still: list[tuple[int, Cell]] = []
        for index, cell in waiting:
            if not (self._may_start(cell) and self._can_take_one()):
                still.append((index, cell))
                continue
            job = self.runner.open_job(cell, index, self.total)
            if job is not None and job.train and not self._may_explain(cell):
                job = replace(job, explainers=())  # train only; settle() queues its explanations
            self._hand_out_or_settle(cell, job)
        return still

    def _hand_out_or_settle(self, cell: Cell, job: CellJob | None) -> None:
        if job is None:
            self.settled.add(cell)
        else:
            self.hand_out(job)

    def hand_out(self, job: CellJob | TuneJob) -> None:
        """Send ``job`` to an idle worker (one is started if none is idle and the pool has room)."""
        worker = self._idle_worker()
        worker.conn.send(job)
        worker.job = job

    def retire(self, worker: WorkerSlot, running: str = "this cell") -> str:
        """Drop a worker that died (the pool starts a fresh one when needed); why its job failed."""
        worker.process.join(TERMINATE_GRACE_S)
        self.workers.remove(worker)
        worker.conn.close()
        return death_message(worker.process.exitcode, running)

    @staticmethod
    def next_message(worker: WorkerSlot) -> object | None:
        """The next message on ``worker``'s pipe; None if there is none yet, ``DIED`` if the worker is gone."""
        try:
            if not worker.conn.poll():
                return DIED if not worker.process.is_alive() else None
            return worker.conn.recv()
        except (EOFError, OSError):  # died (perhaps while sending)
            return DIED

    def receive(self, worker: WorkerSlot) -> object | None:
        """Pass on what is waiting on ``worker``'s pipe; the job's last reply if it came, else None.

        Progress goes to the reporter; a trained cell's outcome is recorded at
        once (its explanations come after). ``DIED`` when the pipe broke or the
        process is gone with no last reply.
        """
        while True:
            message = self.next_message(worker)
            if message is None or message is DIED:
                return message
            if isinstance(message, Progress):
                getattr(self.runner.reporter, message.call)(*message.args)
                continue
            if isinstance(message, CellOutcome):
                assert worker.job is not None
                self.runner.record(worker.job, message)
                if message.status == "done":
                    self.trained.add(worker.job.cell)  # its students may start
                    continue  # its explanations come next
            return message

    def settle(self, worker: WorkerSlot, reply: object) -> None:
        """Settle the job ``worker`` finished: record its explanations, or fail its cell if the worker died.

        A worker's internal error (a fault of medkd-bench, not of the cell) is re-raised: it stops the run.
        """
        job = worker.job
        assert job is not None
        worker.job = None
        if reply is DIED:  # the worker died: this cell, and only this one, fails
            self.runner.record_failed(job.cell, self.retire(worker), {})
        elif isinstance(reply, WorkerError):
            reply.reraise()
        elif isinstance(reply, Explained):
            self.runner.record_explanations(job, reply.results)
            if job.train and not job.explainers:  # trained only: its explanations are a job of their own
                self.unexplained[job.cell] = job.index
                return
        self.settled.add(job.cell)  # a failed cell's outcome was recorded as it came

    def waiting(self) -> list[tuple[int, Any]]:
        """The jobs to hand out, numbered: the cells, teachers first."""
        return list(enumerate(self.cells_in_priority(), start=1))

    def interrupted(self, in_flight: list[Any]) -> None:
        """Ctrl-C: the cells the workers were running are recorded interrupted."""
        for job in in_flight:
            self.runner.record_failed(job.cell, "interrupted", {})

    def run(self) -> None:
        waiting = self.waiting()
        finished = False
        try:
            with ctrl_c_deferred():
                self._schedule(waiting)
            finished = True
        except KeyboardInterrupt:
            in_flight = [w.job for w in self._busy() if w.job is not None]
            self._stop_workers(ask=False)  # first: a worker's last message must not follow the interruption
            self.interrupted(in_flight)
            raise
        finally:
            self._stop_workers(ask=finished)

    def _schedule(self, waiting: list[tuple[int, Any]]) -> None:
        waiting = self.start_ready(waiting)
        while busy := self._busy():
            ready = set(wait_for([w.conn for w in busy] + [w.process.sentinel for w in busy],
                                 timeout=INTERRUPT_POLL_S))
            if interrupt_requested():  # before settling: a worker killed by the same Ctrl-C did not fail its cell
                raise KeyboardInterrupt
            for worker in busy:
                if worker.conn in ready or worker.process.sentinel in ready:
                    reply = self.receive(worker)
                    if reply is not None:
                        self.settle(worker, reply)
            waiting = self.start_ready(waiting)
        if waiting or self.unexplained:  # cannot happen while every dependency is planned and settles; never silently
            left = [str(c) for _, c in waiting] + [f"{c} (its explanations)" for c in self.unexplained]
            raise RuntimeError(f"pool: {len(left)} job(s) never became ready: {left}")

    def cells_in_priority(self) -> list[Cell]:
        """Plan order, teachers first (stable): every dataset's teachers start before any distilled cell waits."""
        return sorted(self.cells, key=lambda c: METHOD_PRIORITY.get(c.method, 2))
