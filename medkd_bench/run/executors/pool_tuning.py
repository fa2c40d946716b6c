"""``run --tune N`` in the ``--jobs M`` worker pool: M arms tuned at once, each arm's trials in order in one worker.

The pool's machinery is the cells' (:mod:`.pool`): spawned workers tied to the
driver's life, Ctrl-C as a flag, a dead worker noticed by its process sentinel.
What differs is the job (a :class:`~medkd_bench.tune.worker.TuneJob`, one arm's
whole study) and what comes back: each finished trial, which the driver stores
at once (so an interrupted tuning resumes without repeating it), the lines the
tuner prints, and last the arm's choice. A worker that dies fails its arm:
tuning goes on with the others, and the run then stops before any final cell
(:class:`TuningResult` names the arm), since an arm left at its default would
not be tuned like the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from medkd_bench.run.executors.pool import (
    DIED,
    PoolExecutor,
    PoolSchedule,
    WorkerSlot,
)
from medkd_bench.run.executors.pool_worker import WorkerError
from medkd_bench.run.runner import MatrixRunner
from medkd_bench.tune.space import Arm
from medkd_bench.tune.study import ArmTuning, TuningResult
from medkd_bench.tune.worker import ArmTuned, Said, TrialDone, TuneJob


def tune_in_pool(executor: PoolExecutor, runner: MatrixRunner, arms: Sequence[Arm], budget: int, seed: int,
                 say: Callable[[str], None]) -> TuningResult:
    """Tune ``arms`` in ``executor``'s workers (at most one per arm), trials stored by this process as they end."""
    stored = runner.store.trials()
    jobs = [TuneJob(arm, budget, seed, tuple(t for t in stored if t.arm == arm.key)) for arm in arms]
    recipe = replace(executor.recipe, options=runner.options)
    schedule = _TuneSchedule(recipe, max(1, min(executor.jobs, len(jobs))), runner, jobs, say)
    schedule.run()
    by_key = schedule.results
    return TuningResult([by_key[a.key] for a in arms if a.key in by_key], schedule.died)


class _TuneSchedule(PoolSchedule):
    """The driver's bookkeeping of one tuning pool: arms waiting, workers, trials stored as they come."""

    def __init__(self, recipe: Any, jobs: int, runner: MatrixRunner, tune_jobs: list[TuneJob],
                 say: Callable[[str], None]):
        super().__init__(recipe, jobs, runner, [])
        self.tune_jobs, self.say = tune_jobs, say
        self.results: dict[str, ArmTuning] = {}
        self.died: dict[str, str] = {}

    def waiting(self) -> list[tuple[int, Any]]:
        return list(enumerate(self.tune_jobs, start=1))

    def interrupted(self, in_flight: list[Any]) -> None:
        """Ctrl-C: nothing to record; the trials in flight are simply not stored, and a rerun runs them."""

    def start_ready(self, waiting: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
        still = []
        for index, job in waiting:
            if not self._can_take_one():
                still.append((index, job))
                continue
            self.hand_out(job)
        return still

    def receive(self, worker: WorkerSlot) -> object | None:
        """Store each finished trial and print each line as it comes; the job's last reply, or None if not yet."""
        while True:
            message = self.next_message(worker)
            if isinstance(message, TrialDone):
                self.runner.store.save_trial(message.trial)
            elif isinstance(message, Said):
                self.say(message.line)
            else:
                return message

    def settle(self, worker: WorkerSlot, reply: object) -> None:
        job = worker.job
        assert isinstance(job, TuneJob)
        worker.job = None
        if reply is DIED:
            self.died[job.arm.key] = self.retire(worker, "its trials")
        elif isinstance(reply, WorkerError):
            reply.reraise()
        elif isinstance(reply, ArmTuned):
            self.results[job.arm.key] = reply.result
