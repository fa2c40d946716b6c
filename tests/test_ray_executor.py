"""``--executor ray`` on a local Ray cluster started here (2 CPUs, one cluster for the module).

The same quick matrix as the local executor must write the same rows: config hashes,
per-epoch history, test predictions, metrics and explanations. A worker that dies mid-task
(a test plugin whose model calls ``os._exit`` in its first forward pass, as an OOM
kill or a lost node would) must leave the store intact, and its cell must be retried
or, with retries exhausted, recorded as failed and rerun later.
"""

from __future__ import annotations

import os
import sqlite3
import textwrap
from pathlib import Path

import pytest
import torch

from medkd_bench.run.store import Store
from tests.helpers import QUICK, TINY_DATA, assert_one_line_error, assert_same_rows

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'medkd-bench[ray]'; CI installs it)")


@pytest.fixture(scope="module")
def ray_cluster():
    """One local cluster for every test here: Ray's start-up is the slow part on two cores.

    At least as many CPUs as this process has torch threads: a task asking for that many (the
    quick-matrix comparison below) must fit, or Ray would wait for it forever.
    """
    ray.init(num_cpus=max(2, torch.get_num_threads()), object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _cells(work: Path) -> dict[tuple[str, str, str], object]:
    with Store(work / "runs.sqlite") as store:
        return {(c.method, c.teacher, c.student): c for c in store.cells()}


def test_ray_quick_matrix_matches_the_local_executor(run_cli, dirs, tmp_path, quick_run_template, ray_cluster):
    # As many torch threads per task as the local run had (one per test process under pytest-xdist, else
    # two): kernels reduce in another order, and round differently, with another thread count.
    threads = str(torch.get_num_threads())
    ray_args = ["--executor", "ray", "--cpus-per-cell", threads, "--explainers", "grad-cam"]
    result = run_cli([*QUICK, *dirs, *ray_args])
    assert result.exit_code == 0, result.out + result.err
    assert "3 trained, 0 already done, 0 failed; explanations: 3 computed" in result.out
    # Every row the local run wrote (history, predictions, metrics, Grad-CAM's maps and scores), timings aside.
    assert_same_rows(quick_run_template / "work", tmp_path / "work", cells=3, explainers=["grad-cam"])
    remote = _cells(tmp_path / "work")
    for key, other in remote.items():
        assert other.status == "done" and other.timings["attempts"] == 1, key
        assert (tmp_path / "work" / other.artifacts["checkpoint"]).is_file()
    assert f"), {threads} thread" in remote[("teacher", "visformer-s", "")].metrics["machine"]  # ran as such a task
    rerun = run_cli([*QUICK, *dirs, *ray_args])
    assert "0 trained, 3 already done, 0 failed; explanations: 0 computed" in rerun.out


FRAGILE = textwrap.dedent("""
    import os
    from pathlib import Path

    import torch
    from torch import nn

    from medkd_bench import StudentSpec, TeacherSpec, TrainSettings, hookimpl, last_module

    MARKER = Path({marker!r})
    DRIVER_PID = {driver_pid}  # never kill the test process itself


    class Net(nn.Module):
        def __init__(self, num_classes, fragile):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
            self.fragile = fragile

        def forward(self, x):
            if self.fragile and os.getpid() != DRIVER_PID and not MARKER.exists():
                MARKER.write_text(str(os.getpid()))
                os._exit(1)  # the worker process dies mid-task
            return self.head(self.features(x))


    SETTINGS = TrainSettings(epochs=1, batch_size=8)


    @hookimpl
    def register_teachers(register):
        register(TeacherSpec(name="fragile", build=lambda n, s: Net(n, True),
                             target_layers=last_module("features"), train=SETTINGS))


    @hookimpl
    def register_students(register):
        register(StudentSpec(name="tiny", build=lambda n, s: Net(n, False),
                             target_layers=last_module("features"), train=SETTINGS))
""")


def _fragile_run(run_cli, tmp_path: Path, name: str, *extra: str):
    marker = tmp_path / f"{name}.died"
    plugin = tmp_path / f"{name}.py"
    plugin.write_text(FRAGILE.format(marker=str(marker), driver_pid=os.getpid()))
    dirs = ["--work-dir", str(tmp_path / name / "work"), "--leaderboard-dir", str(tmp_path / name / "boards")]
    args = ["run", "--plugin", str(plugin), "--methods", "kd", "--teachers", "fragile", "--students", "tiny", "--datasets",
            "synthetic-cxr", "--explainers", "grad-cam", "--executor", "ray", *TINY_DATA, *dirs, *extra]
    return marker, args, tmp_path / name / "work"


def test_a_killed_worker_is_retried(run_cli, tmp_path, ray_cluster):
    marker, args, work = _fragile_run(run_cli, tmp_path, "retry", "--max-retries", "1")
    result = run_cli(args)
    assert result.exit_code == 0, result.out + result.err
    assert int(marker.read_text()) != os.getpid()  # a Ray worker died, not the driver
    cells = _cells(work)
    assert {c.status for c in cells.values()} == {"done"}
    assert cells[("teacher", "fragile", "")].timings["attempts"] == 2
    assert cells[("kd", "fragile", "tiny")].timings["attempts"] == 1


def test_a_killed_worker_without_retries_fails_its_cell_and_leaves_the_store_intact(run_cli, tmp_path,
                                                                                   ray_cluster):
    marker, args, work = _fragile_run(run_cli, tmp_path, "fail", "--max-retries", "0")
    result = run_cli(args)
    assert result.exit_code == 1
    assert "1 trained, 0 already done, 2 failed" in result.out
    db = sqlite3.connect(work / "runs.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    cells = _cells(work)
    teacher = cells[("teacher", "fragile", "")]
    assert teacher.status == "failed" and teacher.error.startswith("Ray task lost: ")
    assert "worker" in teacher.error.lower()
    kd = cells[("kd", "fragile", "tiny")]
    assert kd.status == "failed" and "teacher 'fragile' has not been trained" in kd.error
    assert cells[("label-only", "", "tiny")].status == "done"

    # The worker dies only once: a rerun retries the failed cells and keeps the finished one.
    rerun = run_cli(args)
    assert rerun.exit_code == 0, rerun.out + rerun.err
    assert "2 trained, 1 already done, 0 failed" in rerun.out


def test_ray_option_errors(run_cli, dirs, ray_cluster):
    local = run_cli(["run", "--max-retries", "2", "--cpus-per-cell", "2", *TINY_DATA, *dirs])
    assert_one_line_error(local, "--cpus-per-cell, --max-retries: only with --executor ray")
    unknown = run_cli(["run", "--executor", "spark", *TINY_DATA, *dirs])
    assert_one_line_error(unknown, "unknown --executor 'spark'")
    gpu = run_cli(["run", "--executor", "ray", "--device", "cuda", *TINY_DATA, *dirs])
    assert_one_line_error(gpu, "needs --gpus-per-cell > 0")
    too_big = run_cli(["run", "--executor", "ray", "--cpus-per-cell", "3", *TINY_DATA, *dirs])
    assert_one_line_error(too_big, "no node of the Ray cluster has that much (2 CPU / 0 GPU)")
