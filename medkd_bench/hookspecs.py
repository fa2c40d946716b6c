"""The plugin contract: four hooks, each handed a ``register`` callback.

Following llm and tox, a plugin calls ``register(spec)`` once per thing it
provides instead of returning lists, so one hook can register any number of
specs and the host knows which plugin registered each.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT = "medkd_bench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_teachers(register: Callable) -> None:
    """Call ``register(TeacherSpec(...))`` for each teacher network."""


@hookspec
def register_students(register: Callable) -> None:
    """Call ``register(StudentSpec(...))`` for each student network."""


@hookspec
def register_datasets(register: Callable) -> None:
    """Call ``register(DatasetSpec(...))`` for each dataset."""


@hookspec
def register_explainers(register: Callable) -> None:
    """Call ``register(ExplainerSpec(...))`` for each saliency method."""
