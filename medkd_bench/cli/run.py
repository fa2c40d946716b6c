"""``medkd-bench run``: parse the flags, hand the run to the run core, print what it did.

The command parses and validates its flags into a
:class:`~medkd_bench.run.session.RunRequest` (the planned cells, their
:class:`RunOptions`, the executor), runs it with
:class:`~medkd_bench.run.session.RunSession` and prints the summary; progress
is drawn by :class:`RichReporter`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from medkd_bench.cli.app import cli, console, err_console, is_debug, load_cli_registry
from medkd_bench.cli.config_file import ExperimentCommand, config_option
from medkd_bench.cli.options import (
    IMG_SIZE,
    FiniteFloat,
    bootstrap_option,
    parse_dataset_options,
    parse_method_options,
    parse_weights,
    plugin_option,
    split_names,
    work_dir_option,
)
from medkd_bench.errors import MedkdError


@cli.command(cls=ExperimentCommand)
@config_option
@click.option("--matrix", default="full", show_default=True,
              help="full | quick (one teacher, student, dataset and method, a fixed 4 epochs unless --epochs: "
                   "a smoke run, not trained to convergence)")
@click.option("--teachers", multiple=True, help="Only these teachers (comma-separated or repeated).")
@click.option("--students", multiple=True, help="Only these students.")
@click.option("--datasets", multiple=True, help="Only these datasets.")
@click.option("--methods", multiple=True,
              help="Distillation methods, or 'all' [default: every registered one; --matrix quick: kd].")
@click.option("--method-option", "method_options", multiple=True, metavar="METHOD.KEY=VALUE",
              help="Override a method option, e.g. dkd.beta=8 (see `medkd-bench plugins`).")
@click.option("--teacher-cache-mb", type=FiniteFloat(0), default=2048, show_default=True,
              help="Memory for a teacher's cached feature maps (feature methods); above it the teacher runs "
                   "on every batch.")
@plugin_option
@work_dir_option
@click.option("--data-root", type=click.Path(path_type=Path), default=None, envvar="MEDKD_DATA",
              help="Local copy of a real dataset [env: MEDKD_DATA].")
@click.option("--dataset-option", "dataset_options", multiple=True, metavar="DATASET.KEY=VALUE",
              help="Override a dataset option, e.g. synthetic-cxr.n_train=2000.")
@click.option("--img-size", type=IMG_SIZE, default=None, help="Override the datasets' image size (32-1024 px).")
@click.option("--epochs", type=click.IntRange(1, 10_000), default=None, help="Override every model's epochs.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True)
@click.option("--seeds", type=click.IntRange(1), default=1, show_default=True,
              help="Run every cell with seeds SEED .. SEED+N-1; leaderboards report mean ± sd across seeds.")
@click.option("--teacher-seeds", type=click.IntRange(1), default=1, show_default=True,
              help="Teachers trained per dataset: 1 = one fixed teacher (seed SEED) that every student seed "
                   "distils from; N = teachers with seeds SEED.. SEED+N-1, student seed k distils from teacher "
                   "seed SEED + (k-SEED) mod N (N >= --seeds: a teacher per seed).")
@click.option("--tune", type=click.IntRange(0, 1000), default=0, show_default=True, metavar="N",
              help="Give every method and the label-only baseline N tuning trials each (Optuna; chosen on "
                   "validation on seed SEED, never on test), then run every seed with the chosen options.")
@click.option("--tuned-option", "tuned_options", multiple=True, metavar="DATASET/TEACHER/STUDENT/METHOD.KEY=VALUE",
              help="An option an earlier --tune run chose (its page's reproduce command lists them): reruns "
                   "its final cells without tuning again. TEACHER is empty for label-only.")
@click.option("--deterministic", is_flag=True,
              help="Deterministic kernels (torch.use_deterministic_algorithms, CUBLAS_WORKSPACE_CONFIG): "
                   "repeatable CUDA runs, at some speed cost.")
@click.option("--temperature", type=FiniteFloat(0, low_open=True), default=None,
              help="Shorthand for --method-option kd.temperature=T.")
@click.option("--alpha", type=FiniteFloat(0, 1), default=None, help="Shorthand for --method-option kd.alpha=A.")
@click.option("--pretrained", is_flag=True, help="Start from timm's ImageNet weights (needs a network).")
@click.option("--weights", multiple=True, metavar="NAME=PATH",
              help="Start model NAME from a local weights file (.safetensors or torch checkpoint).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda[:N]")
@click.option("--amp", default="auto", show_default=True,
              help="auto (CUDA: on; CPU: each model's measured fast path) | fp32 (auto's fast path in float32: "
                   "the same results and config hashes on CPUs with and without AMX) | off | bf16 | fp16")
@click.option("--compile", "compile_mode", default="off", show_default=True,
              help="torch.compile every model for training and scoring: off | default | reduce-overhead (CUDA "
                   "graphs) | max-autotune. Compilation is timed as warm-up, apart from training.")
@click.option("--explainers", multiple=True,
              help="Explainers to run, or 'all' for every registered one [default: score-cam].")
@click.option("--explain-images", type=click.IntRange(1), default=6, show_default=True,
              help="Test images explained per model (balanced over classes, seeded).")
@click.option("--sanity-images", type=click.IntRange(0), default=2, show_default=True,
              help="Images of that sample used for the model-randomisation sanity check.")
@click.option("--latency-runs", type=click.IntRange(1), default=10, show_default=True,
              help="Timed batch-1 runs per model, at least; timing goes on until --latency-seconds have been timed.")
@click.option("--latency-seconds", type=FiniteFloat(0), default=1.0, show_default=True,
              help="Seconds of batch-1 runs timed per model, at least (0: exactly --latency-runs runs).")
@click.option("--latency-attempts", type=click.IntRange(1), default=3, show_default=True,
              help="Attempts at each timing: one taken while another process held the CPU is taken again "
                   "after a pause (1: never again; the page flags a busy timing).")
@click.option("--onnx", is_flag=True,
              help="Export every trained student to ONNX, check it with ONNX Runtime on the test split and time "
                   "it there (needs medkd-bench[onnx]).")
@click.option("--skip-bad", is_flag=True,
              help="Leave out bad files of a real dataset (corrupt, stray, unpaired) with a warning.")
@bootstrap_option
@click.option("--dry-run", is_flag=True, help="Print the planned cells and their status; train nothing.")
@click.option("--executor", default="local", show_default=True,
              help="local (this process, in order) | ray (cells as Ray tasks).")
@click.option("--jobs", default="auto", show_default=True,
              help="local: cells in N worker processes with a share of the threads each (auto: 2 on a CPU "
                   "with 2+ threads, 1 on CUDA).")
@click.option("--address", default=None, help="Ray: address of an existing cluster [default: start a local one].")
@click.option("--ray-cpus", type=click.IntRange(1), default=None,
              help="Ray: CPUs of the local cluster [default: all].")
@click.option("--cpus-per-cell", type=FiniteFloat(0, low_open=True), default=None,
              help="Ray: CPUs each cell requests [default: 1].")
@click.option("--gpus-per-cell", type=FiniteFloat(0), default=None, help="Ray: GPUs each cell requests [default: 0].")
@click.option("--max-retries", type=click.IntRange(0), default=None,
              help="Ray: retries of a cell whose task failed or whose worker died [default: 1].")
def run(matrix, teachers, students, datasets, methods, method_options, teacher_cache_mb, plugin_files, work_dir, leaderboard_dir, data_root,
        dataset_options, img_size, epochs, seed, seeds, teacher_seeds, tune, tuned_options, deterministic, temperature, alpha, pretrained, weights,
        device, amp, compile_mode, explainers, explain_images, sanity_images, latency_runs, latency_seconds, latency_attempts,
        onnx, skip_bad,
        bootstrap, dry_run, executor, jobs, address, ray_cpus, cpus_per_cell, gpus_per_cell, max_retries) -> None:
    """Train teachers, baselines and distilled students, score them, write leaderboards.

    Every option can also come from a TOML experiment file (--config); flags given here override it.
    """
    from medkd_bench.cli.executors import make_executor, resolve_jobs
    from medkd_bench.run.plan import check_method_options_used, plan
    from medkd_bench.run.run_options import RunOptions
    from medkd_bench.run.session import RunRequest, RunSession, RunStopped
    from medkd_bench.tune.options import parse_tuned_options

    if onnx:  # missing packages are bad input: before any work
        from medkd_bench.deploy.onnx import require_onnx

        require_onnx()
    registry = load_cli_registry(plugin_files, work_dir)
    if matrix == "quick" and epochs is None:  # a smoke run: a short fixed schedule, not training to convergence
        from medkd_bench.run.plan import QUICK_EPOCHS

        epochs = QUICK_EPOCHS
    given = {"--temperature": temperature, "--alpha": alpha}
    shorthand = {flag: f"kd.{flag[2:]}={v}" for flag, v in given.items() if v is not None}
    parsed_method_options = parse_method_options([*shorthand.values(), *method_options], registry)
    parsed_dataset_options = parse_dataset_options(dataset_options, registry)  # bad values: before planning
    cells = plan(registry, matrix, split_names(teachers), split_names(students), split_names(datasets), seed,
                 data_root=data_root, seeds=seeds, methods=split_names(methods),
                 teacher_seeds=teacher_seeds)
    option_flags: dict[str, str] = {}  # method -> the first flag that gave it an option, for the message
    for flag, text in [*shorthand.items(), *(("--method-option " + v, v) for v in method_options)]:
        option_flags.setdefault(text.partition(".")[0], flag)
    check_method_options_used(option_flags, cells)
    if matrix == "quick":  # a smoke run on each dataset's smaller quick options, unless given
        from medkd_bench.run.plan import quick_dataset_options

        parsed_dataset_options = quick_dataset_options(registry, cells, parsed_dataset_options)
    if not split_names(datasets):
        _print_unavailable(registry, data_root)
    options = RunOptions(
        work_dir=work_dir, leaderboard_dir=leaderboard_dir, img_size=img_size, data_root=data_root,
        dataset_options=parsed_dataset_options, epochs=epochs,
        method_options=parsed_method_options, teacher_cache_mb=teacher_cache_mb, pretrained=pretrained,
        weights=parse_weights(weights), explainers=tuple(split_names(explainers) or ()) or RunOptions.explainers,
        explain_images=explain_images, sanity_images=sanity_images, latency_runs=latency_runs,
        latency_seconds=latency_seconds, latency_attempts=latency_attempts, skip_bad=skip_bad,
        onnx=onnx, compile_mode=compile_mode, teacher_seeds=min(teacher_seeds, seeds),
        tuned=parse_tuned_options(tuned_options, registry),
    )
    if tune and tuned_options:
        raise MedkdError("--tune and --tuned-option: give one (--tuned-option reuses an earlier tuning's choice)")
    if executor == "ray" and jobs not in ("auto", "1"):
        raise MedkdError("--jobs: only with --executor local (Ray sizes its tasks with --cpus-per-cell)")
    n_jobs = resolve_jobs(jobs, device, len(cells)) if executor == "local" else 1
    cell_executor = make_executor(executor, options, plugin_files, device, amp, address, ray_cpus, cpus_per_cell,
                                  gpus_per_cell, max_retries, deterministic, jobs=n_jobs)
    session = RunSession(RunRequest(registry, cells, options, cell_executor, device, amp, deterministic, tune, seed,
                                    bootstrap))
    if dry_run:  # writes nothing: not the store, not the folders
        _print_plan(session.planned(), matrix, tune, seed)
        return

    @contextmanager
    def reporting(eta: Any) -> Iterator[Any]:
        from medkd_bench.cli.progress import RichReporter, run_progress

        with run_progress(console) as progress:
            yield RichReporter(progress, len(cells), eta)

    try:
        summary = session.run(say=lambda line: console.print(line, highlight=False), reporting=reporting,
                              on_stop=_print_failures if is_debug() else None)
    except RunStopped as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}; the run stopped, finished cells are kept",
                          highlight=False)
        sys.exit(1)
    console.print(f"cells: {summary.done} trained, {summary.skipped} already done, "
                  f"{summary.failed} failed; explanations: {summary.explained} computed, "
                  f"{summary.explain_failed} failed; leaderboards: {', '.join(str(p) for p in summary.leaderboards)}")
    if summary.failed or summary.explain_failed:
        sys.exit(1)


def _print_plan(planned: list, matrix: str, tune: int, seed: int) -> None:
    """``--dry-run``: every planned cell, its hash and its status in the store."""
    from medkd_bench.run.session import AFTER_TUNING, RETRAINS

    table = Table("cell", "hash", "status", title=f"{len(planned)} cells ({matrix})")
    for cell, h, status in planned:
        table.add_row(cell.label(), h, status)
    console.print(table)
    later = [cell for cell, _, status in planned if status == AFTER_TUNING]
    known = [status for _, _, status in planned if status != AFTER_TUNING]
    to_train = [status for status in known if status != "done"]
    again = sum(status.startswith(RETRAINS) for status in to_train)
    console.print(f"{len(to_train)} of {len(known)} cells would train"
                  + (f", {again} of them finished cells whose checkpoint is missing or damaged (trained again)"
                     if again else "")
                  + (f"; {len(later)} more are hashed after tuning" if later else ""), highlight=False)
    if tune:
        from medkd_bench.tune.session import arms_of

        arms, untuned = arms_of([c for c, _, _ in planned]), arms_of(later)
        console.print(f"--tune {tune}: {len(arms)} arms, {len(arms) - len(untuned)} of them tuned already (all "
                      f"{tune} trials stored); the others get their trials on seed {seed} first, and their "
                      "student cells' hashes follow from the options chosen", highlight=False)


def _print_failures(store: Any, hashes: list[str]) -> None:
    """``--debug``: the stored traceback of every failed cell (or failed retraining of a done cell) of this run."""
    for h in dict.fromkeys(hashes):
        rec = store.get(h)
        if rec is not None and (rec.status == "failed" or rec.retrain_status == "failed") and rec.traceback:
            what = "failed" if rec.status == "failed" else "retraining failed"
            err_console.print(f"[red]{what}[/] {rec.dataset} {rec.method} {rec.teacher}{rec.student} "
                              f"seed {rec.seed} ({h}):", highlight=False)
            err_console.print(escape(rec.traceback), highlight=False)


#: A plugin with more unavailable datasets than this gets one line, not one each.
GROUP_SKIPPED = 3


def _print_unavailable(registry, data_root: Path | None) -> None:
    """Name the real datasets a run leaves out because their local copy is missing."""
    from rich.markup import escape

    from medkd_bench.run.plan import unavailable_datasets

    alike: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (plugin, reason less the name) -> datasets
    for name, reason in unavailable_datasets(registry, data_root).items():
        alike.setdefault((registry.owners[("dataset", name)], reason.replace(name, "*")), []).append((name, reason))
    for (plugin, _), missing in alike.items():
        if len(missing) > GROUP_SKIPPED:  # one line for a plugin of many files (medmnist: one per file)
            (name, reason), others = missing[0], len(missing) - 1
            console.print(f"[yellow]skipped {len(missing)} datasets of plugin[/] {escape(plugin)}, "
                          f"{escape(name)} and {others} more alike: {escape(reason)}", highlight=False)
            continue
        for name, reason in missing:
            console.print(f"[yellow]skipped dataset[/] {escape(name)}: {escape(reason)}", highlight=False)
