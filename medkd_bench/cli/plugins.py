"""``medkd-bench plugins`` (what is installed) and ``medkd-bench add-plugin`` (scaffold a new one)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from medkd_bench.cli.app import DEFAULT_WORK_DIR, cli, console, load_cli_registry
from medkd_bench.cli.options import plugin_option

#: ``plugins`` reads a work dir only to list the datasets and students added there; it writes nothing.
_WORK_DIR_HELP = "Also list the datasets and searched students added in this work dir's datasets/ and students/."


@cli.group("plugins", invoke_without_command=True)
@plugin_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--work-dir", type=click.Path(path_type=Path), default=DEFAULT_WORK_DIR, show_default=True,
              help=_WORK_DIR_HELP)
@click.pass_context
def plugins_cmd(ctx, plugin_files, as_json, work_dir) -> None:
    """List plugins: origin, version and what each registers (`plugins show NAME`: one spec's options)."""
    if ctx.invoked_subcommand is not None:
        return
    registry = load_cli_registry(plugin_files, work_dir)
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
    """Scaffold a plugin and its conformance test. KIND: teacher, student, dataset, explainer or method.

    By default the plugin goes into this repository (plugins/KINDs/, tests/plugins/ and an entry
    point in pyproject.toml); with --standalone it becomes a package of its own.
    """
    from rich.markup import escape

    from medkd_bench.scaffold.api import scaffold
    from medkd_bench.scaffold.request import ScaffoldRequest

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


@plugins_cmd.command("show")
@click.argument("name")
@plugin_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--work-dir", type=click.Path(path_type=Path), default=DEFAULT_WORK_DIR, show_default=True,
              help=_WORK_DIR_HELP)
def plugins_show(name, plugin_files, as_json, work_dir) -> None:
    """What a registered teacher, student, dataset, explainer or method NAME is, and its options.

    Options come with their defaults, allowed ranges and, for methods, the range
    ``run --tune`` searches: what ``--method-option`` and ``--dataset-option`` accept.
    """
    from medkd_bench.registry import describe_spec

    registry = load_cli_registry(plugin_files, work_dir)
    found = describe_spec(registry, name)
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    for spec in found:
        console.print(f"[bold]{spec['kind']} {spec['name']}[/] (plugin {spec['plugin']})", highlight=False)
        for key in ("description", "citation"):
            if spec.get(key):
                console.print(f"  {key}: {spec[key]}", highlight=False, markup=False)
        if spec["options"]:
            flag = {"method": "--method-option", "dataset": "--dataset-option"}.get(spec["kind"], "")
            table = Table("option", "default", "allowed", "tuned over (--tune)" if spec["kind"] == "method" else "",
                          title=f"set with {flag} {name}.KEY=VALUE" if flag else None)
            for o in spec["options"]:
                table.add_row(o["name"], repr(o["default"]), o["allowed"], o.get("tuned", ""))
            console.print(table)
        if spec["kind"] == "method":
            from medkd_bench.tune.space import LR_FACTOR

            console.print(f"  run --tune also searches the student's learning rate (train.lr, its default "
                          f"/{LR_FACTOR:g} to x{LR_FACTOR:g}) for every method and the label-only baseline",
                          highlight=False)
