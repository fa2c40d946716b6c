"""One tuning trial: train an arm's student at one point of its space, on a shorter schedule, scored on validation.

A trial never reads the test split: :func:`~medkd_bench.train.loop.fit` scores
validation only, and nothing here calls the scoring the final cells use.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from medkd_bench.run.cells import Cell, teacher_cell_of
from medkd_bench.run.computer import CellComputer
from medkd_bench.run.memory import out_of_memory_named
from medkd_bench.specs import TrainSettings
from medkd_bench.train.loop import EpochCallback, TrainResult, fit, steps_per_epoch_of
from medkd_bench.train.schedule import patience_epochs

#: A trial's epoch cap as a share of the final cells' cap (at least ``min_epochs`` plus the patience): ranking
#: points needs less than training the chosen one to convergence, and pruning stops the poor ones sooner.
TRIAL_FRACTION = 0.5


def trial_settings(settings: TrainSettings, n_train: int) -> TrainSettings:
    """The trial schedule: early stopping with a shorter cap; a fixed schedule (``--epochs N``) as it is.

    The cap leaves room for a plateau as :class:`~medkd_bench.train.schedule.PlateauStop` counts it on
    ``n_train`` images: the patience in epochs, or more epochs to make its optimiser steps.
    """
    if not settings.early_stopping:
        return settings
    patience = patience_epochs(settings.patience, settings.patience_steps,
                               steps_per_epoch_of(n_train, settings))
    cap = max(settings.min_epochs + patience, math.ceil(settings.epochs * TRIAL_FRACTION))
    return settings.replace(epochs=min(settings.epochs, cap))


def trial_schedule(computer: CellComputer, cell: Cell, params: dict[str, Any]) -> TrainSettings:
    """``cell``'s training settings with ``params``, on the trial schedule for its dataset's training images."""
    n_train = len(computer.data(cell.dataset).splits["train"].labels)
    return trial_settings(computer.cell_settings(cell, params), n_train)


def run_trial(computer: CellComputer, cell: Cell, params: dict[str, Any],
              on_epoch: EpochCallback | None = None) -> TrainResult:
    """Train ``cell``'s student with ``params`` on the trial schedule; its validation history in the result.

    Seeded like the final cell (initial weights and batch order from ``cell.seed``),
    so the default point's trial is the final default cell's training, cut short.
    """
    spec = computer.model_spec(cell)
    settings = trial_schedule(computer, cell, params)
    runtime = computer.runtime_for(spec)
    data = computer.data(cell.dataset)
    if cell.distilled:  # the teacher's soft targets first, as compute() does: they may run the teacher
        computer.soft_targets(teacher_cell_of(cell))
    torch.manual_seed(cell.seed)
    model = computer.build_model(spec, data)
    distill = computer.distillation(cell, model, spec, settings, data, params) if cell.distilled else None
    with out_of_memory_named(cell, settings, runtime):
        return fit(model, data, settings, runtime, seed=cell.seed, distill=distill, on_epoch=on_epoch)
