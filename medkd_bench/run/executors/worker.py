"""The worker side: rebuild the driver's cell computer from a picklable recipe and compute a cell.

Paths in the recipe are absolute: a worker's working directory (and machine)
differs from the driver's. A worker writes files into the shared work dir
(checkpoints, soft targets, saliency maps, each with its SHA-256) and never the
run store: it returns a :class:`~medkd_bench.run.outcomes.CellOutcome`, which
the driver records.
"""

from __future__ import annotations

import socket
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medkd_bench.errors import MedkdError, one_line
from medkd_bench.run.computer import CellComputer
from medkd_bench.run.outcomes import CellJob, CellOutcome, computed
from medkd_bench.run.run_options import RunOptions
from medkd_bench.runtime.allocator import keep_freed_memory
from medkd_bench.runtime.blas import one_blas_thread
from medkd_bench.runtime.device import Runtime, resolve_runtime
from medkd_bench.runtime.quiet import quiet_dependency_warnings


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


def worker_setup(recipe: WorkerRecipe) -> tuple[Any, Runtime]:
    """A worker process's threads, allocator and warning filters as the CLI sets them; its registry and runtime."""
    import torch

    from medkd_bench.registry import load_registry

    torch.set_num_threads(recipe.threads)
    keep_freed_memory()
    one_blas_thread()
    quiet_dependency_warnings()
    thread_only_progress_lock()
    # The run's work dir, as the driver's registry saw it: datasets added there are registered here too.
    registry = load_registry([Path(p) for p in recipe.plugin_files], work_dir=recipe.options.work_dir)
    return registry, resolve_runtime(recipe.device, recipe.amp, recipe.deterministic,
                                       compile_mode=recipe.options.compile_mode)


def thread_only_progress_lock() -> None:
    """Give tqdm a thread lock instead of the multiprocessing one it makes for its first bar.

    Dependencies build bars in a worker (fvcore's batch-norm recalibration every epoch, grad-cam's
    Score-CAM), disabled but still with tqdm's lock, a POSIX semaphore. A worker stopped by Ctrl-C
    (terminated by its driver) leaves that semaphore to Python's resource tracker, which then warned
    "leaked semaphore objects" at the driver's exit. A worker draws no bars, so a thread lock serves.
    """
    import threading

    import tqdm

    tqdm.tqdm.set_lock(threading.RLock())


_COMPUTERS: dict[str, CellComputer] = {}


def _computer(recipe: WorkerRecipe) -> CellComputer:
    """One computer per recipe per worker process: its data and soft targets serve every later task."""
    key = repr(recipe)  # RunOptions holds dicts, so the recipe itself is not hashable
    if key not in _COMPUTERS:
        registry, runtime = worker_setup(recipe)
        _COMPUTERS.clear()  # the latest recipe only: a worker serves one run at a time
        _COMPUTERS[key] = CellComputer(registry, recipe.options, runtime)
    return _COMPUTERS[key]


def compute_cell(recipe: WorkerRecipe, job: CellJob) -> CellOutcome:
    """The Ray task body: train and score ``job``'s cell; a cell's own error comes back as a failed outcome."""
    try:
        computer = _computer(recipe)
        got = computer.hash(job.cell)
        if got != job.hash:  # e.g. another plugin version installed on this node
            raise MedkdError(f"config hash {got} on worker {socket.gethostname()} differs from the driver's "
                             f"{job.hash}: install the same medkd-bench and plugins on every node")
    except Exception as exc:
        return CellOutcome("failed", error=one_line(exc), traceback=traceback.format_exc())
    return computed(computer, job.cell)[0]


def worker_recipe(options: RunOptions, plugin_files: Sequence[Path], device: str, amp: str, threads: int,
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
