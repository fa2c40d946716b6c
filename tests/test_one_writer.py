"""One writer: only the driver process writes the run store, and every executor writes the same rows.

Pool workers (and Ray tasks) compute cells and write their files; they hand
what they computed back to the driver, which records it (that Ray writes the
local executor's rows is tested in ``tests/test_ray_executor.py``). The check is real, not
a mock: every Python process of a pool run (the driver started as a child
here, and each worker it spawns) loads a ``sitecustomize`` that logs each
``sqlite3.connect`` through an audit hook (PEP 578), with its process id.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medkd_bench.run.store import Store
from tests.helpers import TWO_DATASETS, assert_same_rows, run_main

#: Every test here runs a matrix (local, pool or Ray) or spawns processes: 5 minutes of the fast tier.
pytestmark = pytest.mark.slow

MATRIX = TWO_DATASETS

#: Loaded by every Python process started with this folder on PYTHONPATH: logs its start and its SQLite opens.
SITECUSTOMIZE = '''
import os
import sys

_LOG = os.environ.get("MEDKD_TEST_SQLITE_LOG")
if _LOG:
    _PID = os.getpid()

    def _log(line):
        with open(os.path.join(_LOG, f"{_PID}.log"), "a", encoding="utf-8") as fh:
            fh.write(line + "\\n")

    def _hook(event, args):
        if event == "sqlite3.connect" and os.getpid() == _PID:
            _log("connect\\t" + str(args[0]))

    _log("started\\t" + " ".join(sys.argv))
    sys.addaudithook(_hook)
'''


def _logged_processes(log_dir: Path) -> dict[int, list[tuple[str, str]]]:
    """Per process id, its logged (event, detail) lines."""
    out: dict[int, list[tuple[str, str]]] = {}
    for path in log_dir.glob("*.log"):
        out[int(path.stem)] = [tuple(line.split("\t", 1)) for line in path.read_text().splitlines()]
    return out


def _logging_env(tmp: Path) -> tuple[dict[str, str], Path]:
    hook_dir, log_dir = tmp / "hook", tmp / "log"
    hook_dir.mkdir()
    log_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ, MEDKD_TEST_SQLITE_LOG=str(log_dir),
               PYTHONPATH=os.pathsep.join(p for p in (str(hook_dir), os.environ.get("PYTHONPATH")) if p),
               # One thread in the driver, so one in each of its two workers and in what the driver explains
               # and times, as in the local reference run: and no more threads than a test process's share of
               # the cores (with two, this run took 59 s instead of 36 beside one busy core, as under pytest-xdist).
               OMP_NUM_THREADS="1")
    return env, log_dir


def _is_pool_worker(lines: list[tuple[str, str]]) -> bool:
    return any(event == "started" and "--multiprocessing-fork" in detail for event, detail in lines)


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory) -> tuple[Path, Path, int, str]:
    """The matrix with ``--jobs 2``, driver and workers logging their SQLite opens: (work dir, log dir, driver pid, out)."""
    tmp = tmp_path_factory.mktemp("pool")
    env, log_dir = _logging_env(tmp)
    args = [*MATRIX, "--jobs", "2", "--work-dir", str(tmp / "work"), "--leaderboard-dir", str(tmp / "boards")]
    proc = subprocess.Popen([sys.executable, "-m", "medkd_bench.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, out + err
    return tmp / "work", log_dir, proc.pid, out


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    """The same matrix in one process with one thread: the reference rows."""
    tmp = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = run_main([*MATRIX, "--work-dir", str(tmp / "work"), "--leaderboard-dir", str(tmp / "boards")])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return tmp / "work"


def test_the_audit_hook_sees_a_spawned_process_open_the_store(tmp_path):
    """The check below is only as good as its hook: a spawned process that opens a store is logged."""
    env, log_dir = _logging_env(tmp_path)
    script = ("import multiprocessing as mp\n"
              "from medkd_bench.run.store import Store\n"
              "def child(path):\n"
              "    Store(path).close()\n"
              "if __name__ == '__main__':\n"
              "    p = mp.get_context('spawn').Process(target=child, args=[__import__('sys').argv[1]])\n"
              "    p.start(); p.join(); raise SystemExit(p.exitcode)\n")
    (tmp_path / "spawn_store.py").write_text(script)
    store = tmp_path / "runs.sqlite"
    proc = subprocess.run([sys.executable, str(tmp_path / "spawn_store.py"), str(store)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    workers = [lines for lines in _logged_processes(log_dir).values() if _is_pool_worker(lines)]
    assert [[d for e, d in lines if e == "connect"] for lines in workers] == [[str(store)]]


def test_no_pool_worker_opens_the_store(pool_run):
    """Every SQLite open of the run store, for writing or reading, happens in the driver process."""
    work, log_dir, driver, out = pool_run
    assert "in 2 worker processes" in out and "6 trained, 0 already done, 0 failed" in out
    processes = _logged_processes(log_dir)
    workers = [pid for pid, lines in processes.items() if _is_pool_worker(lines)]
    assert len(workers) == 2, processes  # both workers ran with the hook loaded
    store = str(work / "runs.sqlite")
    opened_by = {pid for pid, lines in processes.items() for event, detail in lines
                 if event == "connect" and store in detail}
    assert opened_by == {driver}
    with Store(work / "runs.sqlite") as db:
        assert {c.status for c in db.cells()} == {"done"} and len(db.explanations()) == 6


def test_the_pool_writes_the_local_executors_rows(local_run, pool_run):
    assert_same_rows(local_run, pool_run[0], cells=6)


def test_the_driver_times_explains_and_renders_after_the_pool(pool_run):
    """Workers train and score; the driver times each architecture once, explains, and draws the pages."""
    work, _, _, out = pool_run
    assert "in 2 worker processes, 1 thread(s) each" in out
    assert "6 trained, 0 already done, 0 failed; explanations: 6 computed, 0 failed" in out
    with Store(work / "runs.sqlite") as store:
        cells = {(c.dataset, c.method): c for c in store.cells()}
        explained = store.explanations()
    for cell in cells.values():
        assert cell.metrics["latency_ms"] > 0 and cell.metrics["throughput"] > 0 and cell.metrics["gmacs"] > 0
        # Trained in a one-thread worker; timed by the driver (one thread too) once the workers are gone.
        assert "1 thread," in cell.metrics["machine"] and "1 thread," in cell.metrics["timed_on"]
    for dataset in ("synthetic-cxr", "synthetic-histo"):  # one timing per architecture and dataset
        assert cells[(dataset, "label-only")].metrics["latency_ms"] == cells[(dataset, "kd")].metrics["latency_ms"]
    assert len(explained) == 6 and {e.status for e in explained} == {"done"}
    kd_agreement = [e for e in explained if "agreement" in e.metrics]
    assert len(kd_agreement) == 2 and all("label_only_agreement" in e.metrics for e in kd_agreement)
    for dataset in ("synthetic-cxr", "synthetic-histo"):
        board = (work.parent / "boards" / f"{dataset}.md").read_text()
        kd_hash = cells[(dataset, "kd")].hash
        assert "| visformer-s |" in board and f"panels/{dataset}/grad-cam/visformer-s__ofa-595__kd__{kd_hash}-2.png" in board


def test_a_pool_rerun_of_a_finished_matrix_trains_nothing(run_cli, pool_run):
    work, _, _, _ = pool_run
    again = run_cli([*MATRIX, "--jobs", "2", "--work-dir", str(work), "--leaderboard-dir", str(work.parent / "boards")])
    assert "0 trained, 6 already done, 0 failed; explanations: 0 computed" in again.out
