"""How each model on a page was trained, read back from its cells' stored configs.

A reader judging a gain over the label-only student needs the baseline's recipe
next to the teacher's: optimiser, learning rate, weight decay, the stopping
rule and its cap, and how long an epoch is. The text comes from each cell's
config (what it ran with), never from the plugins installed at render time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from medkd_bench.run.store import CellRecord
from medkd_bench.specs import TrainSettings
from medkd_bench.train.schedule import passes_per_epoch, patience_epochs, steps_per_epoch_of

_FIELDS = {f.name for f in dataclasses.fields(TrainSettings)}


def settings_of(train: Mapping[str, Any]) -> TrainSettings:
    """A stored ``train`` config as :class:`TrainSettings` (fields a cell predates take their defaults)."""
    return TrainSettings(**{k: v for k, v in train.items() if k in _FIELDS})


def recipe_text(settings: TrainSettings, n_train: int | None) -> str:
    """One model's recipe in a line: optimiser and its settings, schedule and stopping, epoch length."""
    parts = [f"AdamW, lr {settings.lr:g}, weight decay {settings.weight_decay:g}, batch {settings.batch_size}"]
    if settings.label_smoothing:
        parts.append(f"label smoothing {settings.label_smoothing:g}")
    parts.append(f"warm-up {settings.warmup_epochs:g} epoch{'s' if settings.warmup_epochs != 1 else ''}")
    if settings.early_stopping:
        stop = f"until validation accuracy plateaus (cap {settings.epochs} epochs"
        if n_train:
            patience = patience_epochs(settings.patience, settings.patience_steps, steps_per_epoch_of(n_train, settings))
            stop += f"; patience {patience} epochs, gains under {settings.min_delta:g} not counted"
        stop += f"), then a linear cool-down over {settings.cooldown_fraction:.0%} of the epochs run"
        parts.append(stop)
    else:
        parts.append(f"exactly {settings.epochs} epochs with a cosine decay (`--epochs`)")
    if n_train:
        passes = passes_per_epoch(n_train, settings)
        steps = steps_per_epoch_of(n_train, settings)
        parts.append(f"an epoch is {'one pass' if passes == 1 else f'{passes} passes'} over its {n_train:,} "
                     f"images ({steps} steps), validated at its end")
    return "; ".join(parts)


def _methods_by(records: Sequence[CellRecord],
                key: Callable[[CellRecord, Mapping[str, Any]], Hashable]) -> dict[Hashable, list[str]]:
    """The methods of the cells with a stored ``train`` config, grouped by ``key(cell, train)``, in order met."""
    out: dict[Hashable, list[str]] = {}
    for r in records:
        train = r.config.get("model", {}).get("train")
        if train is None:
            continue
        methods = out.setdefault(key(r, train), [])
        if r.method not in methods:
            methods.append(r.method)
    return out


def recipes(done: Sequence[CellRecord]) -> list[str]:
    """``model (who): recipe`` per model and recipe, teachers first; a model's methods named where recipes differ."""
    def model_and_recipe(r: CellRecord, train: Mapping[str, Any]) -> tuple[tuple[int, str], str]:
        n = r.metrics.get("n_train")
        model = (0 if r.method == "teacher" else 1, r.config["model"].get("name", "?"))
        return model, recipe_text(settings_of(train), int(n) if n else None)

    by_model: dict[tuple[int, str], dict[str, list[str]]] = {}
    for (model, text), users in _methods_by(done, model_and_recipe).items():
        by_model.setdefault(model, {})[text] = users
    lines = []
    for (_, name), texts in sorted(by_model.items()):
        for text, users in texts.items():
            who = ("teacher" if users == ["teacher"] else "label-only and every method" if len(texts) == 1
                   else ", ".join(sorted(users)))
            lines.append(f"{name} ({who}): {text}")
    return lines


#: Training options ``--tune`` chooses per arm (:func:`medkd_bench.tune.space.arm_space`): cells of one
#: student may differ in them by design, so :func:`mixed_recipes` does not count them.
TUNED_TRAIN_OPTIONS = ("lr", "label_smoothing")


def mixed_recipes(records: Sequence[CellRecord]) -> str | None:
    """Why a student's cells cannot be compared as they stand: trained with more than one recipe.

    A gain subtracts the label-only student from a distilled one of the same seed; if a plugin's
    defaults changed between the runs that made them (weight decay, epoch cap), the gain measures the
    change too. None when every cell has one recipe, tuned options aside.
    """
    seen = _methods_by(records, lambda r, train: repr(sorted((k, v) for k, v in train.items()
                                                             if k not in TUNED_TRAIN_OPTIONS)))
    if len(seen) < 2:
        return None
    groups = "; ".join(", ".join(sorted(m)) for m in seen.values())
    return (f"its cells were trained with {len(seen)} different recipes (by method: {groups}; see Training "
            "recipes below), so a gain between cells of different recipes measures the recipe as well: rerun "
            "the older cells")
