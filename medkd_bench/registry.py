"""The plugin manager: entry points (built-ins included), then ``--plugin`` files.

Each hook implementation is called on its own with a ``register`` callback
bound to its plugin, so the registry knows who registered every spec, a
duplicate name is reported with both plugins, and a hook that raises is
reported by plugin name instead of as a traceback.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from medkd_bench import hookspecs
from medkd_bench.errors import MedkdError
from medkd_bench.specs import (
    BASE_METHODS,
    DatasetSpec,
    ExplainerSpec,
    MethodSpec,
    ModelSpec,
    StudentSpec,
    TeacherSpec,
    check_name,
)

#: Comma-separated entry-point names to load, as llm's LLM_LOAD_PLUGINS: unset loads every installed
#: plugin, an empty value none. The test suite sets it to medkd-bench's own plugins.
LOAD_PLUGINS_ENV = "MEDKD_BENCH_LOAD_PLUGINS"

#: kind -> (hook name, spec class)
KINDS: dict[str, tuple[str, type]] = {
    "teacher": ("register_teachers", TeacherSpec),
    "student": ("register_students", StudentSpec),
    "dataset": ("register_datasets", DatasetSpec),
    "explainer": ("register_explainers", ExplainerSpec),
    "method": ("register_methods", MethodSpec),
}

#: Cell methods that are not distillation: a method may not take their names.
RESERVED_METHOD_NAMES = BASE_METHODS

#: Names an "unknown name" message lists at most, when no registered name is close: a handful shows
#: what names look like; the whole list (55 datasets with MedMNIST) is a wall nobody reads.
LISTED_NAMES = 5


def unknown_names(kind: str, unknown: Sequence[str], known: Iterable[str], where: str = "") -> MedkdError:
    """The one error for names that are not registered: short, with ``did you mean`` when one is close.

    Every place a user's name is resolved (``Registry.get``, ``run``'s
    ``--teachers``/``--students``/``--datasets``/``--methods``, ``--method-option``,
    ``--dataset-option``, ``--weights``, ``plugins show``) raises this, so a typo
    reads the same everywhere. Close names come from :func:`difflib.get_close_matches`
    (also tried without ``-``/``_``, so ``vgg-19`` finds ``vgg19``); without one,
    a few registered names and how to list them all.
    """
    import difflib

    known = sorted(set(known))
    folded = {_fold(k): k for k in known}
    close: list[str] = []
    for name in unknown:
        found = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        found += [folded[f] for f in difflib.get_close_matches(_fold(name), list(folded), n=3, cutoff=0.6)]
        close += [c for c in dict.fromkeys(found) if c not in close]
    names = ", ".join(repr(n) for n in unknown)
    if close:
        hint = f"did you mean {', '.join(close[:3])}?"
    elif not known:
        hint = f"no {kind} is registered"
    else:
        more = f" and {len(known) - LISTED_NAMES} more" if len(known) > LISTED_NAMES else ""
        hint = f"registered: {', '.join(known[:LISTED_NAMES])}{more}; `medkd-bench plugins` lists them"
    return MedkdError(f"unknown {kind} {names}{where} ({hint})")


def _fold(name: str) -> str:
    """A name without case or separators: ``VGG-19``, ``vgg_19`` and ``vgg19`` fold alike."""
    return re.sub(r"[-_.\s]+", "", name.lower())


@dataclass
class PluginInfo:
    """Where a plugin came from and what it registered."""

    name: str
    origin: str
    version: str
    registers: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Registry:
    """Every registered spec by kind and name, plus which plugin gave it."""

    specs: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: {} for k in KINDS})
    owners: dict[tuple[str, str], str] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)

    @property
    def teachers(self) -> dict[str, TeacherSpec]:
        return self.specs["teacher"]

    @property
    def students(self) -> dict[str, StudentSpec]:
        return self.specs["student"]

    @property
    def datasets(self) -> dict[str, DatasetSpec]:
        return self.specs["dataset"]

    @property
    def explainers(self) -> dict[str, ExplainerSpec]:
        return self.specs["explainer"]

    @property
    def methods(self) -> dict[str, MethodSpec]:
        return self.specs["method"]

    def get(self, kind: str, name: str, where: str = "") -> Any:
        """The spec of ``kind`` called ``name``; an unknown name is one short line (:func:`unknown_names`)."""
        try:
            return self.specs[kind][name]
        except KeyError:
            raise unknown_names(kind, [name], self.specs[kind], where) from None


def _load_file_plugin(pm: pluggy.PluginManager, path: Path) -> None:
    path = Path(path)
    if not path.is_file():
        raise MedkdError(f"--plugin {path}: no such file")
    module_name = f"medkd_bench_file_plugin_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise MedkdError(f"--plugin {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except Exception as exc:  # a broken plugin file is user input
        sys.modules.pop(module_name, None)
        raise MedkdError(f"--plugin {path}: failed to import: {type(exc).__name__}: {exc}") from exc
    pm.register(module, name=f"file:{path}")


class _PluginManager(pluggy.PluginManager):
    """Remembers which distribution each entry-point plugin came from."""

    def __init__(self, project_name: str):
        super().__init__(project_name)
        self.distributions: dict[int, tuple[str, str]] = {}


def _load_entry_points(pm: _PluginManager) -> None:
    """Register the ``medkd_bench`` entry points of each installed distribution once.

    Unlike pluggy's own loader, a package installed twice (say, an editable
    checkout and a virtual environment's copy) contributes only its first copy
    on ``sys.path``, the one Python imports, so a stale copy's entry points
    never point at modules the imported copy lacks.
    """
    wanted = os.environ.get(LOAD_PLUGINS_ENV)
    allowed = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
    seen: set[str] = set()
    for dist in importlib.metadata.distributions():
        name = re.sub(r"[-_.]+", "-", (dist.metadata["Name"] or "")).lower()
        if name in seen:
            continue
        seen.add(name)
        for ep in dist.entry_points:
            if ep.group != hookspecs.PROJECT or pm.get_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            if allowed is not None and ep.name not in allowed:
                continue
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            pm.distributions[id(plugin)] = (dist.metadata["Name"], dist.version)


def make_plugin_manager(
    plugin_files: Iterable[Path] = (),
    entry_points: bool = True,
    block: Iterable[str] = (),
) -> pluggy.PluginManager:
    """Entry points first (this is how built-ins arrive), then single files."""
    pm = _PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in block:
        pm.set_blocked(name)
    if entry_points:
        try:
            _load_entry_points(pm)
        except Exception as exc:
            raise MedkdError(f"loading plugins from entry points failed: {type(exc).__name__}: {exc}") from exc
    for path in plugin_files:
        _load_file_plugin(pm, Path(path))
    _check_hook_names(pm)
    return pm


def _check_hook_names(pm: pluggy.PluginManager) -> None:
    """A misspelled hook (``register_teacher``) is an error naming the plugin, not silently ignored."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        known = ", ".join(sorted(name for name in dir(hookspecs) if name.startswith("register_")))
        found = re.search(r"unknown hook '(\w+)'", str(exc))
        hook = found.group(1) if found else str(exc)
        raise MedkdError(f"plugin {pm.get_name(exc.plugin)!r}: unknown hook {hook!r} "
                         f"(medkd-bench's hooks: {known})") from None


def _origin(pm: pluggy.PluginManager, plugin: object, name: str) -> tuple[str, str]:
    found = getattr(pm, "distributions", {}).get(id(plugin))
    if found is not None:
        return f"entry point ({found[0]})", str(found[1])
    if name.startswith("file:"):
        return "file", "-"
    return "registered in code", str(getattr(plugin, "__version__", "-"))


def collect(pm: pluggy.PluginManager) -> Registry:
    """Call every hook implementation and build the registry."""
    registry = Registry()
    infos: dict[str, PluginInfo] = {}
    for plugin_name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        origin, version = _origin(pm, plugin, plugin_name)
        infos[plugin_name] = PluginInfo(plugin_name, origin, version)
    for kind, (hook_name, spec_cls) in KINDS.items():
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order
            owner = impl.plugin_name

            def register(spec: Any, _kind: str = kind, _cls: type = spec_cls, _owner: str = owner) -> None:
                if not isinstance(spec, _cls):
                    raise MedkdError(
                        f"plugin {_owner!r}: {KINDS[_kind][0]} got {type(spec).__name__}, expected {_cls.__name__}"
                    )
                check_name(_kind, spec.name, f"plugin {_owner!r}")
                if _kind == "method":
                    check_method_declaration(spec, _owner)
                if _kind in ("teacher", "student"):
                    _check_model(_owner, _kind, spec)
                if _kind == "dataset":
                    _check_dataset(_owner, spec)
                key = (_kind, spec.name)
                if key in registry.owners:
                    raise MedkdError(
                        f"duplicate {_kind} name {spec.name!r}: registered by plugin "
                        f"{registry.owners[key]!r} and by plugin {_owner!r}"
                    )
                registry.owners[key] = _owner
                registry.specs[_kind][spec.name] = spec
                infos[_owner].registers.setdefault(_kind, []).append(spec.name)

            try:
                impl.function(register=register)
            except MedkdError:
                raise
            except Exception as exc:
                raise MedkdError(f"plugin {owner!r} failed in {hook_name}: {type(exc).__name__}: {exc}") from exc
    registry.plugins = sorted(infos.values(), key=lambda p: p.name)
    return registry


def _check_dataset(owner: str, spec: DatasetSpec) -> None:
    """A dataset's ``quick_options`` name its own options: a typo would silently leave a smoke run full-sized."""
    unknown = sorted(set(spec.quick_options) - set(spec.options))
    if unknown:
        raise MedkdError(f"plugin {owner!r}: dataset {spec.name!r}: quick_options {', '.join(map(repr, unknown))} "
                         f"not among its options ({', '.join(spec.options) or 'none'})")


def _check_model(owner: str, kind: str, spec: ModelSpec) -> None:
    """A model's GPU choices are checked when it registers, on every machine, not first on a GPU."""
    from medkd_bench.runtime.device import GPU_DEPLOY_DTYPES, GPU_PRECISIONS

    for field_name, allowed in (("gpu_precision", GPU_PRECISIONS), ("gpu_deploy_dtype", tuple(GPU_DEPLOY_DTYPES))):
        value = getattr(spec, field_name)
        if value not in allowed:
            raise MedkdError(f"plugin {owner!r}: {kind} {spec.name!r}: {field_name} {value!r} is not one of "
                             f"{', '.join(allowed)}")


def check_method_declaration(spec: MethodSpec, owner: str | None = None) -> None:
    """A method's name, needs, build, layer options and search space, as it registers (naming the plugin).

    The conformance kit's :func:`~medkd_bench.testing.check_method_spec` runs the same checks (``owner`` None).
    """
    from medkd_bench.specs import LAYER_ROLES, METHOD_NEEDS, TARGET_LAYERS
    from medkd_bench.tune.space import check_space

    plugin = "" if owner is None else f"plugin {owner!r}: "
    if spec.name in RESERVED_METHOD_NAMES:
        raise MedkdError(f"{plugin}method name {spec.name!r} is reserved "
                         f"({' and '.join(RESERVED_METHOD_NAMES)} are the matrix's own cells)")
    unknown = [n for n in spec.needs if n not in METHOD_NEEDS]
    if unknown:
        raise MedkdError(f"{plugin}method {spec.name!r} needs {', '.join(map(repr, unknown))} "
                         f"(a method may need: {', '.join(METHOD_NEEDS)})")
    if not callable(spec.build):
        raise MedkdError(f"{plugin}method {spec.name!r}: build is not callable")
    for role, option in (spec.layer_options or {}).items():
        if role not in LAYER_ROLES:
            raise MedkdError(f"{plugin}method {spec.name!r}: layer_options role {role!r} is not one of "
                             f"{', '.join(LAYER_ROLES)}")
        if not isinstance(spec.options.get(option), str):
            raise MedkdError(f"{plugin}method {spec.name!r}: layer option {option!r} ({role}) must be one "
                             f"of its options with a text default, such as {TARGET_LAYERS!r} (the target layers)")
    check_space(owner, spec)


def describe_spec(registry: Registry, name: str) -> list[dict[str, Any]]:
    """Every registered spec called ``name`` (one per kind), with its options; a one-line error if none.

    A numeric option without a declared range must be >= 0 (the option parser's rule).
    """
    from medkd_bench.tune.space import describe

    found = []
    for kind, specs in registry.specs.items():
        spec = specs.get(name)
        if spec is None:
            continue
        ranges = getattr(spec, "option_ranges", {})
        space = getattr(spec, "search_space", {})
        options = []
        for key, default in (getattr(spec, "options", None) or {}).items():
            low, high = ranges.get(key, (0 if isinstance(default, int | float) and not isinstance(default, bool)
                                         else None, None))
            if isinstance(default, bool):
                allowed = "true or false"
            elif isinstance(default, int | float):
                allowed = f"{'-inf' if low is None else f'{low:g}'} .. {'inf' if high is None else f'{high:g}'}"
            else:
                allowed = "text"
            options.append({"name": key, "default": default, "allowed": allowed,
                            **({"tuned": describe(space[key])} if key in space else {})})
        found.append({"kind": kind, "name": name, "plugin": registry.owners[(kind, name)],
                      "description": getattr(spec, "description", ""), "citation": getattr(spec, "citation", ""),
                      "options": options})
    if not found:
        raise unknown_names("teacher, student, dataset, explainer or method", [name],
                            {n for specs in registry.specs.values() for n in specs})
    return found


def load_registry(plugin_files: Iterable[Path] = (), entry_points: bool = True,
                  work_dir: Path | None = None) -> Registry:
    """Every plugin's specs; with ``work_dir``, spec files in its ``datasets/`` and ``students/`` join them.

    Every command with a ``--work-dir`` passes it (and so do worker processes, from
    the run's options), so a dataset added with ``datasets add --work-dir W`` is
    found by every command given ``--work-dir W``
    (:func:`medkd_bench.spec_discovery.specs_in_work_dir`).
    """
    from medkd_bench.spec_discovery import specs_in_work_dir

    pm = make_plugin_manager(plugin_files, entry_points=entry_points)
    with specs_in_work_dir(work_dir):
        return collect(pm)
