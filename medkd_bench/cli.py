"""The ``medkd-bench`` command line: click commands, rich output.

Every user mistake surfaces as :class:`MedkdError`; :func:`main` prints its
one-line message and exits with code 2. A run whose cells partly failed exits
with 1 after recording every error in the store.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .allocator import keep_freed_memory
from .errors import MedkdError
from .quiet import quiet_dependency_warnings

console = Console(stderr=False, soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

DEFAULT_WORK_DIR = Path(".medkd")
DEFAULT_LEADERBOARD_DIR = Path("leaderboards")


def _split_names(values: Sequence[str]) -> list[str] | None:
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return names or None


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _parse_dataset_options(values: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for v in values:
        key, sep, value = v.partition("=")
        name, dot, option = key.partition(".")
        if not (sep and dot and name and option):
            raise MedkdError(f"--dataset-option {v!r}: expected DATASET.KEY=VALUE")
        out.setdefault(name, {})[option] = _parse_value(value)
    return out


def _parse_weights(values: Sequence[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not (sep and name and path):
            raise MedkdError(f"--weights {v!r}: expected NAME=PATH")
        if not Path(path).is_file():
            raise MedkdError(f"--weights {name}={path}: no such file")
        out[name] = Path(path)
    return out


def plugin_option(f: Callable) -> Callable:
    return click.option(
        "--plugin", "plugin_files", multiple=True, type=click.Path(path_type=Path),
        help="Load a plugin from a single Python file (repeatable).",
    )(f)


def work_dir_option(f: Callable) -> Callable:
    f = click.option("--work-dir", type=click.Path(path_type=Path), default=DEFAULT_WORK_DIR, show_default=True,
                     help="Run store, checkpoints and caches.")(f)
    return click.option("--leaderboard-dir", type=click.Path(path_type=Path), default=DEFAULT_LEADERBOARD_DIR,
                        show_default=True, help="Where markdown leaderboards and panels go.")(f)


def bootstrap_option(f: Callable) -> Callable:
    from .stats import RESAMPLES

    return click.option("--bootstrap", type=click.IntRange(100), default=RESAMPLES, show_default=True,
                        metavar="N", help="Bootstrap resamples per confidence interval in the leaderboards.")(f)


def _registry(plugin_files: Sequence[Path]):
    from .plugins import load_registry

    return load_registry(plugin_files)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="medkd-bench")
def cli() -> None:
    """Benchmark knowledge distillation from large teachers into small students
    for medical image classification, with Score-CAM explanations."""


class RichReporter:
    """Cell and epoch progress bars, and one line per finished cell."""

    def __init__(self, progress: Progress, total: int):
        self.progress = progress
        self.cells = progress.add_task("cells", total=total)
        self.epochs = progress.add_task("epochs", total=1, visible=False)

    def cell_started(self, cell, index: int, total: int, epochs: int) -> None:
        if not epochs:  # started in a worker process: no epoch progress comes back
            self.progress.console.print(f"[dim]started {cell.label()}[/]")
            return
        self.progress.update(self.epochs, description=f"[cyan]{cell.label()}", total=epochs, completed=0,
                             visible=True)

    def epoch_done(self, epoch: int, epochs: int, row: dict[str, float]) -> None:
        self.progress.update(self.epochs, completed=epoch,
                             description=self.progress.tasks[self.epochs].description.split("  loss")[0]
                             + f"  loss {row['loss']:.3f} val {row['val_accuracy']:.3f}")

    def cell_finished(self, cell, status: str, detail: str) -> None:
        style = {"done": "green", "skipped": "dim", "failed": "red"}[status]
        self.progress.console.print(f"[{style}]{status:>7}[/] {cell.label()}: {detail}")
        self.progress.advance(self.cells)
        self.progress.update(self.epochs, visible=False)


@cli.command()
@click.option("--matrix", default="full", show_default=True, help="full | quick")
@click.option("--teachers", multiple=True, help="Only these teachers (comma-separated or repeated).")
@click.option("--students", multiple=True, help="Only these students.")
@click.option("--datasets", multiple=True, help="Only these datasets.")
@plugin_option
@work_dir_option
@click.option("--data-root", type=click.Path(path_type=Path), default=None, envvar="MEDKD_DATA",
              help="Local copy of a real dataset [env: MEDKD_DATA].")
@click.option("--dataset-option", "dataset_options", multiple=True, metavar="DATASET.KEY=VALUE",
              help="Override a dataset option, e.g. synthetic-cxr.n_train=2000.")
@click.option("--img-size", type=int, default=None, help="Override the datasets' image size.")
@click.option("--epochs", type=int, default=None, help="Override every model's epochs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--seeds", type=click.IntRange(1), default=1, show_default=True,
              help="Run every cell with seeds SEED .. SEED+N-1; leaderboards report mean ± sd across seeds.")
@click.option("--deterministic", is_flag=True,
              help="Deterministic kernels (torch.use_deterministic_algorithms, CUBLAS_WORKSPACE_CONFIG): "
                   "repeatable CUDA runs, at some speed cost.")
@click.option("--temperature", type=float, default=None, help="KD temperature T [default: 4.0].")
@click.option("--alpha", type=float, default=None, help="KD weight on the label loss [default: 0.5].")
@click.option("--pretrained", is_flag=True, help="Start from timm's ImageNet weights (needs a network).")
@click.option("--weights", multiple=True, metavar="NAME=PATH",
              help="Start model NAME from a local weights file (.safetensors or torch checkpoint).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda[:N]")
@click.option("--amp", default="auto", show_default=True,
              help="auto (CUDA: on; CPU: each model's measured fast path) | off | bf16 | fp16")
@click.option("--explainers", multiple=True,
              help="Explainers to run, or 'all' for every registered one [default: score-cam].")
@click.option("--explain-images", type=click.IntRange(1), default=6, show_default=True,
              help="Test images explained per model (balanced over classes, seeded).")
@click.option("--sanity-images", type=click.IntRange(0), default=2, show_default=True,
              help="Images of that sample used for the model-randomisation sanity check.")
@click.option("--latency-runs", type=click.IntRange(1), default=10, show_default=True,
              help="Timed batch-1 runs per model, at least; timing goes on until 1 s has been timed.")
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
@click.option("--cpus-per-cell", type=float, default=None, help="Ray: CPUs each cell requests [default: 1].")
@click.option("--gpus-per-cell", type=float, default=None, help="Ray: GPUs each cell requests [default: 0].")
@click.option("--max-retries", type=click.IntRange(0), default=None,
              help="Ray: retries of a cell whose task failed or whose worker died [default: 1].")
def run(matrix, teachers, students, datasets, plugin_files, work_dir, leaderboard_dir, data_root,
        dataset_options, img_size, epochs, seed, seeds, deterministic, temperature, alpha, pretrained, weights,
        device, amp, explainers, explain_images, sanity_images, latency_runs, skip_bad, bootstrap,
        dry_run, executor, jobs, address, ray_cpus, cpus_per_cell, gpus_per_cell, max_retries) -> None:
    """Train teachers, baselines and KD students, score them, write leaderboards."""
    from .distill import DEFAULT_ALPHA, DEFAULT_TEMPERATURE, KDSettings
    from .leaderboard import render_all
    from .matrix import MatrixRunner, RunOptions, plan
    from .runtime import resolve_runtime
    from .store import Store

    registry = _registry(plugin_files)
    cells = plan(registry, matrix, _split_names(teachers), _split_names(students), _split_names(datasets), seed,
                 data_root=data_root, seeds=seeds)
    if not _split_names(datasets):
        _print_unavailable(registry, data_root)
    kd = KDSettings(DEFAULT_TEMPERATURE if temperature is None else temperature,
                    DEFAULT_ALPHA if alpha is None else alpha)
    if not 0.0 <= kd.alpha <= 1.0 or kd.temperature <= 0:
        raise MedkdError("--alpha must lie in [0, 1] and --temperature be positive")
    options = RunOptions(
        work_dir=work_dir, leaderboard_dir=leaderboard_dir, img_size=img_size, data_root=data_root,
        dataset_options=_parse_dataset_options(dataset_options), epochs=epochs, kd=kd, pretrained=pretrained,
        weights=_parse_weights(weights), explainers=tuple(_split_names(explainers) or ()) or RunOptions.explainers,
        explain_images=explain_images, sanity_images=sanity_images, latency_runs=latency_runs, skip_bad=skip_bad,
    )
    from .executors import PoolExecutor, absolute_paths, driver_runtime, make_executor, resolve_jobs

    # Workers run in other processes (or on other machines): they need absolute paths, and the hashes must
    # agree whichever executor ran a cell, so every run hashes the absolute ones.
    options = absolute_paths(options)
    if executor == "ray" and jobs not in ("auto", "1"):
        raise MedkdError("--jobs: only with --executor local (Ray sizes its tasks with --cpus-per-cell)")
    n_jobs = resolve_jobs(jobs, device, len(cells)) if executor == "local" else 1
    cell_executor = make_executor(executor, options, plugin_files, device, amp, address, ray_cpus, cpus_per_cell,
                                  gpus_per_cell, max_retries, deterministic, jobs=n_jobs)
    runtime = (driver_runtime(device, amp, deterministic) if executor == "ray"
               else resolve_runtime(device, amp, deterministic))
    from .matrix import check_writable

    check_writable(work_dir, "--work-dir")
    with Store(work_dir / "runs.sqlite") as store:
        runner = MatrixRunner(registry, options, store, runtime)  # validates options before any work
        runner.explainer_names()
        if dry_run:
            table = Table("cell", "hash", "status", title=f"{len(cells)} cells ({matrix})")
            for c in cells:
                h = runner.hash(c)
                rec = store.get(h)
                table.add_row(c.label(), h, rec.status if rec else "new")
            console.print(table)
            return
        where = runtime.describe() if executor == "local" else f"Ray ({address or 'local cluster'})"
        if isinstance(cell_executor, PoolExecutor):
            where += f" in {n_jobs} worker processes, {cell_executor.recipe.threads} thread(s) each"
        console.print(f"medkd-bench {__version__}: {len(cells)} cells on {where}; store {store.path}")
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            runner.reporter = RichReporter(progress, len(cells))
            summary = runner.run(cells, cell_executor)
        written = render_all(registry, store, leaderboard_dir, bootstrap)
    console.print(f"cells: {summary['done']} trained, {summary['skipped']} already done, "
                  f"{summary['failed']} failed; explanations: {summary['explained']} computed, "
                  f"{summary['explain_failed']} failed; leaderboards: {', '.join(str(p) for p in written)}")
    if summary["failed"] or summary["explain_failed"]:
        sys.exit(1)


def _print_unavailable(registry, data_root: Path | None) -> None:
    """Name the real datasets a run leaves out because their local copy is missing."""
    from rich.markup import escape

    from .matrix import unavailable_datasets

    for name, reason in unavailable_datasets(registry, data_root).items():
        console.print(f"[yellow]skipped dataset[/] {escape(name)}: {escape(reason)}", highlight=False)


@cli.command()
@plugin_option
@work_dir_option
@bootstrap_option
def leaderboard(plugin_files, work_dir, leaderboard_dir, bootstrap) -> None:
    """Re-render the markdown leaderboards from the run store (no training)."""
    from .leaderboard import render_all
    from .store import Store

    path = work_dir / "runs.sqlite"
    if not path.is_file():
        raise MedkdError(f"no run store at {path}: run `medkd-bench run` first or pass --work-dir")
    registry = _registry(plugin_files)
    from .matrix import check_writable

    check_writable(leaderboard_dir, "--leaderboard-dir")
    with Store(path) as store:
        written = render_all(registry, store, leaderboard_dir, bootstrap)
    for p in written:
        console.print(f"wrote {p}")


@cli.command()
@click.option("--dataset", required=True)
@click.option("--teacher", required=True)
@click.option("--student", required=True)
@click.option("--explainer", default="score-cam", show_default=True)
@click.option("--images", type=click.IntRange(1), default=2, show_default=True, help="Images per class.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="PNG path [default: <leaderboard-dir>/panels/<dataset>/<explainer>/<teacher>__<student>-N.png].")
@click.option("--device", default="auto", show_default=True)
@click.option("--data-root", type=click.Path(path_type=Path), default=None, envvar="MEDKD_DATA")
@click.option("--skip-bad", is_flag=True, help="Leave out bad files of a real dataset, as the run did.")
@plugin_option
@work_dir_option
def explain(dataset, teacher, student, explainer, images, out, device, data_root, skip_bad, plugin_files, work_dir,
            leaderboard_dir) -> None:
    """Render a teacher vs student saliency panel from finished cells (no training)."""
    from .explain import panel_from_store
    from .matrix import check_writable
    from .runtime import resolve_runtime
    from .store import Store

    path = work_dir / "runs.sqlite"
    if not path.is_file():
        raise MedkdError(f"no run store at {path}: run `medkd-bench run` first or pass --work-dir")
    registry = _registry(plugin_files)
    registry.get("explainer", explainer)
    out = out or leaderboard_dir / "panels" / dataset / explainer / f"{teacher}__{student}-{images}.png"
    check_writable(out.parent, "--out folder")
    runtime = resolve_runtime(device, "auto")
    with Store(path) as store:
        written = panel_from_store(registry, store, work_dir, dataset, teacher, student, explainer, images, out,
                                   runtime, data_root, skip_bad=skip_bad)
    console.print(f"wrote {written}")


@cli.group("datasets")
def datasets_cmd() -> None:
    """Inspect datasets: check a local copy of a real dataset before a run."""


@datasets_cmd.command("check")
@click.argument("name")
@click.option("--root", "--data-root", "root", type=click.Path(path_type=Path), default=None, envvar="MEDKD_DATA",
              help="Folder holding the extracted dataset [env: MEDKD_DATA].")
@click.option("--img-size", type=int, default=None, help="Decode at this size [default: the dataset's].")
@click.option("--dataset-option", "dataset_options", multiple=True, metavar="DATASET.KEY=VALUE",
              help="Override a dataset option, e.g. lc25000.seed=1.")
@click.option("--skip-bad", is_flag=True, help="Report bad files as warnings (exit 0) instead of errors.")
@click.option("--work-dir", type=click.Path(path_type=Path), default=DEFAULT_WORK_DIR, show_default=True,
              help="The decoded images are cached here, for the run to reuse.")
@plugin_option
def datasets_check(name, root, img_size, dataset_options, skip_bad, work_dir, plugin_files) -> None:
    """Read every file of dataset NAME; print class counts per split and every bad file.

    Exits 2 when a file is bad (unless --skip-bad) or a folder is missing.
    """
    from .datacheck import check_dataset
    from .matrix import check_writable

    registry = _registry(plugin_files)
    spec = registry.get("dataset", name)
    options = _parse_dataset_options(dataset_options)
    others = sorted(set(options) - {name})
    if others:
        raise MedkdError(f"--dataset-option {others[0]}...: this check is of dataset {name!r}")
    check_writable(work_dir, "--work-dir")
    check_dataset(spec, root, img_size, options.get(name, {}), skip_bad, work_dir, console)


@cli.command("plugins")
@plugin_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_cmd(plugin_files, as_json) -> None:
    """List plugins: origin, version and what each registers."""
    registry = _registry(plugin_files)
    if as_json:
        click.echo(json.dumps([p.__dict__ for p in registry.plugins], indent=2))
        return
    table = Table("plugin", "origin", "version", "registers", title="medkd-bench plugins")
    for p in registry.plugins:
        regs = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in sorted(p.registers.items())) or "-"
        table.add_row(p.name, p.origin, p.version, regs)
    console.print(table)


@cli.command("add-plugin")
@click.argument("kind", metavar="KIND")
@click.argument("name", metavar="NAME")
@click.option("--standalone", "standalone_dir", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Write a pip-installable package DIR/medkd-NAME/ instead of adding to this repository.")
@click.option("--timm-model", default=None, metavar="MODEL",
              help="timm model for a teacher or student [default: resnet18 / mobilenetv3_small_100].")
@click.option("--target-layer", default=None, metavar="PATH",
              help="Score-CAM target layer, a dotted submodule path [default: the model's last feature stage].")
@click.option("--repo-root", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="The medkd-bench checkout to add to [default: the one the current directory is in].")
def add_plugin(kind, name, standalone_dir, timm_model, target_layer, repo_root) -> None:
    """Scaffold a plugin and its conformance test. KIND: teacher, student, dataset or explainer.

    By default the plugin goes into this repository (plugins/KINDs/, tests/plugins/ and an entry
    point in pyproject.toml); with --standalone it becomes a package of its own.
    """
    from rich.markup import escape

    from .scaffold import ScaffoldRequest, scaffold

    result = scaffold(ScaffoldRequest(kind=kind, name=name, standalone=standalone_dir, repo_root=repo_root,
                                      timm_model=timm_model, target_layer=target_layer))
    for path in result.written:
        console.print(f"[green]wrote[/] {escape(result.shown(path))}", highlight=False)
    for path in result.edited:
        console.print(f"[green]added[/] entry point {escape(result.entry_point)} to {escape(result.shown(path))}",
                      highlight=False)
    for note in result.notes:
        console.print(f"[dim]note:[/] {escape(note)}", highlight=False)
    console.print("next:", highlight=False)
    for step in result.next_steps:
        console.print(f"  {step}", highlight=False, markup=False)


# ---- `medkd-bench student ...`: hardware-aware students (medkd_bench/ofa_search.py) ----------------

@cli.group()
def student() -> None:
    """Students made for this machine: search the OFA supernet for a latency or MACs budget."""


@student.command("search")
@click.option("--latency-ms", type=float, default=None,
              help="Budget: batch-1 latency on this machine and --device, in ms.")
@click.option("--gmacs", type=float, default=None, help="Budget: multiply-accumulates at --img-size, in GMACs.")
@click.option("--img-size", type=click.IntRange(32), default=64, show_default=True,
              help="Input size the budget holds at: the dataset's img_size in the matrix.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda[:N] (where latency is timed).")
@click.option("--amp", default="auto", show_default=True,
              help="Precision latency is timed in; keep it as `run` uses it (auto: bf16/fp16 on CUDA).")
@click.option("--num-classes", type=click.IntRange(2), default=3, show_default=True,
              help="Classifier size the student is timed and counted with.")
@click.option("--width-mult", type=click.Choice(["1.0", "1.2"]), default="1.2", show_default=True,
              help="Supernet width (OFA-595's supernet is 1.2).")
@click.option("--name", default=None, help="Student name [default: ofa-<device>-<N>ms or ofa-<N>mmacs].")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Spec file to write [default: <work-dir>/students/<name>.json].")
@click.option("--supernet-weights", type=click.Path(path_type=Path), default=None,
              help="Local OFA supernet checkpoint (.safetensors or torch file, read with weights_only=True); "
                   "the student inherits its weights. Nothing is downloaded.")
@click.option("--population", type=click.IntRange(2), default=100, show_default=True)
@click.option("--generations", type=click.IntRange(0), default=30, show_default=True)
@click.option("--repeats", type=click.IntRange(3), default=20, show_default=True,
              help="Timed runs per part and per verified subnet (median, after warm-up).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--work-dir", type=click.Path(path_type=Path), default=DEFAULT_WORK_DIR, show_default=True,
              help="Holds the cost lookup table (ofa_cost_lut.json) and, by default, students/.")
def student_search(latency_ms, gmacs, img_size, device, amp, num_classes, width_mult, name, out,
                   supernet_weights, population, generations, repeats, seed, work_dir) -> None:
    """Search the once-for-all MobileNetV3 supernet for the biggest student that fits a budget here.

    Evolutionary search (as OFA's) over kernel size 3/5/7, expand ratio 3/4/6 and depth 2/3/4 per
    stage at a fixed --img-size. Latency is predicted from a per-part lookup table timed on this
    machine (cached in the work dir, so repeated searches are fast), and the pick is verified by
    timing the whole subnet; GMACs are counted by fvcore.

    What it maximises: capacity (MACs, then parameters) within the budget. Without the pretrained
    supernet's accuracy predictor, which would need a download, this picks the biggest student the
    budget allows, not a proven most-accurate one; on small medical datasets trained from scratch,
    bigger is not guaranteed to be better. The result is a spec file the `ofa-search` student plugin
    registers (from $MEDKD_STUDENTS, else .medkd/students/), so `run --students NAME` trains it.
    """
    from .ofa_search import (
        LUT_FILE,
        Budget,
        SearchSettings,
        build_subnet,
        check_name,
        default_name,
        iter_searched_students,
        search,
        searched_student_files,
        spec_document,
        write_spec,
    )
    from .runtime import resolve_runtime

    if (latency_ms is None) == (gmacs is None):
        raise MedkdError("student search: give exactly one budget, --latency-ms or --gmacs")
    budget = Budget("latency_ms", latency_ms) if latency_ms is not None else Budget("gmacs", gmacs)
    runtime = resolve_runtime(device, amp)
    name = check_name(name or default_name(budget, runtime.device.type))
    registry = _registry(())
    if name in registry.students and registry.owners[("student", name)] != "ofa-search":
        raise MedkdError(f"--name {name}: a student of that name is already registered by plugin "
                         f"{registry.owners[('student', name)]!r}")
    out = out or work_dir / "students" / f"{name}.json"
    clash = [st.path for st in iter_searched_students() if st.name == name and st.path.resolve() != out.resolve()]
    if clash:
        raise MedkdError(f"--name {name}: spec file {clash[0]} already defines it; remove that file or pick "
                         "another --name")
    from .matrix import check_writable

    check_writable(out.parent, "--out folder")
    check_writable(work_dir, "--work-dir")
    if supernet_weights is not None:  # fail before the search, not after it
        build_subnet(_smallest_settings(float(width_mult)), num_classes, supernet_weights)
    opts = SearchSettings(population=population, generations=generations, seed=seed, verify_runs=repeats)
    console.print(f"searching for {budget.text()} at {img_size} px on {runtime.describe()} "
                  f"(population {population}, {generations} generations)")
    result = search(budget, runtime, img_size, num_classes, float(width_mult), work_dir / LUT_FILE, opts,
                    log=lambda msg: console.print(f"  {msg}", highlight=False))
    path = write_spec(spec_document(result, name, supernet_weights), out)
    table = Table("", "budget", "measured", "predicted", title=f"student {name}")
    table.add_row("latency (ms)", f"{latency_ms:g}" if latency_ms is not None else "-", f"{result.latency_ms:.2f}",
                  "-" if budget.kind == "gmacs" else f"{result.predicted.latency_ms * result.latency_scale:.2f}")
    table.add_row("GMACs", f"{gmacs:g}" if gmacs is not None else "-", f"{result.gmacs:.4f}",
                  f"{result.predicted.gmacs:.4f}")
    table.add_row("params (M)", "-", f"{result.params_m:.2f}", f"{result.predicted.params / 1e6:.2f}")
    console.print(table)
    console.print(f"subnet: ks={list(result.settings.ks)} e={list(result.settings.e)} d={list(result.settings.d)}",
                  highlight=False)
    console.print(f"{result.evaluated} subnets evaluated, {result.parts_timed} parts newly timed "
                  f"(table {work_dir / LUT_FILE}); wrote {path}", highlight=False)
    if path.resolve() in {p.resolve() for p in searched_student_files()}:
        console.print(f"registered as student {name}: medkd-bench run --students {name},ofa-595", highlight=False)
    else:
        console.print(f"not in the student search path: set MEDKD_STUDENTS={path.parent} so runs register "
                      f"{name}", highlight=False)


def _smallest_settings(width_mult: float):
    from .ofa_search import SMALLEST, SubnetSettings

    return SubnetSettings(SMALLEST.ks, SMALLEST.e, SMALLEST.d, width_mult)


INTERRUPTED = "interrupted: finished cells are kept in the store; rerun to resume"


def main(argv: Sequence[str] | None = None) -> None:
    quiet_dependency_warnings()
    keep_freed_memory()  # before torch allocates anything
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="medkd-bench", standalone_mode=False)
    except MedkdError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print(INTERRUPTED)
        sys.exit(130)
    except click.exceptions.Abort as exc:  # click turns Ctrl-C inside a command into Abort
        err_console.print(INTERRUPTED if isinstance(exc.__cause__, KeyboardInterrupt) else "aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
