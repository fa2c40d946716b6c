"""The ``medkd-bench`` click group, the consoles and the defaults every command shares."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from medkd_bench import __version__
from medkd_bench.cli.types import bound_numeric_options
from medkd_bench.run.run_options import DEFAULT_WORK_DIR

if TYPE_CHECKING:
    from medkd_bench.registry import Registry

console = Console(stderr=False, soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

DEFAULT_LEADERBOARD_DIR = Path("leaderboards")
__all__ = ["DEFAULT_LEADERBOARD_DIR", "DEFAULT_WORK_DIR", "cli", "console", "err_console", "is_debug",
           "load_cli_registry"]

#: ``--debug`` of the current invocation (set by the group's callback, reset by ``main``).
_DEBUG = {"on": False}


def is_debug() -> bool:
    return _DEBUG["on"]


def set_debug(on: bool) -> None:
    _DEBUG["on"] = on


def load_cli_registry(plugin_files: Sequence[Path], work_dir: Path | None = None) -> Registry:
    """The registry a command works with: installed plugins, then its ``--plugin`` files.

    A command with ``--work-dir`` passes it: spec files added there (``datasets add
    --work-dir W``) are registered for it as for every other command given ``W``.
    """
    from medkd_bench.registry import load_registry

    return load_registry(plugin_files, work_dir=work_dir)


class BoundedGroup(click.Group):
    """A group whose every command, added by the host or a plugin, has bounded numeric options.

    The bounds are applied as commands join (and again when one is looked up,
    for a subcommand a plugin adds to its own group later), so no command can
    forget them: see :func:`medkd_bench.cli.types.bound_numeric_options`.
    """

    #: Subgroups made with ``@group.group()`` are bounded groups too.
    group_class = type

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(bound_numeric_options(cmd), name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                            list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        return name, bound_numeric_options(cmd) if cmd is not None else None, rest


@click.group(cls=BoundedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="medkd-bench")
@click.option("--debug", is_flag=True,
              help="Print tracebacks: of an error, and of every failed cell of a run (the store keeps them).")
def cli(debug: bool) -> None:
    """Benchmark knowledge distillation from large teachers into small students
    for medical image classification, with Score-CAM explanations."""
    set_debug(debug)
