"""Helpers every conformance check shares: the name check, spec errors, a tiny workload, registries."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from medkd_bench.specs import NAME_RULE, NAME_RULE_TEXT

#: The registry's one name rule (:data:`medkd_bench.specs.NAME_RULE`), under the kit's old name.
NAME_PATTERN = NAME_RULE


def registry_of(*plugins: str | Path | ModuleType) -> Any:
    """The registry that the given plugins alone produce, without any entry point.

    A plugin's tests should not depend on what else is installed (or on a
    stale ``pip install -e .``), so this loads exactly the plugins named: a
    ``Path`` (or a string ending in ``.py``) is a plugin file, as with
    ``--plugin``; another string is an importable module such as
    ``"medkd_resnet34.plugin"``; a module object is registered as it is.
    """
    import importlib

    from medkd_bench.registry import collect, make_plugin_manager

    files = [Path(p) for p in plugins if isinstance(p, Path) or (isinstance(p, str) and p.endswith(".py"))]
    pm = make_plugin_manager(files, entry_points=False)
    for plugin in plugins:
        if isinstance(plugin, ModuleType):
            pm.register(plugin)
        elif isinstance(plugin, str) and not plugin.endswith(".py"):
            pm.register(importlib.import_module(plugin))
    return collect(pm)


def installed_registry() -> Any:
    """The registry of every installed plugin (entry points), as the ``medkd-bench`` command sees it.

    For a package's own test that its entry point is declared and loads.
    """
    from medkd_bench.registry import load_registry

    return load_registry()


def spec_failure(spec: Any, rule: str) -> AssertionError:
    """An error that names the spec (kind and name) and the rule it breaks."""
    kind = type(spec).__name__
    name = getattr(spec, "name", "?")
    return AssertionError(f"{kind} {name!r}: {rule}")


def require(condition: bool, spec: Any, rule: str) -> None:
    if not condition:
        raise spec_failure(spec, rule)


@contextlib.contextmanager
def tiny_workload() -> Iterator[None]:
    """One intra-op thread and a private RNG while a check runs.

    The checks push a couple of 32 px images through each model: that gains
    nothing from intra-op parallelism, and on a shared two-core CI runner
    OpenMP threads spinning against other jobs make it an order of magnitude
    slower. Forking the RNG keeps model initialisation inside a check from
    shifting the random stream of the test that called it.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            yield
    finally:
        torch.set_num_threads(threads)


def check_identity(spec: Any, citation_required: bool = True) -> None:
    """Name and citation: leaderboard rows are keyed by the name and credit the citation."""
    name = getattr(spec, "name", None)
    require(isinstance(name, str) and bool(NAME_RULE.match(name)), spec,
             f"name {name!r} is not allowed ({NAME_RULE_TEXT})")
    if citation_required:
        citation = getattr(spec, "citation", "")
        require(isinstance(citation, str) and bool(citation.strip()), spec,
                 "citation is empty: cite the paper (authors, title, venue year, arXiv id) "
                 "or, for data, its source")
