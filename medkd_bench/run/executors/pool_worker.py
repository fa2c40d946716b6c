"""The worker side of the ``--jobs N`` pool: one process, one pipe, whole cells until told to stop.

Kept apart from the driver's scheduling (``pool.py``) because this code runs in
another process, with SIGINT ignored and tied to its driver's life. A worker
trains, scores and explains its cells and writes their files (checkpoints,
soft targets, saliency maps, panels); it never opens the run store. What it
computed goes back down the pipe for the driver to record: the cell's
:class:`~medkd_bench.run.outcomes.CellOutcome` the moment it is trained, then
its explanations.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from medkd_bench.run.computer import CellComputer
from medkd_bench.run.executors.worker import WorkerRecipe, worker_setup
from medkd_bench.run.explanations import CellExplanations
from medkd_bench.run.finished import FinishedCells
from medkd_bench.run.outcomes import CellJob, ExplanationResult, computed
from medkd_bench.run.records import CellRecord
from medkd_bench.tune.worker import TuneJob, tune_arm

#: prctl(2) option: the signal the kernel sends this process when its parent thread dies (Linux).
PR_SET_PDEATHSIG = 1
#: How often a worker without ``PR_SET_PDEATHSIG`` checks that its driver is alive (seconds).
DRIVER_POLL_S = 1.0
#: A worker's exit status when it finds its driver gone.
ORPHANED_EXIT = 75


class RemoteTraceback(Exception):
    """A worker's traceback, chained to the error the driver re-raises (as ``concurrent.futures`` does)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


@dataclass
class WorkerError:
    """An exception raised in a worker and its traceback's text: a pickled exception loses its ``__cause__``."""

    error: Exception
    traceback: str

    @classmethod
    def of(cls, exc: Exception) -> WorkerError:
        """The exception being handled, or a RuntimeError naming it if it does not pickle."""
        import pickle

        text = traceback.format_exc()
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        return cls(exc, text)

    def reraise(self) -> None:
        """Raise the worker's exception in the driver, the worker's traceback chained to it."""
        raise self.error from RemoteTraceback(self.traceback)


@dataclass(frozen=True)
class Progress:
    """A worker's word while its cell runs, sent at once: the reporter call for the driver to repeat."""

    call: str  # "epoch_done" or "phase"
    args: tuple[Any, ...]


@dataclass
class Explained:
    """A job's last reply: the explanations computed for its cell (after its outcome, if it was trained)."""

    results: list[ExplanationResult]


def die_with_driver(driver_pid: int, kernel_signal: bool) -> None:
    """End this process when the driver ends, so an orphan never writes a cell into the next run's store.

    ``kernel_signal``: ask Linux for SIGKILL on the driver's death (immediate);
    the driver passes False when it runs off its main thread, whose exit would
    trigger the signal early. A watcher thread covers every other case.
    """
    if kernel_signal and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != driver_pid:  # the driver died before the signal was armed
        os._exit(ORPHANED_EXIT)

    def watch() -> None:
        while os.getppid() == driver_pid:
            time.sleep(DRIVER_POLL_S)
        os._exit(ORPHANED_EXIT)

    threading.Thread(target=watch, name="medkd-bench-driver-watch", daemon=True).start()


class PoolWorker:
    """One worker process's computer and explanations; the rows of finished cells come from each job."""

    def __init__(self, recipe: WorkerRecipe, send: Callable[[object], None]):
        registry, runtime = worker_setup(recipe)
        self.computer = CellComputer(registry, recipe.options, runtime)
        self.computer.measure_timings = False  # the driver times every model afterwards, alone on the machine
        self.rows: dict[str, CellRecord] = {}
        self.explanations = CellExplanations(self.computer, FinishedCells(self.computer, self.rows.get))
        self.send = send

    def run(self, job: CellJob | TuneJob) -> object:
        """Train the job's cell (its outcome sent at once), then explain it; the last reply.

        A failed cell's outcome is its last reply; a finished one's is :class:`Explained`.
        A tuning job (``run --tune N``) tunes one arm; its last reply is :class:`~medkd_bench.tune.worker.ArmTuned`.
        """
        if isinstance(job, TuneJob):
            return tune_arm(self.computer, job, self.send)
        cell = job.cell
        self.rows.clear()
        self.rows.update(job.records)
        model = None
        if job.train:
            outcome, model = computed(self.computer, cell, on_epoch=lambda epoch, epochs, row:
                                      self.send(Progress("epoch_done", (cell, epoch, epochs, dict(row)))))
            if outcome.status != "done":
                return outcome
            self.send(outcome)  # the driver records the cell now: a later death costs only its explanations
            if not job.explainers:  # explained later, by a job of its own (pool.py: PoolSchedule)
                return Explained([])
            self.rows[job.hash] = outcome.record(job)  # its panel shows its own predictions
        return Explained(self.explanations.explain(cell, job.explainers, model,
                                                   phase=lambda text: self.send(Progress("phase", (text,)))))


def worker_main(conn: Connection, recipe: WorkerRecipe, driver_pid: int, kernel_signal: bool) -> None:
    """A worker process: receive a :class:`CellJob` (or a tuning job), send back what it computed; ``None`` ends it.

    While the cell runs, :class:`Progress` messages come first (epochs,
    phases), then its :class:`~medkd_bench.run.outcomes.CellOutcome` once it
    is trained, then :class:`Explained` (a failed cell's outcome is its last).
    Any exception that is not a cell's own failure (a fault of medkd-bench
    itself) comes back as the exception, its traceback chained, for the
    driver to re-raise.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops its workers itself (pool.py's docstring)
    die_with_driver(driver_pid, kernel_signal)
    worker: PoolWorker | None = None
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the driver closed its end
            return
        if job is None:
            return
        try:
            worker = worker or PoolWorker(recipe, conn.send)
            reply: object = worker.run(job)
        except Exception as exc:
            reply = WorkerError.of(exc)
        conn.send(reply)
