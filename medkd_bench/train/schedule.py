"""Learning-rate schedules and the early-stopping rule that ends a run on a validation plateau.

Two schedules, chosen by :class:`~medkd_bench.specs.TrainSettings.early_stopping`:

* a **fixed** length (``--epochs N``): linear warm-up, then a cosine decay to a floor over
  exactly N epochs, as before;
* **until a plateau** (the default): the length is not known in advance, so a cosine that
  needs it cannot be used. Warm-up, then a constant rate while validation accuracy still
  improves; once it has not improved by ``min_delta`` for ``patience`` epochs and at least
  ``patience_steps`` optimiser steps (or the epoch
  cap is near), a linear cool-down to the floor over 20% of the epochs run so far, then stop.
  This is the warmup-stable-decay schedule (Zhai et al., 2022, arXiv:2106.04560; Hägele
  et al., 2024, arXiv:2405.18392, who show that a cool-down of about 20% matches a cosine
  of the same length), with the decay triggered by early stopping instead of a budget.
  The weights of the best validation epoch are kept either way (:func:`~medkd_bench.train.loop.fit`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from medkd_bench.specs import TrainSettings

#: Why a model stopped training: its validation accuracy plateaued; it reached its epoch cap
#: while still improving; or it ran a fixed number of epochs (``--epochs``), convergence unknown.
STOP_REASONS = ("plateau", "epoch-cap", "fixed")


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def cooldown_epochs(epochs_run: int, fraction: float) -> int:
    """Length of the cool-down that follows ``epochs_run`` epochs: ``fraction`` of them, at least one."""
    return max(1, math.ceil(fraction * epochs_run - 1e-9))


def steps_per_pass(n_train: int, batch_size: int) -> int:
    """Optimiser steps of one pass over ``n_train`` images, as the schedule counts them.

    ``ceil``: one more than run when the last batch would hold a single image (it is dropped), as
    every stored cell's schedule was computed; changing it would change cells without changing their hash.
    """
    return max(1, math.ceil(n_train / batch_size))


def passes_per_epoch(n_train: int, settings: TrainSettings) -> int:
    """Passes over the training images that make one epoch: enough for ``settings.min_steps_per_epoch`` steps."""
    return max(1, math.ceil(settings.min_steps_per_epoch / steps_per_pass(n_train, settings.batch_size)))


def steps_per_epoch_of(n_train: int, settings: TrainSettings) -> int:
    """Optimiser steps per epoch as the schedule counts them."""
    return passes_per_epoch(n_train, settings) * steps_per_pass(n_train, settings.batch_size)


def patience_epochs(patience: int, patience_steps: int, steps_per_epoch: int) -> int:
    """Epochs without a gain that make a plateau: ``patience``, or more to make ``patience_steps`` optimiser steps."""
    return max(patience, math.ceil(patience_steps / max(1, steps_per_epoch)))


@dataclass
class PlateauStop:
    """Early stopping on validation accuracy, driving a warmup-stable-decay learning rate.

    :meth:`factor` is the learning-rate multiplier per optimiser step (a ``LambdaLR``
    function); :meth:`end_epoch` reads each epoch's validation accuracy and decides
    when the cool-down starts; :attr:`done` says when training ends and
    :attr:`reason` why (``plateau`` or ``epoch-cap``).
    """

    max_epochs: int
    steps_per_epoch: int
    warmup_epochs: float
    min_ratio: float
    patience: int
    min_delta: float
    cooldown_fraction: float = 0.2
    #: No plateau before this epoch (the cap still applies): a slow start is not a plateau.
    min_epochs: int = 0
    #: The patience is at least this many optimiser steps (:attr:`patience_epochs`).
    patience_steps: int = 0
    best: float = -math.inf
    last_improved: int = 0
    #: Set once the cool-down has begun: its first and last epoch, and why it began.
    cooldown: tuple[int, int] | None = None
    reason: str | None = None
    epoch: int = 0

    def factor(self, step: int) -> float:
        warmup_steps = int(self.warmup_epochs * self.steps_per_epoch)
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if self.cooldown is None:
            return 1.0
        first, last = self.cooldown
        start, end = (first - 1) * self.steps_per_epoch, last * self.steps_per_epoch
        progress = min(1.0, (step - start + 1) / max(1, end - start))
        return 1.0 - (1.0 - self.min_ratio) * progress

    def end_epoch(self, epoch: int, val_accuracy: float) -> None:
        """Record epoch ``epoch``'s validation accuracy; start the cool-down on a plateau or near the cap."""
        self.epoch = epoch
        if val_accuracy > self.best + self.min_delta:
            self.best, self.last_improved = val_accuracy, epoch
        elif val_accuracy > self.best:  # a gain below min_delta moves the best, not the patience clock
            self.best = val_accuracy
        if self.cooldown is not None:
            return
        length = cooldown_epochs(epoch, self.cooldown_fraction)
        started = epoch >= max(math.ceil(self.warmup_epochs), self.min_epochs)
        if started and epoch - self.last_improved >= self.patience_epochs and epoch < self.max_epochs:
            self.cooldown = (epoch + 1, min(self.max_epochs, epoch + length))
            self.reason = "plateau"
        elif epoch + length >= self.max_epochs:
            self.cooldown = (epoch + 1, self.max_epochs)
            self.reason = "epoch-cap"

    @property
    def patience_epochs(self) -> int:
        """Epochs without a gain that make a plateau (:func:`patience_epochs`)."""
        return patience_epochs(self.patience, self.patience_steps, self.steps_per_epoch)

    @property
    def done(self) -> bool:
        """Whether training ends after the epoch last passed to :meth:`end_epoch`."""
        return self.epoch >= self.max_epochs or (self.cooldown is not None and self.epoch >= self.cooldown[1])
