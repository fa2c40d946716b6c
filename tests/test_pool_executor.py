"""The worker-pool executor (``--jobs N``): whole cells in worker processes, timings taken afterwards.

That a pool writes the rows a one-thread local run writes, and that only its driver opens the
store, times, explains and renders, is tested on one pool run in ``tests/test_one_writer.py``.
"""

from pathlib import Path

import pytest
import torch

from medkd_bench.cli.executors import resolve_jobs
from medkd_bench.errors import MedkdError
from medkd_bench.run.cells import Cell
from medkd_bench.run.executors.pool import cell_dependencies
from medkd_bench.run.store import Store
from tests.helpers import QUICK, TINY_DATA, TWO_DATASETS, plugin_fixture


def _cells(store_path: Path) -> dict[tuple, object]:
    with Store(store_path) as store:
        return {(c.dataset, c.method, c.teacher, c.student): c for c in store.cells()}


def test_kd_cells_wait_for_their_teacher_and_baseline_when_planned():
    teacher = Cell("d", "teacher", teacher="t")
    baseline = Cell("d", "label-only", student="s")
    kd = Cell("d", "kd", teacher="t", student="s")
    other = Cell("e", "teacher", teacher="t")
    assert cell_dependencies(kd, {teacher, baseline, kd, other}) == [teacher, baseline]
    assert cell_dependencies(kd, {kd, teacher}) == [teacher]  # a baseline outside the plan is not waited for
    assert cell_dependencies(teacher, {teacher, kd}) == [] and cell_dependencies(baseline, {baseline}) == []


def test_jobs_option_values():
    assert resolve_jobs("3", "cpu", cells=10) == 3
    assert resolve_jobs("auto", "cpu", cells=1) == 1  # one cell: no pool to start
    expected = 2 if torch.get_num_threads() >= 2 else 1
    assert resolve_jobs("auto", "cpu", cells=10) == expected
    for bad, says in (("0", "--jobs 0: expected at least 1"), ("two", "--jobs 'two': expected a whole number")):
        with pytest.raises(MedkdError, match=says):
            resolve_jobs(bad, "cpu", cells=10)


# What the kernel's out-of-memory killer does to a worker.
@pytest.mark.slow
def test_a_dying_worker_fails_only_its_own_cell(run_cli, dirs, tmp_path):
    result = run_cli(["run", "--plugin", plugin_fixture("dying_teacher"), "--methods", "kd", "--teachers", "dies,visformer-s", "--students", "ofa-595",
                      "--datasets", "synthetic-cxr", "--explainers", "grad-cam", *TINY_DATA, "--jobs", "2", *dirs])
    assert result.exit_code == 1
    assert "3 trained, 0 already done, 2 failed" in result.out
    cells = _cells(tmp_path / "work" / "runs.sqlite")
    assert "worker process died running this cell (exit code 3;" in cells[("synthetic-cxr", "teacher", "dies", "")].error
    assert "teacher 'dies' has not been trained" in cells[("synthetic-cxr", "kd", "dies", "ofa-595")].error
    for key in (("synthetic-cxr", "teacher", "visformer-s", ""), ("synthetic-cxr", "kd", "visformer-s", "ofa-595")):
        assert cells[key].status == "done" and cells[key].metrics["latency_ms"] > 0


def test_a_run_times_earlier_runs_untimed_cells_before_its_own(run_cli, dirs, quick_run, tmp_path, monkeypatch):
    """A run stopped during its cells (every session of a long reference run is) still times what earlier runs finished.

    The timing pass used to run only after the last cell, so a matrix resumed in parts never reached it
    and its rows stayed "not timed yet" on every page. Before starting its cells nothing of the run
    trains, so it times them then too.
    """
    from medkd_bench.run.executors.local import LocalExecutor
    from medkd_bench.run.executors.pool import PoolExecutor

    with Store(tmp_path / "work" / "runs.sqlite") as store:
        kd = next(c for c in store.cells() if c.method == "kd")
        metrics = {k: v for k, v in kd.metrics.items() if k not in ("latency_ms", "throughput")}
        # A share no retake can match: a missing timing is filled whatever the leftover share says (the
        # rule that keeps a quieter stored timing is for complete ones).
        metrics["latency_cpu_share"] = 2.0
        store.finish(kd.hash, metrics, kd.timings, kd.artifacts)

    def stopped(self, runner, cells):
        raise KeyboardInterrupt  # the session's end, while the first new cell trains

    for executor in (LocalExecutor, PoolExecutor):
        monkeypatch.setattr(executor, "run", stopped)
    result = run_cli([*QUICK, "--seeds", "2", *dirs])  # seed 1's cells are new: the run has cells to train
    assert result.exit_code == 130, result.err
    with Store(tmp_path / "work" / "runs.sqlite") as store:
        again = store.get(kd.hash)
    assert again.metrics["latency_ms"] > 0 and again.metrics["throughput"] > 0
    assert again.metrics["accuracy"] == kd.metrics["accuracy"]


def _start_two_workers(tmp_path: Path):
    """A ``--jobs 2`` run of long cells in its own session, returned once both workers are training."""
    import sqlite3
    import subprocess
    import sys
    import time

    work = tmp_path / "work"
    args = [sys.executable, "-m", "medkd_bench.cli", *TWO_DATASETS, "--epochs", "200", "--jobs", "2",
            "--work-dir", str(work), "--leaderboard-dir", str(tmp_path / "boards")]
    proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    running = 0
    while time.time() < deadline and running < 2:  # the driver handed both workers a cell
        time.sleep(0.5)
        if (work / "runs.sqlite").is_file():
            with sqlite3.connect(work / "runs.sqlite") as db:
                try:
                    running = db.execute("SELECT count(*) FROM cells WHERE status='running'").fetchone()[0]
                except sqlite3.OperationalError:  # the file exists, its schema not yet
                    continue
    assert running == 2, "the workers did not start"
    if Path("/proc/self/stat").is_file():  # and both are past their start-up, into training
        deadline = time.time() + 240
        while time.time() < deadline:
            busy = _worker_cpu_seconds(proc.pid)
            if len(busy) == 2 and min(busy) >= WORKER_BUSY_CPU_S:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the workers did not start training (CPU seconds: {busy})")
    return proc, work


#: CPU seconds a pool worker has used once it trains: importing torch and timm and building the model take fewer.
WORKER_BUSY_CPU_S = 8.0


def _worker_cpu_seconds(pgid: int) -> list[float]:
    """CPU seconds used so far by each pool worker (``--multiprocessing-fork``) of process group ``pgid``."""
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    used = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z" and b"--multiprocessing-fork" in cmdline:
            used.append((int(fields[11]) + int(fields[12])) / ticks)  # utime + stime
    return used


def _alive_in_group(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` that still run (zombies excluded), read from /proc."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads processes from /proc (Linux)")
@pytest.mark.parametrize("signame", ["SIGKILL", "SIGTERM"])
def test_workers_die_with_their_driver_and_write_nothing(tmp_path, signame):
    """kill -9 (or a CI cancel's SIGTERM) of the driver alone: its workers end at once and record nothing.

    Before, the orphaned workers finished their cells and recorded them done while the
    next run held the work-dir lock, then slept forever at 1-2 GB each.
    """
    import os
    import signal
    import time

    proc, work = _start_two_workers(tmp_path)
    os.kill(proc.pid, getattr(signal, signame))
    proc.communicate(timeout=60)
    deadline = time.time() + 10
    while _alive_in_group(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive_in_group(proc.pid), "workers outlived their driver"
    with Store(work / "runs.sqlite") as store:
        assert {c.status for c in store.cells()} == {"running"}  # nobody finished or failed a cell after the kill


@pytest.mark.slow
@pytest.mark.parametrize("whom", ["group", "driver"])
def test_ctrl_c_stops_the_pool_and_marks_cells_interrupted(tmp_path, whom):
    """SIGINT to the process group (a terminal's Ctrl-C) or to the driver alone (a supervisor, ``kill -INT``):
    every process ends promptly, nothing hangs, the cells in flight are marked interrupted.

    Before the driver stopped its workers itself, SIGINT to the driver alone waited for the running
    cells to finish (here 200 epochs), and SIGINT to the group hung now and then in CI.
    """
    import os
    import signal
    import time

    proc, work = _start_two_workers(tmp_path)
    if whom == "group":
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends the foreground group on Ctrl-C
    else:
        os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: finished cells are kept in the store; rerun to resume" in err
    with Store(work / "runs.sqlite") as store:
        statuses = {(c.dataset, c.method): (c.status, c.error) for c in store.cells()}
    assert statuses and all(s == ("failed", "interrupted") for s in statuses.values()), statuses
    gone = time.time() + 15  # no worker outlives the driver (multiprocessing's helpers end within moments)
    while time.time() < gone:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("processes of the run are still alive 15 s after the driver exited")


@pytest.mark.slow
def test_a_pool_run_shows_every_workers_epochs_phases_and_time_left_and_students_train_while_teachers_explain(
        run_cli, dirs, monkeypatch, tmp_path):
    """Workers send their cells' starts, epochs and phases down their pipes as they happen (issue 30).

    And a distilled cell trains as soon as its teacher's checkpoint exists: only its explanations read its
    teacher's and baseline's maps. It used to wait for their explanations too, and in a quick matrix one worker
    sat idle for the 50 s of Score-CAM on the teacher. Here the teacher's explanation takes 8 s more (a fixture
    explainer): the student starts training before it ends, and its own explanations follow it, compared with
    the teacher's maps, and are stored."""
    import medkd_bench.cli.progress as progress

    calls: list[tuple] = []

    class Recording(progress.RichReporter):
        def cell_started(self, cell, index, total, epochs):
            calls.append(("started", cell.method, epochs))
            super().cell_started(cell, index, total, epochs)

        def epoch_done(self, cell, epoch, epochs, row):
            calls.append(("epoch", cell.method, epoch, self.eta.text() if self.eta else ""))
            super().epoch_done(cell, epoch, epochs, row)

        def phase(self, text):
            calls.append(("phase", text))
            super().phase(text)

    monkeypatch.setattr(progress, "RichReporter", Recording)
    args = [*TWO_DATASETS, "--datasets", "synthetic-cxr", "--epochs", "2", "--plugin",
            plugin_fixture("slow_teacher_explainer"), *dirs]
    args[args.index("--jobs") + 1] = "2"
    args[args.index("--explainers") + 1] = "slow-grad-cam"
    result = run_cli(args)
    assert result.exit_code == 0, result.err
    assert "3 trained, 0 already done, 0 failed; explanations: 3 computed, 0 failed" in result.out, result.out
    with Store(tmp_path / "work" / "runs.sqlite", readonly=True) as store:
        cells = {c.method: c for c in store.cells()}
        explained = {m: store.explanation(c.hash, "slow-grad-cam", 2, 0) for m, c in cells.items()}
    assert all(e is not None and e.status == "done" for e in explained.values()), explained
    assert cells["kd"].started_at < explained["teacher"].finished_at  # trained while the teacher was explained
    assert explained["kd"].finished_at > explained["teacher"].finished_at  # explained after it
    assert explained["kd"].metrics.get("teacher_checkpoint_sha256")  # compared with the teacher's maps
    for method in ("teacher", "label-only", "kd"):
        assert ("started", method, 2) in calls
        assert [c[2] for c in calls if c[:2] == ("epoch", method)] == [1, 2]
    assert any(c[0] == "phase" and c[1].startswith("explaining synthetic-cxr | teacher visformer-s") for c in calls)
    assert any(c[0] == "phase" and c[1].startswith("timing the trained models") for c in calls)
    # Once a cell has finished this run, the matrix bar says how long is left.
    assert any(c[0] == "epoch" and c[1] == "kd" and c[3].startswith("about ") for c in calls)
    assert "writing the leaderboards" in result.out


@pytest.mark.slow
def test_a_worker_dying_while_explaining_a_cell_trained_earlier_keeps_the_cell_and_a_rerun_explains_it(
        run_cli, dirs, monkeypatch, tmp_path):
    """A distilled cell trained while its teacher was still being explained is explained by a job of its own.

    The worker running that job is killed (the fixture's ``os._exit``, as the out-of-memory killer would):
    the cell stays done with its result, only its explanation is missing, the run says so and exits 1
    (not a bad input, not a success), and a rerun trains nothing and explains it."""
    monkeypatch.setenv("MEDKD_TEST_DIE_DIR", str(tmp_path))
    args = [*TWO_DATASETS, "--datasets", "synthetic-cxr", "--epochs", "2", "--plugin",
            plugin_fixture("slow_teacher_explainer"), *dirs]
    args[args.index("--jobs") + 1] = "2"
    args[args.index("--explainers") + 1] = "slow-grad-cam"
    first = run_cli(args)
    assert (tmp_path / "died").exists(), "the fixture never saw an explain-only job: the KD cell was not deferred"
    assert first.exit_code == 1, first.out
    assert "3 trained, 0 already done, 0 failed; explanations: 2 computed, 1 failed" in first.out, first.out
    assert "explaining it did not finish: worker process died" in first.out
    store_path = tmp_path / "work" / "runs.sqlite"
    with Store(store_path, readonly=True) as store:
        kd = next(c for c in store.cells() if c.method == "kd")
        assert kd.status == "done" and kd.metrics["accuracy"] >= 0 and not kd.error
        assert store.explanation(kd.hash, "slow-grad-cam", 2, 0) is None or \
            store.explanation(kd.hash, "slow-grad-cam", 2, 0).status != "done"
    again = run_cli(args)
    assert again.exit_code == 0, again.out
    assert "0 trained, 3 already done, 0 failed; explanations: 1 computed, 0 failed" in again.out, again.out
    with Store(store_path, readonly=True) as store:
        kept = store.get(kd.hash)  # not trained again (its timing may be retaken: the first was beside training)
        assert kept.artifacts == kd.artifacts and kept.metrics["accuracy"] == kd.metrics["accuracy"]
        explained = store.explanation(kd.hash, "slow-grad-cam", 2, 0)
    assert explained is not None and explained.status == "done"
    assert explained.metrics.get("teacher_checkpoint_sha256")


def test_time_left_comes_from_comparable_cells_in_the_store(quick_run):
    from medkd_bench.run.estimate import MatrixEta, measured_seconds

    with Store(quick_run / "work" / "runs.sqlite") as store:
        explaining: dict[str, float] = {}
        for e in store.explanations():  # a cell's time includes its explanations'
            explaining[e.cell_hash] = explaining.get(e.cell_hash, 0.0) + e.metrics["seconds"]
        done = {(c.dataset, c.method, c.teacher, c.student): c.timings["total_s"] + explaining.get(c.hash, 0.0)
                for c in store.cells()}
        fresh = [Cell("synthetic-cxr", "teacher", teacher="visformer-s", seed=5),
                 Cell("synthetic-histo", "label-only", student="ofa-595"),  # same model, other dataset
                 Cell("synthetic-cxr", "teacher", teacher="vgg19")]  # never measured
        estimates = measured_seconds(store, fresh)
    assert estimates[fresh[0]] == done[("synthetic-cxr", "teacher", "visformer-s", "")]
    assert estimates[fresh[1]] == done[("synthetic-cxr", "label-only", "", "ofa-595")]
    assert estimates[fresh[2]] is None
    now = [100.0]
    eta = MatrixEta(estimates, jobs=2, clock=lambda: now[0])
    mean_known = (estimates[fresh[0]] + estimates[fresh[1]]) / 2
    assert eta.seconds_left() == pytest.approx((estimates[fresh[0]] + estimates[fresh[1]] + mean_known) / 2)
    eta.start(fresh[0])
    now[0] += 1.0
    eta.finish(fresh[0], trained=True)
    assert eta.seconds_left() == pytest.approx((estimates[fresh[1]] + mean_known) / 2)
    assert MatrixEta({fresh[2]: None}, 1, lambda: 0.0).text() == "time left: after the first cell"


#: A pool worker as ``--jobs`` starts one (spawned, set up by ``worker_setup``), stopped mid-cell as Ctrl-C stops it.
STOPPED_WORKER = '''
import multiprocessing, sys, time
from pathlib import Path
from medkd_bench.run.executors.worker import WorkerRecipe, worker_setup
from medkd_bench.run.run_options import RunOptions

def child(conn, work):
    worker_setup(WorkerRecipe((), RunOptions(work_dir=Path(work)), device="cpu"))
    import tqdm
    tqdm.tqdm(range(1), disable=True)  # what fvcore's batch-norm recalibration builds every epoch
    conn.send("bar built")
    time.sleep(120)

if __name__ == "__main__":
    ours, theirs = multiprocessing.Pipe()
    worker = multiprocessing.get_context("spawn").Process(target=child, args=(theirs, sys.argv[1]))
    worker.start()
    assert ours.recv() == "bar built"
    worker.terminate()
    worker.join()
'''


@pytest.mark.slow
def test_a_stopped_worker_leaves_no_semaphore_behind(tmp_path):
    """Any tqdm, even a disabled one, made a multiprocessing lock in the worker; a worker stopped by Ctrl-C
    left that semaphore to Python's resource tracker, which warned "2 leaked semaphore objects" at exit."""
    import subprocess
    import sys

    script = tmp_path / "stopped_worker.py"
    script.write_text(STOPPED_WORKER)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "work")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "leaked semaphore" not in proc.stderr, proc.stderr

