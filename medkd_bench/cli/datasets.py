"""``medkd-bench datasets ...``: inspect a local copy of a dataset before a run."""

from __future__ import annotations

from pathlib import Path

import click

from medkd_bench.cli.app import DEFAULT_WORK_DIR, cli, console, load_cli_registry
from medkd_bench.cli.options import IMG_SIZE, parse_dataset_options, plugin_option
from medkd_bench.errors import MedkdError


@cli.group("datasets")
def datasets_cmd() -> None:
    """Inspect datasets: check a local copy of a real dataset before a run."""


@datasets_cmd.command("check")
@click.argument("name")
@click.option("--root", "--data-root", "root", type=click.Path(path_type=Path), default=None, envvar="MEDKD_DATA",
              help="Folder holding the extracted dataset [env: MEDKD_DATA].")
@click.option("--img-size", type=IMG_SIZE, default=None, help="Decode at this size, 32-1024 px [default: the dataset's].")
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
    from medkd_bench.data.check import check_dataset
    from medkd_bench.system.files import check_writable

    registry = load_cli_registry(plugin_files)
    spec = registry.get("dataset", name)
    options = parse_dataset_options(dataset_options, registry)
    others = sorted(set(options) - {name})
    if others:
        raise MedkdError(f"--dataset-option {others[0]}...: this check is of dataset {name!r}")
    check_writable(work_dir, "--work-dir")
    check_dataset(spec, root, img_size, options.get(name, {}), skip_bad, work_dir, console)
