"""The files a scaffold writes and edits, and the next steps it prints, for either mode."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from medkd_bench.errors import MedkdError
from medkd_bench.scaffold.pyproject import BUILTIN_PLUGINS_PACKAGE, add_entry_point
from medkd_bench.scaffold.render import plugin_source, plugin_test_source, render
from medkd_bench.scaffold.request import (
    FileEdit,
    NewFile,
    PluginName,
    ScaffoldResult,
    TimmChoice,
    display_path,
)

#: What a standalone package needs besides medkd-bench itself, by what its module imports.
STANDALONE_DEPENDENCIES = {
    "teacher": ["timm>=1.0.9"],
    "student": ["timm>=1.0.9"],
    "dataset": ["numpy>=1.26", "torch>=2.4"],
    "explainer": ["grad-cam>=1.5.4"],
    "method": ["torch>=2.4"],
}


#: ``run``'s option that selects each kind: the next step a scaffold prints (the CLI tests check they exist).
RUN_OPTIONS = {"teacher": "--teachers", "student": "--students", "dataset": "--datasets", "explainer": "--explainers",
               "method": "--methods"}


def _run_option(kind: str, slug: str) -> str:
    return f"{RUN_OPTIONS[kind]} {slug}"


def _try_command(kind: str, slug: str) -> str:
    """A first run of the new plugin in scratch folders: it must not touch the committed leaderboards/."""
    scratch = f".medkd/try-{slug}"
    return (f"medkd-bench run {_run_option(kind, slug)} --matrix quick --work-dir {scratch} "
            f"--leaderboard-dir {scratch}/leaderboards")


def _refuse_existing(*paths: Path) -> None:
    for path in paths:
        if path.exists() or path.is_symlink():
            raise MedkdError(f"{path} already exists: choose another name or remove it first")


def plan_repo(kind: str, name: PluginName, choice: TimmChoice | None, root: Path, cwd: Path) -> ScaffoldResult:
    """Plugin module, its test and the entry point, inside the checkout at ``root``."""
    kind_dir = root / "plugins" / f"{kind}s"
    if not kind_dir.is_dir():
        raise MedkdError(f"{kind_dir} is missing: is {root} a medkd-bench checkout?")
    plugin_path = kind_dir / f"{name.module}.py"
    test_path = root / "tests" / "plugins" / f"test_{name.module}.py"
    _refuse_existing(plugin_path, test_path)
    tests_dir = root / "tests"
    clash = next(iter(sorted(tests_dir.rglob(test_path.name))), None) if tests_dir.is_dir() else None
    if clash is not None:  # pytest imports test modules by file name: two of the same name collide
        raise MedkdError(f"{clash} already exists: choose another name (pytest needs unique test file names)")
    target = f"{BUILTIN_PLUGINS_PACKAGE}.{kind}s.{name.module}"
    pyproject = root / "pyproject.toml"
    old = pyproject.read_bytes().decode("utf-8")
    new = add_entry_point(old, name.slug, target, str(pyproject))
    result = ScaffoldResult(kind, name, "repo", root, f'{name.slug} = "{target}"', cwd=cwd)
    result.files = [NewFile(plugin_path, plugin_source(kind, name, choice, standalone=False)),
                    NewFile(test_path, plugin_test_source(kind, name, standalone=False))]
    result.edits = [FileEdit(pyproject, old, new)]
    steps = [] if root == cwd.resolve() else [f"cd {root}"]
    result.next_steps = steps + [
        "pip install -e .",
        "medkd-bench plugins",
        f"python -m pytest -q tests/plugins/{test_path.name}",
        _try_command(kind, name.slug),
    ]
    result.notes = ["re-run `pip install -e .` so the new entry point is picked up (until then, pass "
                    f"--plugin plugins/{kind}s/{plugin_path.name})"]
    return result


def plan_standalone(kind: str, name: PluginName, choice: TimmChoice | None, base: Path, cwd: Path) -> ScaffoldResult:
    """A pip-installable package ``base/medkd-<name>/`` with the plugin, its test, README and entry point."""
    if not base.is_dir():
        raise MedkdError(f"--standalone {base}: no such directory")
    distribution = name.slug if name.slug.startswith("medkd-") else f"medkd-{name.slug}"
    package = distribution.replace("-", "_")
    root = base / distribution
    _refuse_existing(root)
    if importlib.util.find_spec(package) is not None:
        raise MedkdError(f"a module named {package!r} is already importable: choose another name")
    plugin_module = f"{package}.plugin"
    summary = f"medkd-bench {kind} plugin {name.slug!r}" + (f" (timm {choice.model})" if choice else "")
    context = dict(distribution=distribution, package=package, name=name.slug, kind=kind, summary=summary,
                   plugin_module=plugin_module, run_option=_run_option(kind, name.slug),
                   dependencies=["medkd-bench>=0.1.0", *STANDALONE_DEPENDENCIES[kind]])
    result = ScaffoldResult(kind, name, "standalone", root, f'{name.slug} = "{plugin_module}"', cwd=cwd)
    result.files = [
        NewFile(root / "pyproject.toml", render("standalone/pyproject.toml.j2", **context)),
        NewFile(root / "README.md", render("standalone/README.md.j2", **context)),
        NewFile(root / ".gitignore", render("standalone/gitignore.j2", **context)),
        NewFile(root / "src" / package / "__init__.py", render("standalone/__init__.py.j2", **context)),
        NewFile(root / "src" / package / "plugin.py", plugin_source(kind, name, choice, standalone=True)),
        NewFile(root / "tests" / "test_plugin.py", plugin_test_source(kind, name, True, plugin_module)),
    ]
    shown = display_path(root, cwd)
    result.next_steps = [
        f"pip install {shown}",
        f"python -m pytest -q {os.path.join(shown, 'tests')}",
        "medkd-bench plugins",
        _try_command(kind, name.slug),
    ]
    result.notes = [f"publish it with `python -m build {shown}` and `twine upload`; users then just pip install it"]
    return result
