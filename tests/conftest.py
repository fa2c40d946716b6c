"""Shared fixtures: a CLI runner and settings for tiny, fast, real runs.

Tests train the real built-in models (timm, ofa) on a tiny slice of the
embedded synthetic data at 32 px for one epoch: small enough for CI on two
cores, real enough that every component (fvcore, grad-cam, SQLite, Jinja2,
matplotlib) runs for real.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from medkd_bench.cli import main

# Searched students (`medkd-bench student search`) are registered from $MEDKD_STUDENTS, else from
# .medkd/students/ in the current folder; an empty value registers none, so the suite does not depend
# on what a developer searched in this checkout. Set at import: some tests load the registry then.
os.environ["MEDKD_STUDENTS"] = ""

TINY_DATA = [
    "--dataset-option", "synthetic-cxr.n_train=24",
    "--dataset-option", "synthetic-cxr.n_val=9",
    "--dataset-option", "synthetic-cxr.n_test=9",
    "--dataset-option", "synthetic-histo.n_train=20",
    "--dataset-option", "synthetic-histo.n_val=10",
    "--dataset-option", "synthetic-histo.n_test=10",
    "--img-size", "32",
    "--epochs", "1",
    "--latency-runs", "3",
    "--explain-images", "3",
    "--sanity-images", "2",
    # One process: tests/test_pool_executor.py covers worker pools (each costs seconds of start-up).
    "--jobs", "1",
]


def teacher_plugin(name: str, build_body: str, imports: str = "") -> str:
    """The source of a one-teacher plugin file whose ``build(num_classes, img_size)`` runs ``build_body``."""
    return (f"{imports}\nfrom medkd_bench import TeacherSpec, hookimpl, last_module\n\n"
            f"def build(num_classes, img_size):\n    {build_body}\n\n"
            f"@hookimpl\ndef register_teachers(register):\n"
            f"    register(TeacherSpec(name={name!r}, build=build, target_layers=last_module('x')))\n")


@dataclass
class CliResult:
    exit_code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys):
    def run(args: Sequence[str]) -> CliResult:
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def dirs(tmp_path: Path) -> list[str]:
    return ["--work-dir", str(tmp_path / "work"), "--leaderboard-dir", str(tmp_path / "boards")]


QUICK = ["run", "--matrix", "quick", "--teachers", "visformer-s", *TINY_DATA]


@pytest.fixture(scope="session")
def quick_run_template(tmp_path_factory) -> Path:
    """One finished quick matrix (teacher, baseline, KD) with every explainer, trained once per test session."""
    root = tmp_path_factory.mktemp("quick")
    code = 0
    try:
        main([*QUICK, "--explainers", "all", "--work-dir", str(root / "work"), "--leaderboard-dir", str(root / "boards")])
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 0
    return root


@pytest.fixture
def quick_run(quick_run_template: Path, tmp_path: Path) -> Path:
    """A private copy of the finished quick matrix in this test's tmp_path (same layout as ``dirs``)."""
    shutil.copytree(quick_run_template / "work", tmp_path / "work")
    shutil.copytree(quick_run_template / "boards", tmp_path / "boards")
    return tmp_path
