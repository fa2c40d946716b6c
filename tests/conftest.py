"""Shared fixtures: a CLI runner, scratch folders and one finished quick matrix per session.

The environment is set in :func:`pytest_configure`, before any test imports
the registry: searched students and added datasets come from nowhere (``MEDKD_STUDENTS=""``,
``MEDKD_DATASETS=""``), and
only medkd-bench's own entry points are loaded (``MEDKD_BENCH_LOAD_PLUGINS``),
so a third-party plugin in the developer's environment cannot change results.
Only the discovery tests (``tests/test_plugins.py``) lift that restriction.

Tests that train models end to end carry the ``slow`` marker (``pytest -m "not slow"`` is the
fast tier); a test using the session's finished quick matrix, the tuned matrix or the Ray cluster
is marked here (:data:`SLOW_FIXTURES`), since asking for one trains or starts it the first time.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from filelock import FileLock

from tests.helpers import QUICK, CliResult, run_main


def pytest_configure(config: pytest.Config) -> None:
    # Searched students (`medkd-bench student search`) are registered from $MEDKD_STUDENTS, else from
    # .medkd/students/ in the current folder; an empty value registers none.
    os.environ["MEDKD_STUDENTS"] = ""
    # Datasets added with `medkd-bench datasets add`: from $MEDKD_DATASETS, else .medkd/datasets/; none here.
    os.environ["MEDKD_DATASETS"] = ""
    builtins = [ep.name for ep in importlib.metadata.distribution("medkd-bench").entry_points
                if ep.group == "medkd_bench"]
    os.environ["MEDKD_BENCH_LOAD_PLUGINS"] = ",".join(builtins)
    _share_cores_between_test_processes()


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` (pyproject's addopts) runs one named test file in this process, not in a worker.

    Each file runs in one worker (``--dist loadfile``), so a second process would only add its
    start-up (importing torch), as for each single-file ``pytest`` command in CONTRIBUTING.md.
    ``None``: xdist's own choice, one worker per core.
    """
    named = {Path(arg.split("::", 1)[0]) for arg in config.args}
    return 0 if len(named) == 1 and next(iter(named)).is_file() else None


def _share_cores_between_test_processes() -> None:
    """Under pytest-xdist, give each test process its share of the cores as torch's intra-op threads.

    Each process would otherwise start as many OpenMP threads as there are cores, and two processes
    spinning on two cores run slower than one. ``OMP_NUM_THREADS`` carries the share to the
    ``medkd-bench`` subprocesses some tests start.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    import torch

    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


#: Fixtures whose first use trains models or starts a cluster: every test using one is ``slow``.
SLOW_FIXTURES = frozenset({"quick_run_template", "tuned_run", "ray_cluster"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def run_cli(capsys):
    def run(args: Sequence[str]) -> CliResult:
        code = run_main(args)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def dirs(tmp_path: Path) -> list[str]:
    return ["--work-dir", str(tmp_path / "work"), "--leaderboard-dir", str(tmp_path / "boards")]


@pytest.fixture(scope="session")
def quick_run_template(tmp_path_factory, worker_id: str) -> Path:
    """One finished quick matrix (teacher, baseline, KD) with every explainer, trained once per test session.

    Once for all pytest-xdist workers, not once in each (it was the suite's largest repeated setup, about
    25 s): the first worker to need it trains it under a file lock in the folder the workers share, the
    others wait for it or find it done (pytest-xdist's documented recipe). Tests read it, or copy it
    (:func:`quick_run`); none writes to it.
    """
    if worker_id == "master":  # no xdist: this process alone
        return _train_quick_matrix(tmp_path_factory.mktemp("quick"))
    shared = tmp_path_factory.getbasetemp().parent / "quick-matrix"
    with FileLock(f"{shared}.lock"):
        if not (shared / "trained").is_file():
            shutil.rmtree(shared, ignore_errors=True)  # a worker that failed half-way left a partial one
            _train_quick_matrix(shared)
            (shared / "trained").touch()
    return shared


def _train_quick_matrix(root: Path) -> Path:
    code = run_main([*QUICK, "--explainers", "all", "--work-dir", str(root / "work"),
                     "--leaderboard-dir", str(root / "boards")])
    assert code == 0
    return root


@pytest.fixture
def quick_run(quick_run_template: Path, tmp_path: Path) -> Path:
    """A private copy of the finished quick matrix in this test's tmp_path (same layout as ``dirs``)."""
    shutil.copytree(quick_run_template / "work", tmp_path / "work")
    shutil.copytree(quick_run_template / "boards", tmp_path / "boards")
    return tmp_path
