"""Tuning in a pool worker (``run --tune N --jobs M``): one arm's whole study per job, its trials sent back as they end.

Arms are independent (each its own seeded study), so M workers tune M arms at
once, on a share of the threads each as cells train; an arm's trials stay in
order, since each proposal depends on the results before it. In one process
with all the threads, a small student's trial keeps few of them busy: on 2
cores two one-thread processes train 1.16x faster than one two-thread one, and
the gap grows with the cores.

A worker never opens the run store (the one-writer rule): its job carries the
arm's stored trials, and each trial it finishes goes down the pipe at once for
the driver to store, so an interrupted tuning resumes exactly as an in-process
one does (:mod:`~medkd_bench.tune.study`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from medkd_bench.run.computer import CellComputer
from medkd_bench.run.records import TrialRecord
from medkd_bench.tune.space import Arm
from medkd_bench.tune.study import ArmTuning, Tuner


@dataclass(frozen=True)
class TuneJob:
    """Tune ``arm`` with ``budget`` trials on ``seed``; ``stored``: its trials already in the store (any study)."""

    arm: Arm
    budget: int
    seed: int
    stored: tuple[TrialRecord, ...] = ()


@dataclass(frozen=True)
class TrialDone:
    """A worker's trial, finished (complete, pruned or failed): the driver stores it before anything else."""

    trial: TrialRecord


@dataclass(frozen=True)
class Said:
    """A line the tuner prints (a trial's result), for the driver to print."""

    line: str


@dataclass
class ArmTuned:
    """A tuning job's last reply: what tuning its arm chose."""

    result: ArmTuning


class _SentTrials:
    """The worker's :class:`~medkd_bench.tune.study.TrialLog`: the job's stored trials, new ones sent down the pipe."""

    def __init__(self, stored: tuple[TrialRecord, ...], send: Callable[[object], None]):
        self.stored, self.send = stored, send

    def trials(self, study: str | None = None) -> list[TrialRecord]:
        return sorted((t for t in self.stored if study is None or t.study == study), key=lambda t: (t.study, t.number))

    def save_trial(self, trial: TrialRecord) -> None:
        self.send(TrialDone(trial))


def tune_arm(computer: CellComputer, job: TuneJob, send: Callable[[object], None]) -> ArmTuned:
    """Run ``job``'s study in this worker; trials and printed lines are sent as they come, the choice returned."""
    tuner = Tuner(computer, _SentTrials(job.stored, send), job.budget, job.seed, say=lambda line: send(Said(line)))
    return ArmTuned(tuner.tune(job.arm))
