"""The plugin contract: one hook per kind, each handed a typed ``register`` callback, and ``register_commands``.

Following llm and tox, a plugin calls ``register(spec)`` once per thing it
provides instead of returning lists, so one hook can register any number of
specs and the host knows which plugin registered each. Following llm and
datasette, ``register_commands(cli)`` lets a plugin add commands to the
``medkd-bench`` command line (the built-in ``ofa-search`` plugin adds
``student search`` this way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

from medkd_bench.specs import DatasetSpec, ExplainerSpec, MethodSpec, StudentSpec, TeacherSpec

if TYPE_CHECKING:
    import click  # only the CLI, which has imported it already, calls register_commands

PROJECT = "medkd_bench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_teachers(register: Callable[[TeacherSpec], None]) -> None:
    """Call ``register(TeacherSpec(...))`` for each teacher network."""


@hookspec
def register_students(register: Callable[[StudentSpec], None]) -> None:
    """Call ``register(StudentSpec(...))`` for each student network."""


@hookspec
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Call ``register(DatasetSpec(...))`` for each dataset."""


@hookspec
def register_explainers(register: Callable[[ExplainerSpec], None]) -> None:
    """Call ``register(ExplainerSpec(...))`` for each saliency method."""


@hookspec
def register_methods(register: Callable[[MethodSpec], None]) -> None:
    """Call ``register(MethodSpec(...))`` for each distillation method."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands or groups to the ``medkd-bench`` command line: ``cli.add_command(...)``.

    Called for plugins installed through entry points when the command line
    starts (``--plugin`` files are read later, by the command that names them).
    """
