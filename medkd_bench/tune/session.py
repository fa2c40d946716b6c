"""Tuning before a run's final cells: train the teachers, tune every arm, hand back the chosen options.

``run --tune N`` calls :func:`tune_matrix` between planning and running: the
final cells are then the planned ones with each arm's chosen options (a
setting of the run, so they have their own config hashes and their own page).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from medkd_bench.run.cells import Cell, teacher_cell_of
from medkd_bench.run.executors.local import LocalExecutor
from medkd_bench.run.executors.pool import PoolExecutor
from medkd_bench.run.runner import Executor, MatrixRunner
from medkd_bench.tune.space import Arm, arm_of
from medkd_bench.tune.study import ArmTuning, Tuner, TuningResult


def arms_of(cells: Sequence[Cell]) -> list[Arm]:
    """Every arm the planned cells hold, in plan order: the baseline's and one per method and teacher."""
    found = (arm_of(c) for c in cells)
    return list(dict.fromkeys(a for a in found if a is not None))


def tune_matrix(runner: MatrixRunner, cells: Sequence[Cell], executor: Executor | None, budget: int, seed: int,
                say: Callable[[str], None] = lambda line: None) -> TuningResult:
    """Tune every arm of ``cells`` with ``budget`` trials on seed ``seed``; the teachers it needs are run first.

    The teachers are cells of the plan anyway (stored, explained, reused by the
    final cells). The trials run in the ``--jobs`` worker pool, an arm per
    worker (:mod:`~medkd_bench.run.executors.pool_tuning`), or else in this
    process, one after another (Ray's driver too: its tasks are cells).
    """
    arms = arms_of(cells)
    teachers = list(dict.fromkeys(teacher_cell_of(a.cell(seed)) for a in arms if a.teacher))
    if teachers:
        say(f"tuning needs {len(teachers)} trained teacher(s) first")
        runner.run(teachers, executor or LocalExecutor())
        failed = {t.teacher for t in teachers if not runner.store.is_done(runner.computer.hash(t))}
        if failed:  # their distilled cells fail on their own later; tuning them would only fail every trial
            say(f"[yellow]not tuned: the arms of teacher(s) {', '.join(sorted(failed))}, which did not train[/]")
            arms = [a for a in arms if a.teacher not in failed]
    if isinstance(executor, PoolExecutor) and len(arms) > 1:
        from medkd_bench.run.executors.pool_tuning import tune_in_pool

        workers = min(executor.jobs, len(arms))
        say(f"tuning {len(arms)} arm(s), {budget} trial(s) each, on validation (seed {seed}), "
            f"{workers} at a time in worker processes")
        return tune_in_pool(executor, runner, arms, budget, seed, say)
    tuner = Tuner(runner.computer, runner.store, budget, seed, say)
    say(f"tuning {len(arms)} arm(s), {budget} trial(s) each, on validation (seed {seed})")
    return TuningResult([tuner.tune(arm) for arm in arms])


def chosen_options(results: Sequence[ArmTuning]) -> dict[str, dict[str, Any]]:
    """``RunOptions.tuned``: each arm's chosen point, by arm key."""
    return {r.arm.key: dict(r.chosen) for r in results}
