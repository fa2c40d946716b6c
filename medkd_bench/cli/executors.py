"""The executor ``run --executor KIND [--jobs N]`` asks for, with its flags checked here.

The executors themselves (:mod:`medkd_bench.run.executors`) never spell a
flag; this module maps ``run``'s options onto them and names the flag at
fault in every error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medkd_bench.errors import MedkdError
from medkd_bench.run.executors.local import LocalExecutor
from medkd_bench.run.executors.pool import PoolExecutor
from medkd_bench.run.executors.ray import RayExecutor, import_ray
from medkd_bench.run.executors.worker import worker_recipe
from medkd_bench.run.run_options import RunOptions
from medkd_bench.run.runner import Executor

EXECUTORS = ("local", "ray")


def resolve_jobs(jobs: str, device: str, cells: int) -> int:
    """``--jobs``: a number, or ``auto``: 2 worker processes on a CPU with at least 2 threads, else 1.

    Two processes with half the threads each beat one process with all of
    them on CPU (measured on 2 cores: the full matrix 563 s vs 708 s), since
    small-batch training does not keep two threads busy. On CUDA the GPU is
    the bottleneck and one process keeps it busy, so ``auto`` means 1 there.
    """
    import torch

    if jobs != "auto":
        from medkd_bench.cli.options import MAX_NUMBER_CHARS, upper_bound

        high = int(upper_bound("jobs"))  # a string option (it takes 'auto'): bounded here, as the numbers are
        try:
            n = int(jobs) if len(jobs) <= MAX_NUMBER_CHARS else None
        except ValueError:
            n = None
        if n is None:
            raise MedkdError(f"--jobs {jobs[:20]!r}: expected a whole number or 'auto'") from None
        if n < 1:
            raise MedkdError(f"--jobs {n}: expected at least 1")
        if n > high:
            raise MedkdError(f"--jobs {n}: expected at most {high} worker processes")
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
            return PoolExecutor(worker_recipe(options, plugin_files, device, amp, threads, deterministic), jobs)
        return LocalExecutor()
    if kind != "ray":
        raise MedkdError(f"unknown --executor {kind!r} (choose from: {', '.join(EXECUTORS)})")
    if address and num_cpus is not None:
        raise MedkdError("--ray-cpus sizes a local cluster: not with --address")
    import_ray()
    cpus = 1.0 if cpus_per_cell is None else cpus_per_cell
    recipe = worker_recipe(options, plugin_files, device, amp, max(1, int(cpus)), deterministic)
    return RayExecutor(recipe, address=address, num_cpus=num_cpus, cpus_per_cell=cpus,
                       gpus_per_cell=0.0 if gpus_per_cell is None else gpus_per_cell,
                       max_retries=1 if max_retries is None else max_retries)
