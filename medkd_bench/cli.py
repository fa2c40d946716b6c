"""The ``medkd-bench`` command line: click commands, rich output.

Every user mistake surfaces as :class:`MedkdError`; :func:`main` prints its
one-line message and exits with code 2. A run whose cells partly failed exits
with 1 after recording every error in the store.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .errors import MedkdError

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
@click.option("--temperature", type=float, default=None, help="KD temperature T [default: 4.0].")
@click.option("--alpha", type=float, default=None, help="KD weight on the label loss [default: 0.5].")
@click.option("--pretrained", is_flag=True, help="Start from timm's ImageNet weights (needs a network).")
@click.option("--weights", multiple=True, metavar="NAME=PATH",
              help="Start model NAME from a local weights file (.safetensors or torch checkpoint).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda[:N]")
@click.option("--amp", default="auto", show_default=True, help="auto (on for CUDA) | off | bf16 | fp16")
@click.option("--explainer", default="score-cam", show_default=True)
@click.option("--explain-images", type=int, default=1, show_default=True, help="Panel images per class.")
@click.option("--latency-runs", type=int, default=50, show_default=True)
@click.option("--dry-run", is_flag=True, help="Print the planned cells and their status; train nothing.")
def run(matrix, teachers, students, datasets, plugin_files, work_dir, leaderboard_dir, data_root,
        dataset_options, img_size, epochs, seed, temperature, alpha, pretrained, weights, device, amp,
        explainer, explain_images, latency_runs, dry_run) -> None:
    """Train teachers, baselines and KD students, score them, write leaderboards."""
    from .distill import DEFAULT_ALPHA, DEFAULT_TEMPERATURE, KDSettings
    from .leaderboard import render_all
    from .matrix import MatrixRunner, RunOptions, plan
    from .runtime import resolve_runtime
    from .store import Store

    registry = _registry(plugin_files)
    cells = plan(registry, matrix, _split_names(teachers), _split_names(students), _split_names(datasets), seed)
    kd = KDSettings(DEFAULT_TEMPERATURE if temperature is None else temperature,
                    DEFAULT_ALPHA if alpha is None else alpha)
    if not 0.0 <= kd.alpha <= 1.0 or kd.temperature <= 0:
        raise MedkdError("--alpha must lie in [0, 1] and --temperature be positive")
    registry.get("explainer", explainer)
    options = RunOptions(
        work_dir=work_dir, leaderboard_dir=leaderboard_dir, img_size=img_size, data_root=data_root,
        dataset_options=_parse_dataset_options(dataset_options), epochs=epochs, kd=kd, pretrained=pretrained,
        weights=_parse_weights(weights), explainer=explainer, explain_per_class=explain_images,
        latency_runs=latency_runs,
    )
    runtime = resolve_runtime(device, amp)
    from .matrix import check_writable

    check_writable(work_dir, "--work-dir")
    with Store(work_dir / "runs.sqlite") as store:
        runner = MatrixRunner(registry, options, store, runtime)  # validates options before any work
        if dry_run:
            table = Table("cell", "hash", "status", title=f"{len(cells)} cells ({matrix})")
            for c in cells:
                h = runner.hash(c)
                rec = store.get(h)
                table.add_row(c.label(), h, rec.status if rec else "new")
            console.print(table)
            return
        console.print(f"medkd-bench {__version__}: {len(cells)} cells on {runtime.describe()}; store {store.path}")
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            runner.reporter = RichReporter(progress, len(cells))
            summary = runner.run(cells)
        written = render_all(registry, store, leaderboard_dir, explainer)
    console.print(f"cells: {summary['done']} trained, {summary['skipped']} already done, "
                  f"{summary['failed']} failed; leaderboards: {', '.join(str(p) for p in written)}")
    if summary["failed"]:
        sys.exit(1)


@cli.command()
@plugin_option
@work_dir_option
@click.option("--explainer", default="score-cam", show_default=True)
def leaderboard(plugin_files, work_dir, leaderboard_dir, explainer) -> None:
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
        written = render_all(registry, store, leaderboard_dir, explainer)
    for p in written:
        console.print(f"wrote {p}")


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


def main(argv: Sequence[str] | None = None) -> None:
    # Deprecation chatter from dependencies at import time is not the user's concern.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="medkd-bench", standalone_mode=False)
    except MedkdError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted: finished cells are kept in the store; rerun to resume")
        sys.exit(130)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
