"""``medkd-bench add-plugin``: every kind, in a checkout and standalone, works at once.

The real repository is never touched: repository mode writes into a throw-away checkout
(``--repo-root`` or the current directory), and standalone packages are installed with
``pip --target`` into a temporary directory put on ``sys.path`` for the test only. Bad input
must exit with code 2, one stderr line, and leave the directory tree byte for byte as it was.
The last test runs every command in CONTRIBUTING.md, so the guide cannot drift.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib
import torch

from medkd_bench import MedkdError
from medkd_bench.registry import load_registry
from medkd_bench.scaffold import transaction as scaffold_transaction
from medkd_bench.scaffold.api import scaffold
from medkd_bench.scaffold.pyproject import add_entry_point
from medkd_bench.scaffold.request import KINDS, ScaffoldRequest
from tests.helpers import TINY_DATA, assert_one_line_error


@pytest.fixture(autouse=True)
def every_installed_plugin(monkeypatch):
    """Scaffolded plugins arrive through entry points: these are discovery tests, so every plugin loads."""
    monkeypatch.delenv("MEDKD_BENCH_LOAD_PLUGINS", raising=False)

REPO = Path(__file__).resolve().parents[1]
CONTRIBUTING = REPO / "CONTRIBUTING.md"
NAMES = {"teacher": "scaffold-teacher", "student": "scaffold-student", "dataset": "scaffold-data",
         "explainer": "scaffold-cam", "method": "scaffold-kd"}
MINIMAL_PYPROJECT = """\
[project]
name = "medkd-bench"
version = "0.0.0"

# Built-in plugins are registered through entry points, like third-party ones.
[project.entry-points.medkd_bench]
vgg19 = "medkd_bench_plugins.teachers.vgg19"

[tool.setuptools.packages.find]
include = ["medkd_bench*", "plugins*"]
"""


@pytest.fixture
def one_thread() -> Iterator[None]:
    """In-process training runs on 32 px images: one thread is as fast, and immune to a busy CI runner."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def forget_tmp_modules(tmp_path_factory) -> Iterator[None]:
    """Drop modules imported from temporary directories, so no later test sees a stale plugin."""
    yield
    base = str(tmp_path_factory.getbasetemp())
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(base):
            del sys.modules[name]
            parent, _, child = name.rpartition(".")
            if getattr(sys.modules.get(parent), child, None) is module:
                delattr(sys.modules[parent], child)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A minimal medkd-bench checkout: pyproject.toml with the entry-point table, empty plugin folders."""
    root = tmp_path / "checkout"
    for kind in KINDS:
        (root / "plugins" / f"{kind}s").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text(MINIMAL_PYPROJECT)
    return root


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root``: file contents, or None for a directory."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _run_test_module(path: Path) -> int:
    """Import a generated test file and call its test functions, as pytest would; returns how many ran."""
    spec = importlib.util.spec_from_file_location(f"generated_{path.parent.parent.name}_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [getattr(module, name) for name in dir(module) if name.startswith("test_")]
    for test in tests:
        test()
    return len(tests)


def _ruff_check(*args: str, cwd: Path) -> None:
    """Generated code must pass ruff, or the contributor's first CI run fails on code they did not write."""
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *args], cwd=cwd,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _entry_points(pyproject: Path) -> dict[str, str]:
    return tomllib.loads(pyproject.read_text())["project"]["entry-points"]["medkd_bench"]


# ---- repository mode ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_repo_mode_writes_a_working_plugin(kind, checkout, run_cli, forget_tmp_modules):
    name = NAMES[kind]
    module = name.replace("-", "_")
    result = run_cli(["add-plugin", kind, name, "--repo-root", str(checkout)])
    assert result.exit_code == 0, result.out + result.err
    plugin = checkout / "plugins" / f"{kind}s" / f"{module}.py"
    test = checkout / "tests" / "plugins" / f"test_{module}.py"
    assert f"wrote {plugin}" in result.out and f"wrote {test}" in result.out
    assert "pip install -e ." in result.out and f"python -m pytest -q tests/plugins/test_{module}.py" in result.out
    assert _entry_points(checkout / "pyproject.toml") == {
        "vgg19": "medkd_bench_plugins.teachers.vgg19", name: f"medkd_bench_plugins.{kind}s.{module}"}
    # Listed next to the built-ins (no clash) when loaded as a --plugin file ...
    listed = run_cli(["plugins", "--json", "--plugin", str(plugin)])
    rows = {row["name"]: row for row in json.loads(listed.out)}
    assert rows[f"file:{plugin}"]["registers"] == {kind: [name]}
    assert name in load_registry([plugin]).specs[kind]
    # ... its generated conformance test passes, and both files pass this repository's ruff rules.
    assert _run_test_module(test) == 2
    _ruff_check("--config", str(REPO / "pyproject.toml"), str(plugin), str(test), cwd=REPO)


def test_repo_root_is_found_from_a_subdirectory(checkout, run_cli, monkeypatch, forget_tmp_modules):
    monkeypatch.chdir(checkout / "plugins")
    result = run_cli(["add-plugin", "explainer", "Found_From_Below"])
    assert result.exit_code == 0, result.err
    assert (checkout / "plugins" / "explainers" / "found_from_below.py").is_file()
    assert "registered as 'found-from-below'" in result.out
    assert f"cd {checkout}" in result.out  # the next commands run from the root
    assert _entry_points(checkout / "pyproject.toml")["found-from-below"] == "medkd_bench_plugins.explainers.found_from_below"


def test_timm_options_shape_the_spec(checkout):
    result = scaffold(ScaffoldRequest("student", "swin-student", repo_root=checkout,
                                      timm_model="swin_tiny_patch4_window7_224"))
    source = result.files[0].text
    # Swin: sized from the input, and its last stage is channels-last.
    assert "accepts_img_size=True" in source and "reshape_transform=nhwc_to_nchw" in source
    assert 'last_module("layers.3")' in source
    chosen = scaffold(ScaffoldRequest("teacher", "shallow-resnet", repo_root=checkout, timm_model="resnet10t",
                                      target_layer="layer3"), write=False)
    assert 'last_module("layer3")' in chosen.files[0].text and "chosen with --target-layer" in chosen.files[0].text
    assert not chosen.files[0].path.exists()  # write=False plans only


# ---- standalone mode ------------------------------------------------------------------------------


def _pip_install_target(site: Path, *packages: Path) -> None:
    """Install for this test only: no dependencies, no network, into a folder of its own."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--disable-pip-version-check", "--target", str(site), *map(str, packages)],
                   check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """One standalone package per kind, pip-installed (with --target) into one site folder."""
    base = tmp_path_factory.mktemp("standalone")
    packages = {kind: scaffold(ScaffoldRequest(kind, f"alone-{kind}", standalone=base)).root for kind in KINDS}
    site = base / "site"
    _pip_install_target(site, *packages.values())
    return site, packages


@pytest.fixture
def installed(standalone, monkeypatch, forget_tmp_modules) -> dict[str, Path]:
    site, packages = standalone
    monkeypatch.syspath_prepend(str(site))
    return packages


def test_standalone_package_layout(standalone):
    _, packages = standalone
    for kind, root in packages.items():
        package = f"medkd_alone_{kind}"
        assert root.name == f"medkd-alone-{kind}"
        for rel in ("pyproject.toml", "README.md", ".gitignore", f"src/{package}/__init__.py",
                    f"src/{package}/plugin.py", "tests/test_plugin.py"):
            assert (root / rel).is_file(), rel
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
        assert project["name"] == f"medkd-alone-{kind}"
        assert project["entry-points"]["medkd_bench"] == {f"alone-{kind}": f"{package}.plugin"}
        assert "medkd-bench>=0.1.0" in project["dependencies"]
        _ruff_check("src", "tests", cwd=root)  # the package's own (default) rules


def test_standalone_entry_points_are_discovered(installed):
    registry = load_registry()
    origins = {p.name: p.origin for p in registry.plugins}
    for kind in KINDS:
        assert f"alone-{kind}" in registry.specs[kind]
        assert origins[f"alone-{kind}"] == f"entry point (medkd-alone-{kind})"


def test_standalone_generated_tests_pass(installed):
    for root in installed.values():
        assert _run_test_module(root / "tests" / "test_plugin.py") == 3


@pytest.mark.slow
def test_standalone_plugins_run_a_quick_matrix(installed, run_cli, dirs, one_thread):
    tiny = ["--dataset-option", "alone-dataset.n_train=24", "--dataset-option", "alone-dataset.n_val=9",
            "--dataset-option", "alone-dataset.n_test=9"]
    result = run_cli(["run", "--teachers", "alone-teacher", "--students", "alone-student", "--datasets",
                      "alone-dataset", "--methods", "alone-method", "--matrix", "quick", *TINY_DATA, *tiny,
                      "--explain-images", "1", *dirs])
    assert result.exit_code == 0, result.out + result.err
    assert "3 trained, 0 already done, 0 failed" in result.out


def test_standalone_teacher_as_a_plugin_file_runs_with_builtins(standalone, run_cli, dirs, one_thread,
                                                               forget_tmp_modules):
    _, packages = standalone
    plugin = packages["teacher"] / "src" / "medkd_alone_teacher" / "plugin.py"
    result = run_cli(["run", "--plugin", str(plugin), "--teachers", "alone-teacher", "--students", "ofa-595",
                      "--matrix", "quick", *TINY_DATA, *dirs, "--dry-run"])
    assert result.exit_code == 0, result.out + result.err
    assert "alone-teacher -> ofa-595 (kd)" in result.out


def test_standalone_cli_output(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli(["add-plugin", "dataset", "cli-data", "--standalone", "."])
    assert result.exit_code == 0, result.err
    assert "wrote medkd-cli-data/pyproject.toml" in result.out
    for step in ("pip install ./medkd-cli-data", "python -m pytest -q ./medkd-cli-data/tests",
                 "medkd-bench run --datasets cli-data --matrix quick"):
        assert step in result.out


# ---- bad input: exit 2, one line, nothing written ---------------------------------------------------


def _bad_cases(checkout: Path, elsewhere: Path) -> dict[str, tuple[list[str], list[str]]]:
    ck = ["--repo-root", str(checkout)]
    return {
        "path-like-name": (["teacher", "../x", *ck], ["invalid plugin name '../x'"]),
        "empty-name": (["teacher", "", *ck], ["invalid plugin name ''"]),
        "digit-first": (["teacher", "3net", *ck], ["invalid plugin name '3net'", "starts with a letter"]),
        "space-in-name": (["teacher", "my net", *ck], ["invalid plugin name 'my net'"]),
        "keyword": (["dataset", "class", *ck], ["invalid plugin name 'class'"]),
        "double-dash": (["dataset", "a--b", *ck], ["invalid plugin name 'a--b'"]),
        "unknown-kind": (["model", "foo", *ck], ["unknown plugin kind 'model'", "teacher, student, dataset, explainer"]),
        "registered-teacher": (["teacher", "vgg19", *ck], ["teacher 'vgg19' is already registered by plugin 'vgg19'"]),
        "registered-dataset": (["dataset", "Synthetic_CXR", *ck], ["dataset 'synthetic-cxr' is already registered"]),
        "taken-plugin-name": (["teacher", "score-cam", *ck], ["plugin name 'score-cam' is already taken"]),
        "unknown-timm-model": (["teacher", "t1", "--timm-model", "resnet9000", *ck],
                               ["--timm-model 'resnet9000': timm has no such model"]),
        "missing-target-layer": (["teacher", "t2", "--target-layer", "layer5", *ck],
                                 ["--target-layer 'layer5': timm model 'resnet18' has no such submodule", "layer4"]),
        "odd-target-layer": (["student", "s1", "--target-layer", "../layer4", *ck],
                             ["--target-layer '../layer4': expected a dotted submodule path"]),
        "token-target-layer": (["teacher", "t3", "--timm-model", "vit_tiny_patch16_224", *ck],
                               ["not an (N, C, H, W) feature map", "--target-layer"]),
        "timm-model-for-dataset": (["dataset", "d1", "--timm-model", "resnet18", *ck],
                                   ["--timm-model only applies to teacher and student plugins"]),
        "plugin-file-exists": (["teacher", "existing-teacher", *ck], ["existing_teacher.py already exists"]),
        "test-file-exists": (["student", "tested-student", *ck], ["test_tested_student.py already exists"]),
        "test-name-clash": (["dataset", "conformance", *ck], ["tests/test_conformance.py already exists",
                                                              "unique test file names"]),
        "entry-point-exists": (["teacher", "ghost", *ck], ["entry point 'ghost' already exists"]),
        "not-a-checkout": (["teacher", "t4", "--repo-root", str(elsewhere)],
                           ["no pyproject.toml of project 'medkd-bench' there"]),
        "standalone-dir-missing": (["teacher", "t5", "--standalone", str(elsewhere / "nope")], ["no such directory"]),
        "standalone-package-exists": (["explainer", "there", "--standalone", str(elsewhere)],
                                      ["medkd-there already exists"]),
        "standalone-and-repo-root": (["teacher", "t6", "--standalone", str(elsewhere), *ck], ["exclude each other"]),
        "importable-package": (["teacher", "bench", "--standalone", str(elsewhere)],
                               ["a module named 'medkd_bench' is already importable"]),
    }


@pytest.fixture
def bad_input_tree(tmp_path: Path, checkout: Path) -> tuple[Path, Path]:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "medkd-there").mkdir(parents=True)
    (checkout / "plugins" / "teachers" / "existing_teacher.py").write_text("# mine\n")
    (checkout / "tests" / "plugins").mkdir()
    (checkout / "tests" / "plugins" / "test_tested_student.py").write_text("# mine\n")
    (checkout / "tests" / "test_conformance.py").write_text("# mine\n")
    pyproject = checkout / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('vgg19 = "medkd_bench_plugins.teachers.vgg19"\n',
                                                       'vgg19 = "medkd_bench_plugins.teachers.vgg19"\nghost = "medkd_bench_plugins.teachers.ghost"\n'))
    return checkout, elsewhere


@pytest.mark.parametrize("case", sorted(_bad_cases(Path("c"), Path("e"))))
def test_bad_input_writes_nothing(case, bad_input_tree, tmp_path, run_cli):
    args, fragments = _bad_cases(*bad_input_tree)[case]
    before = _tree(tmp_path)
    assert_one_line_error(run_cli(["add-plugin", *args]), *fragments)
    assert _tree(tmp_path) == before


def test_outside_a_checkout_suggests_standalone(tmp_path, run_cli, monkeypatch):
    if REPO in tmp_path.parents:
        pytest.skip("the temporary directory is inside the checkout: it would be found")
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(run_cli(["add-plugin", "teacher", "lost"]), "not inside a medkd-bench checkout", "--standalone")
    assert list(tmp_path.iterdir()) == []


def test_broken_pyproject_is_not_touched(checkout, tmp_path, run_cli):
    (checkout / "pyproject.toml").write_text(MINIMAL_PYPROJECT.replace('name = "medkd-bench"', 'name = "medkd-bench"\n['))
    before = _tree(tmp_path)
    assert_one_line_error(run_cli(["add-plugin", "teacher", "t7", "--repo-root", str(checkout)]),
                          "no pyproject.toml of project 'medkd-bench'")
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("fail_at", ["second-file", "pyproject"])
def test_a_failed_write_is_rolled_back(fail_at, checkout, tmp_path, run_cli, monkeypatch):
    before = _tree(tmp_path)
    original_create = scaffold_transaction._Transaction.create

    def create(self, path, text):
        if fail_at == "second-file" and self.created_files:
            raise PermissionError(13, "Permission denied", str(path))
        original_create(self, path, text)

    def replace(self, edit):
        raise OSError(28, "No space left on device", str(edit.path))

    monkeypatch.setattr(scaffold_transaction._Transaction, "create", create)
    if fail_at == "pyproject":
        monkeypatch.setattr(scaffold_transaction._Transaction, "replace", replace)
    result = run_cli(["add-plugin", "explainer", "half-written", "--repo-root", str(checkout)])
    assert_one_line_error(result, "failed", "nothing was written")
    assert _tree(tmp_path) == before  # files removed, tests/plugins/ removed, pyproject.toml as it was


def test_every_template_ships_as_package_data():
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = REPO / "medkd_bench" / "scaffold"
    shipped = {path for pattern in patterns["medkd_bench.scaffold"] for path in package.glob(pattern)}
    templates = set((package / "templates").rglob("*.j2"))
    assert templates and templates <= shipped


# ---- pyproject.toml editing ---------------------------------------------------------------------------


def test_entry_point_goes_into_the_real_table_and_nothing_else_changes():
    text = (REPO / "pyproject.toml").read_text()
    new = add_entry_point(text, "resnet34", "medkd_bench_plugins.teachers.resnet34", "pyproject.toml")
    added = [line for line in new.splitlines() if line not in text.splitlines()]
    assert added == ['resnet34 = "medkd_bench_plugins.teachers.resnet34"']
    old_lines, new_lines = text.splitlines(), new.splitlines()
    at = new_lines.index(added[0])
    assert new_lines[:at] + new_lines[at + 1:] == old_lines
    assert re.match(r'^[a-z0-9-]+ = "medkd_bench_plugins\.', new_lines[at - 1])  # right after the last entry
    assert tomllib.loads(new)["project"]["entry-points"]["medkd_bench"]["resnet34"] == "medkd_bench_plugins.teachers.resnet34"


def test_entry_point_table_is_created_and_line_endings_kept():
    text = '[project]\r\nname = "medkd-bench"\r\n\r\n[tool.x]\r\ny = 1'
    new = add_entry_point(text, "a-b", "medkd_bench_plugins.teachers.a_b", "p")
    assert new == text + '\r\n\r\n[project.entry-points.medkd_bench]\r\na-b = "medkd_bench_plugins.teachers.a_b"\r\n'


def test_entry_points_in_an_inline_table_are_left_to_the_user():
    text = '[project]\nname = "medkd-bench"\nentry-points = { medkd_bench = { vgg19 = "medkd_bench_plugins.teachers.vgg19" } }\n'
    with pytest.raises(MedkdError, match="cannot add the entry point automatically"):
        add_entry_point(text, "a-b", "medkd_bench_plugins.teachers.a_b", "p")


# ---- CONTRIBUTING.md ----------------------------------------------------------------------------------


def contributing_commands() -> list[str]:
    """Every command in CONTRIBUTING.md's ``bash`` blocks, in order, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", CONTRIBUTING.read_text(), flags=re.DOTALL)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


class GuideRunner:
    """Runs the guide's commands in a throw-away checkout; the only rewrites are documented here.

    - ``medkd-bench run --matrix full`` gets ``--dry-run``: training the full matrix takes an
      hour; the dry run still loads every plugin and plans every cell, the new teacher's included.
    - ``pip install -e .`` is emulated: installing the throw-away checkout would replace the
      medkd-bench under test, so its new entry points are published from a dist-info on
      ``sys.path`` (as pip lays them out) and its plugin folders are added to the ``plugins``
      packages' search paths.
    - ``pip install PATH`` installs with ``--target`` into a temporary folder on ``sys.path``
      (and on the ``PYTHONPATH`` of subprocesses), without dependencies or network.
    - ``git`` commands are not run; ``git add`` checks that every path it names exists.
    """

    def __init__(self, root: Path, run_cli, monkeypatch) -> None:
        self.root, self.run_cli, self.monkeypatch = root, run_cli, monkeypatch
        self.site = root.parent / "site"
        self.editable = root.parent / "editable"
        self.outputs: list[str] = []
        for folder in (self.site, self.editable):
            folder.mkdir()
            monkeypatch.syspath_prepend(str(folder))

    def run(self, command: str) -> None:
        argv = shlex.split(command)
        handler = {"medkd-bench": self.medkd_bench, "python": self.python, "pip": self.pip, "git": self.git}.get(argv[0])
        assert handler is not None, f"CONTRIBUTING.md: no rule to run {command!r}"
        handler(argv[1:])

    def medkd_bench(self, args: list[str]) -> None:
        if args[0] == "run" and "full" in args:
            args = [*args, "--dry-run"]
        result = self.run_cli(args)
        assert result.exit_code == 0, f"medkd-bench {shlex.join(args)}\n{result.out}{result.err}"
        self.outputs.append(result.out)

    def python(self, args: list[str]) -> None:
        assert args[:2] == ["-m", "pytest"], args
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(self.site), os.environ.get("PYTHONPATH", "")]),
               "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, *args], cwd=Path.cwd(), env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        self.outputs.append(done.stdout)

    def pip(self, args: list[str]) -> None:
        if args == ["install", "-e", "."]:
            return self.emulate_editable_install()
        assert args[0] == "install" and len(args) == 2, args
        _pip_install_target(self.site, Path(args[1]))
        importlib.invalidate_caches()

    def emulate_editable_install(self) -> None:
        table = _entry_points(Path.cwd() / "pyproject.toml")
        installed = {ep.name for ep in importlib.metadata.entry_points(group="medkd_bench")}
        info = self.editable / "medkd_bench_checkout-0.0.0.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: medkd-bench-checkout\nVersion: 0.0.0\n")
        lines = [f"{name} = {target}" for name, target in table.items() if name not in installed]
        (info / "entry_points.txt").write_text("[medkd_bench]\n" + "\n".join(lines) + "\n")
        for kind in KINDS:
            package = importlib.import_module(f"medkd_bench_plugins.{kind}s")
            self.monkeypatch.setattr(package, "__path__", [*package.__path__, str(Path.cwd() / "plugins" / f"{kind}s")])
        importlib.invalidate_caches()

    def git(self, args: list[str]) -> None:
        if args[0] == "add":
            for path in args[1:]:
                assert (Path.cwd() / path).exists(), f"git add {path}: no such path after the guide's steps"


@pytest.fixture
def full_checkout(tmp_path: Path) -> Path:
    """A copy of this checkout's plugins and pyproject.toml: ``python -m pytest`` puts the current
    directory first on ``sys.path``, so its ``plugins`` package must hold the built-ins, as a real
    checkout's does."""
    root = tmp_path / "checkout"
    shutil.copytree(REPO / "plugins", root / "plugins", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    # Committed, as in a real checkout (whose leaderboards/ names no work dir: that file is not committed).
    shutil.copytree(REPO / "leaderboards", root / "leaderboards", ignore=shutil.ignore_patterns(".medkd-work-dir.json"))
    (root / "tests").mkdir()
    return root


@pytest.mark.slow
def test_contributing_commands(full_checkout, run_cli, monkeypatch, one_thread, forget_tmp_modules):
    checkout = full_checkout
    commands = contributing_commands()
    assert commands[0].startswith("medkd-bench add-plugin teacher ")
    monkeypatch.chdir(checkout)
    guide = GuideRunner(checkout, run_cli, monkeypatch)
    for command in commands:
        guide.run(command)
    everything = "\n".join(guide.outputs)
    # The guide's teacher is registered, tested, smoke-run and planned into the full matrix;
    # the standalone dataset is installed and listed.
    assert "resnet34" in (checkout / "pyproject.toml").read_text()
    assert "resnet34 -> ofa-595 (kd)" in everything and "0 failed" in everything
    assert commands[-1] == "medkd-bench plugins" and "ward-cxr" in guide.outputs[-1]
    assert (checkout / ".medkd" / "smoke" / "runs.sqlite").is_file()
    assert (checkout / "leaderboards" / "README.md").is_file()


def test_the_run_options_a_scaffold_prints_exist():
    from medkd_bench.cli.run import run
    from medkd_bench.scaffold.plan import RUN_OPTIONS

    flags = {opt for param in run.params for opt in param.opts}
    assert set(RUN_OPTIONS.values()) <= flags
