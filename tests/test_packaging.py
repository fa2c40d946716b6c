"""The wheel: unique top-level import names, every subpackage and template inside, and it coexists.

Built for real with ``pip wheel`` (no network: ``--no-build-isolation`` uses
the setuptools already installed), so a package left out of pyproject.toml's
list, or a template left out of package-data, fails here instead of on a
user's machine.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _pip(*args: str, cwd: Path = REPO) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), ".")
    (found,) = out.glob("medkd_bench-*.whl")
    return found


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_top_level_import_names_are_unique(wheel):
    top = {n.split("/")[0] for n in _names(wheel) if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"medkd_bench", "medkd_bench_plugins"}


def test_every_package_and_template_is_in_the_wheel(wheel):
    names = set(_names(wheel))
    expected = set()
    for folder, name in (("medkd_bench", "medkd_bench"), ("plugins", "medkd_bench_plugins")):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".py", ".j2") and "__pycache__" not in path.parts:
                expected.add(f"{name}/{path.relative_to(REPO / folder).as_posix()}")
    assert expected - names == set()


def test_entry_points_name_the_installed_plugin_package(wheel):
    with zipfile.ZipFile(wheel) as zf:
        (ep,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        text = zf.read(ep).decode()
    group = text.split("[medkd_bench]")[1].split("[")[0]
    targets = [line.split("=", 1)[1].strip() for line in group.strip().splitlines()]
    assert targets and all(t.startswith("medkd_bench_plugins.") for t in targets)


@pytest.mark.slow
def test_installs_beside_a_distribution_that_ships_a_plugins_package(wheel, tmp_path):
    other = tmp_path / "other"
    (other / "plugins").mkdir(parents=True)
    (other / "plugins" / "__init__.py").write_text("OWNER = 'other'\n")
    (other / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "other-with-plugins"\nversion = "1.0"\n'
        '[tool.setuptools]\npackages = ["plugins"]\n')
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path), ".", cwd=other)
    target = tmp_path / "site"
    for whl in (wheel, *tmp_path.glob("other_with_plugins-*.whl")):
        _pip("install", "--no-deps", "--no-index", "--target", str(target), str(whl))
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import plugins, medkd_bench_plugins.teachers.vgg19 as v; "
             "assert plugins.OWNER == 'other' and v.__file__.startswith(sys.argv[1]), v.__file__; print('ok')")
    done = subprocess.run([sys.executable, "-c", probe, str(target)], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
