"""``run --tune N``: N trials per arm, chosen on validation, kept in the run store, resumable.

Optuna proposes the points (a seeded TPE sampler, the arm's untuned default
enqueued as trial 0) and prunes poor trials early (successive halving over
epochs); medkd-bench trains them and keeps every finished trial in the run
store. The study itself lives in memory and is rebuilt on every run by
replaying the stored trials in order: a seeded sampler given the same history
proposes the same next point, so an interrupted tuning resumes where it
stopped, repeats no finished trial and chooses exactly what an uninterrupted
one would have. Raising N later continues the same study.

Selection is by the best validation accuracy of a complete trial, ties going
to the earlier trial (so to the default when it ties). The test split is never
read (:mod:`~medkd_bench.tune.trial`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from medkd_bench.errors import MedkdError, one_line
from medkd_bench.run.computer import CellComputer
from medkd_bench.run.config_hash import config_hash
from medkd_bench.run.records import TrialRecord
from medkd_bench.specs import Choice, LogUniform, SearchParam
from medkd_bench.tune.space import Arm, arm_defaults, arm_space, describe
from medkd_bench.tune.trial import TRIAL_FRACTION, run_trial, trial_schedule

#: Bump when how trials are proposed, run or pruned changes: part of every study's key.
TUNING_REVISION = "1"
#: Random points the sampler draws (after the default) before TPE models the results.
STARTUP_TRIALS = 4
#: Successive halving: a trial continues past a rung only if in the best 1/REDUCTION of those that reached it.
REDUCTION = 3


@dataclass
class ArmTuning:
    """What tuning one arm found: every trial, the chosen point, and the default next to it."""

    arm: Arm
    study: str
    budget: int
    trials: list[TrialRecord]
    default: dict[str, Any]
    chosen: dict[str, Any] = field(default_factory=dict)
    best_value: float | None = None
    default_value: float | None = None
    space: dict[str, str] = field(default_factory=dict)


@dataclass
class TuningResult:
    """What tuning a run's arms gave: each arm's choice, in the arms' order, and the arms that could not finish
    (a pool worker died running them: why), which stop the run before its final cells."""

    tuned: list[ArmTuning] = field(default_factory=list)
    died: dict[str, str] = field(default_factory=dict)


class TrialLog(Protocol):
    """Where a tuner reads the trials already run and keeps each new one: the run store, or in a pool worker
    (which never opens the store) the stored trials its job carried and a pipe to the driver, which stores them."""

    def trials(self, study: str | None = None) -> list[TrialRecord]: ...

    def save_trial(self, trial: TrialRecord) -> None: ...


class _Pruned(Exception):
    """Raised from the epoch callback to end a trial the pruner stopped."""


def _distribution(param: SearchParam) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if isinstance(param, Choice):
        return CategoricalDistribution(list(param.values))
    return FloatDistribution(param.low, param.high, log=isinstance(param, LogUniform))


class Tuner:
    """Tunes arms one after another in this process, trials from and into ``store``."""

    def __init__(self, computer: CellComputer, store: TrialLog, budget: int, seed: int,
                 say: Callable[[str], None] = lambda line: None):
        if budget < 1:
            raise MedkdError(f"--tune {budget}: expected at least 1 trial per arm")
        self.computer, self.store, self.budget, self.seed, self.say = computer, store, budget, seed, say

    def space(self, arm: Arm) -> dict[str, SearchParam]:
        student = self.computer.registry.get("student", arm.student)
        method = None if arm.method == "label-only" else self.computer.registry.get("method", arm.method)
        return arm_space(student.train, method)

    def defaults(self, arm: Arm) -> dict[str, Any]:
        student = self.computer.registry.get("student", arm.student)
        if arm.method == "label-only":
            return arm_defaults(student.train, None, {})
        method = self.computer.registry.get("method", arm.method)
        return arm_defaults(student.train, method, self.computer.method_options(arm.method))

    def study_key(self, arm: Arm) -> str:
        """What a trial's result depends on besides its point; not the budget, so a larger N continues."""
        cell = arm.cell(self.seed)
        base = self.computer.config(cell, params={})
        base["model"]["train"] = asdict(trial_schedule(self.computer, cell, params={}))
        return config_hash({"tuning": TUNING_REVISION, "arm": arm.key, "base": base, "fraction": TRIAL_FRACTION,
                            "space": {k: describe(v) for k, v in self.space(arm).items()},
                            "default": self.defaults(arm), "startup": STARTUP_TRIALS, "reduction": REDUCTION})

    def replay(self, arm: Arm) -> ArmTuning | None:
        """What tuning ``arm`` chose, from its stored trials alone; None if some trial is still to train.

        ``run --dry-run --tune N`` uses it: an arm whose N trials are all stored
        has its final cells' options, hence their hashes, known without training.
        """
        if not any(t.arm == arm.key for t in self.store.trials()):  # not begun: no need to prepare its data
            return None
        return self._study(arm, replay_only=True)

    def tune(self, arm: Arm) -> ArmTuning:
        """Run ``arm``'s trials, replaying the stored ones, and choose its options."""
        result = self._study(arm, replay_only=False)
        assert result is not None  # only a replay stops short
        return result

    def _study(self, arm: Arm, replay_only: bool) -> ArmTuning | None:
        """``arm``'s study trial by trial; with ``replay_only``, None at the first trial still to train."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space = self.space(arm)
        distributions = {k: _distribution(v) for k, v in space.items()}
        default = self.defaults(arm)
        key = self.study_key(arm)
        stored = {t.number: t for t in self.store.trials(key)}
        settings = trial_schedule(self.computer, arm.cell(self.seed), params=default)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=STARTUP_TRIALS, multivariate=True)
        pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=settings.min_epochs if settings.early_stopping else 1, reduction_factor=REDUCTION)
        study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
        study.enqueue_trial(default)
        result = ArmTuning(arm, key, self.budget, [], default, space={k: describe(v) for k, v in space.items()})
        for number in range(self.budget):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                trial = study.ask(distributions)
            params = dict(trial.params)
            record = stored.get(number)
            if record is None or record.params != params:
                if replay_only:
                    return None
                record = self._run(arm, key, number, trial, params)
                self.store.save_trial(record)
            else:
                for step, value in record.record.get("intermediate", []):
                    trial.report(value, step)
            state = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
                     "failed": optuna.trial.TrialState.FAIL}[record.state]
            study.tell(trial, record.value if record.state == "complete" else None, state=state)
            result.trials.append(record)
        complete = [t for t in result.trials if t.state == "complete" and t.value is not None]
        if complete:
            best = max(complete, key=lambda t: (t.value, -t.number))
            result.chosen, result.best_value = dict(best.params), best.value
        else:
            result.chosen = dict(default)
            self.say(f"[yellow]tuning {arm.key}: no trial completed; the default options are kept[/]")
        first = result.trials[0] if result.trials else None
        if first is not None and first.state == "complete":
            result.default_value = first.value
        return result

    def _run(self, arm: Arm, key: str, number: int, trial: Any, params: dict[str, Any]) -> TrialRecord:
        """Train one trial; pruned or failed trials are recorded too (they count against the budget)."""
        intermediate: list[tuple[int, float]] = []
        best = 0.0

        def on_epoch(epoch: int, epochs: int, row: dict[str, float]) -> None:
            nonlocal best
            best = max(best, row["val_accuracy"])
            intermediate.append((epoch, best))
            trial.report(best, epoch)
            if trial.should_prune():
                raise _Pruned

        cell = arm.cell(self.seed)
        # The config hash of the final cell this point would give (its trial is that cell cut short).
        record: dict[str, Any] = {"final_hash": config_hash(self.computer.config(cell, params))}
        started, cpu_started = time.perf_counter(), time.process_time()
        state, value = "complete", None
        try:
            result = run_trial(self.computer, cell, params, on_epoch)
            value = result.best_val_accuracy
            record.update(epochs_run=result.epochs_run, stopped=result.stopped, best_epoch=result.best_epoch)
        except _Pruned:
            state = "pruned"
        except MedkdError as exc:  # a point that diverges (NonFiniteError) is a poor point, not a broken run
            state, record["error"] = "failed", one_line(exc)
        record.update(intermediate=intermediate, seconds=round(time.perf_counter() - started, 3),
                      cpu_seconds=round(time.process_time() - cpu_started, 3))
        how = f"val {value:.3f}" if value is not None else state + (f" at epoch {intermediate[-1][0]}"
                                                                   if state == "pruned" and intermediate else "")
        self.say(f"tuning {arm.key}: trial {number + 1}/{self.budget} {how}  "
                 + ", ".join(f"{k}={_short(v)}" for k, v in params.items()))
        return TrialRecord(key, number, arm.key, params, state, value, record)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
