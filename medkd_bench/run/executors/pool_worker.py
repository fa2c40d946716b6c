"""The worker side of the ``--jobs N`` pool: one process, one pipe, whole cells until told to stop.

Kept apart from the driver's scheduling (``pool.py``) because this code runs in
another process, with SIGINT ignored and tied to its driver's life.
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
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from medkd_bench.run.cells import Cell
from medkd_bench.run.executors.worker import WorkerRecipe, worker_setup
from medkd_bench.run.runner import MatrixRunner

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
    """A worker's word while its cell runs, sent at once (the outcome comes after): the reporter call to repeat."""

    call: str  # "cell_started", "epoch_done" or "phase"
    args: tuple[Any, ...]


@dataclass
class RecordingReporter:
    """A pool worker's reporter: sends progress to the driver as it happens, keeps finished-cell lines.

    The finished-cell lines travel with the outcome, so the driver prints them in
    the order it records cells; epochs and phases go at once, so a pool run shows
    every worker's epochs as a one-process run does.
    """

    events: list[tuple[str, str]] = field(default_factory=list)
    send: Callable[[Progress], None] = lambda progress: None

    def cell_started(self, cell: Cell, index: int, total: int, epochs: int) -> None:
        self.send(Progress("cell_started", (cell, index, total, epochs)))

    def epoch_done(self, cell: Cell, epoch: int, epochs: int, row: dict[str, float]) -> None:
        self.send(Progress("epoch_done", (cell, epoch, epochs, dict(row))))

    def cell_finished(self, cell: Cell, status: str, detail: str) -> None:
        self.events.append((status, detail))

    def phase(self, text: str) -> None:
        self.send(Progress("phase", (text,)))


@dataclass
class PoolOutcome:
    """What a pool worker returns for one cell: its status and the lines to report."""

    status: str  # "done", "skipped" or "failed"
    events: list[tuple[str, str]]
    explained: int
    explain_failed: int


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


def _runner(recipe: WorkerRecipe, conn: Connection) -> MatrixRunner:
    from medkd_bench.run.store import Store

    registry, runtime = worker_setup(recipe)
    store = Store(recipe.options.work_dir / "runs.sqlite")
    runner = MatrixRunner(registry, recipe.options, store, runtime, RecordingReporter(send=conn.send))
    runner.measure_timings = False  # the driver times every model afterwards, alone on the machine
    return runner


def _run_cell(runner: MatrixRunner, cell: Cell, index: int, total: int) -> PoolOutcome:
    """The same ``run_cell`` as the local executor's, with the lines it reported."""
    reporter = runner.reporter
    assert isinstance(reporter, RecordingReporter)
    reporter.events = []
    before = dict(runner.explain_counts)
    status = runner.run_cell(cell, index, total)
    return PoolOutcome(status, reporter.events, runner.explain_counts["explained"] - before["explained"],
                       runner.explain_counts["explain_failed"] - before["explain_failed"])


def worker_main(conn: Connection, recipe: WorkerRecipe, driver_pid: int, kernel_signal: bool) -> None:
    """A worker process: receive ``(cell, index, total)``, send back a :class:`PoolOutcome`; ``None`` ends it.

    While the cell runs, :class:`Progress` messages come first (epochs, phases).

    A cell's own failure is recorded by ``run_cell`` and comes back as a failed
    outcome; any other exception (a fault of medkd-bench itself) comes back as
    the exception, its traceback chained, for the driver to re-raise.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops its workers itself (pool.py's docstring)
    die_with_driver(driver_pid, kernel_signal)
    runner: MatrixRunner | None = None
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the driver closed its end
            return
        if task is None:
            return
        cell, index, total = task
        try:
            runner = runner or _runner(recipe, conn)
            reply: object = _run_cell(runner, cell, index, total)
        except Exception as exc:
            reply = WorkerError.of(exc)
        conn.send(reply)
