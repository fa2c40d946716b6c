"""``medkd-bench leaderboard`` and ``medkd-bench explain``: pages and panels from the store, no training."""

from __future__ import annotations

from pathlib import Path

import click

from medkd_bench.cli.app import cli, console, load_cli_registry
from medkd_bench.cli.options import bootstrap_option, plugin_option, work_dir_option
from medkd_bench.files.paths import check_writable, path_inside


@cli.command()
@plugin_option
@work_dir_option
@bootstrap_option
def leaderboard(plugin_files, work_dir, leaderboard_dir, bootstrap) -> None:
    """Re-render the markdown leaderboards from the run store (no training)."""
    from medkd_bench.report.leaderboard import render_all
    from medkd_bench.run.store import Store

    registry = load_cli_registry(plugin_files, work_dir)
    check_writable(leaderboard_dir, "--leaderboard-dir")
    with Store(work_dir / "runs.sqlite", readonly=True) as store:  # rendering never writes the store
        written = render_all(registry, store, leaderboard_dir, bootstrap)
    for p in written:
        console.print(f"wrote {p}")


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
              help="csv: one row per cell, nested figures as JSON text; json: an array of row objects.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="File to write [default: standard output].")
@plugin_option
@work_dir_option
@bootstrap_option
def export(fmt, out, plugin_files, work_dir, leaderboard_dir, bootstrap) -> None:
    """Every stored cell as one row of CSV or JSON, with stable column names (see README, "Exports")."""
    from medkd_bench.report.export import export_text, write_export
    from medkd_bench.report.row_stats import RowStats
    from medkd_bench.run.store import Store

    registry = load_cli_registry(plugin_files, work_dir)
    if out is not None:
        check_writable(out.parent if str(out.parent) else Path("."), "--out")
    with Store(work_dir / "runs.sqlite", readonly=True) as store:
        text = export_text(registry, store, fmt, RowStats(registry, bootstrap))
    if out is None:
        click.echo(text, nl=False)
    else:
        write_export(out, text)
        console.print(f"wrote {out}")


@cli.command()
@click.option("--dataset", required=True)
@click.option("--teacher", required=True)
@click.option("--student", required=True)
@click.option("--explainer", default="score-cam", show_default=True)
@click.option("--method", default="kd", show_default=True,
              help="The distillation method of the student shown.")
@click.option("--images", type=click.IntRange(1), default=2, show_default=True, help="Images per class.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="PNG path [default: <leaderboard-dir>/panels/<dataset>/<explainer>/<teacher>__<student>__<method>-N.png].")
@click.option("--device", default="auto", show_default=True)
@click.option("--data-root", type=click.Path(path_type=Path), default=None, envvar="MEDKD_DATA")
@click.option("--skip-bad", is_flag=True, help="Leave out bad files of a real dataset, as the run did.")
@plugin_option
@work_dir_option
def explain(dataset, teacher, student, explainer, method, images, out, device, data_root, skip_bad, plugin_files, work_dir,
            leaderboard_dir) -> None:
    """Render a teacher vs student saliency panel from finished cells (no training)."""
    from medkd_bench.explain.from_store import panel_from_store
    from medkd_bench.run.store import Store
    from medkd_bench.runtime.device import resolve_runtime

    path = work_dir / "runs.sqlite"
    registry = load_cli_registry(plugin_files, work_dir)
    # Names first: a typo gets "did you mean", not "no finished cell ... run the matrix first".
    for kind, name in (("dataset", dataset), ("teacher", teacher), ("student", student), ("explainer", explainer),
                       ("method", method)):
        registry.get(kind, name, f" in --{kind}")
    out = out or path_inside(leaderboard_dir, "panels", dataset, explainer, f"{teacher}__{student}__{method}-{images}.png")
    check_writable(out.parent, "--out folder")
    runtime = resolve_runtime(device, "auto")
    with Store(path, readonly=True) as store:
        written = panel_from_store(registry, store, work_dir, dataset, teacher, student, explainer, images, out,
                                   runtime, data_root, skip_bad=skip_bad, method=method)
    console.print(f"wrote {written}")
