""":func:`scaffold`: validate, probe, plan and write, every check before the first write."""

from __future__ import annotations

from pathlib import Path

from medkd_bench.errors import MedkdError
from medkd_bench.scaffold.plan import plan_repo, plan_standalone
from medkd_bench.scaffold.pyproject import find_repo_root
from medkd_bench.scaffold.request import (
    DEFAULT_TIMM_MODELS,
    PluginName,
    ScaffoldRequest,
    ScaffoldResult,
    check_kind,
    check_options,
    normalise_name,
)
from medkd_bench.scaffold.timm_probe import choose_timm_model
from medkd_bench.scaffold.transaction import apply


def check_name_free(kind: str, name: PluginName) -> None:
    """Refuse a spec name or a plugin (entry-point) name that an installed plugin already uses.

    The registry refuses duplicates at load time, so a clash would break every
    command the moment the new plugin is installed; better to say so now.
    """
    from medkd_bench.registry import load_registry

    registry = load_registry()
    if name.slug in registry.specs[kind]:
        owner = registry.owners[(kind, name.slug)]
        raise MedkdError(f"{kind} {name.slug!r} is already registered by plugin {owner!r}: choose another name")
    if name.slug in {p.name for p in registry.plugins}:
        raise MedkdError(f"plugin name {name.slug!r} is already taken by an installed plugin: choose another name")


def scaffold(request: ScaffoldRequest, write: bool = True) -> ScaffoldResult:
    """Check everything, plan every file, then (unless ``write`` is false) write them all or none."""
    kind = check_kind(request.kind)
    name = normalise_name(request.name)
    check_options(kind, request)
    cwd = (request.cwd or Path.cwd()).resolve()
    # The checkout first: running outside it is the commonest mistake, and the checks below are slower.
    root = None if request.standalone is not None else find_repo_root(cwd, request.repo_root)
    check_name_free(kind, name)
    choice = choose_timm_model(kind, request.timm_model, request.target_layer) if kind in DEFAULT_TIMM_MODELS else None
    if root is not None:
        result = plan_repo(kind, name, choice, root, cwd)
    else:
        assert request.standalone is not None
        result = plan_standalone(kind, name, choice, request.standalone, cwd)
    if choice is not None:
        result.notes.insert(0, f"timm {choice.model} ({choice.params_m:.1f}M parameters); Score-CAM target layer "
                               f"{choice.target_layer!r} ({choice.target_reason})")
    if name.slug != request.name:
        result.notes.insert(0, f"registered as {name.slug!r} (module {name.module})")
    if write:
        apply(result)
    return result
