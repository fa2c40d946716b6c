"""Did a model train to convergence? Read from each cell's stored training record.

The training loop stores, per finished cell, ``stopped`` (``plateau``: the
validation accuracy stopped improving, so the model converged; ``epoch-cap``:
it hit its epoch cap while still improving; ``fixed``: it ran a fixed
``--epochs N`` schedule, so convergence is unknown), ``epochs_run`` and
``best_epoch``. Cells stored before ``stopped`` was recorded read as
``unknown``, and their epochs run as the length of their training history
(no cell stopped early then). A comparison between models that did not
converge measures training length as much as the method: the leaderboard
says so beside every such row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from scipy.stats import binomtest

from medkd_bench.run.cells import describe_model
from medkd_bench.run.store import CellRecord
from medkd_bench.train.schedule import STOP_REASONS, cooldown_epochs

#: Read for cells stored before ``stopped`` was recorded (or with a value no trainer writes).
UNKNOWN = "unknown"
#: The stored ``stopped`` values, then :data:`UNKNOWN`, in the order a summary lists them.
STOPPED = (*STOP_REASONS, UNKNOWN)

#: How a page says each one.
STOPPED_TEXT = {
    "plateau": "stopped on a validation plateau",
    "epoch-cap": "hit its epoch cap while still improving",
    "fixed": "ran a fixed schedule (`--epochs N`), so convergence is unknown",
    "unknown": "convergence not recorded (stored before it was)",
}

#: The same, short, for counts ("3 at the epoch cap").
STOPPED_SHORT = {"plateau": "on a plateau", "epoch-cap": "at the epoch cap", "fixed": "on a fixed schedule",
                 "unknown": "unrecorded"}


def stopped(rec: CellRecord) -> str:
    """Why the cell's training stopped: one of :data:`STOPPED`."""
    value = rec.metrics.get("stopped")
    return value if value in STOP_REASONS else UNKNOWN


def epochs_run(rec: CellRecord) -> int | None:
    """Epochs the cell trained: stored, else its history's length (cells stored before it was recorded).

    A stored value that is not a whole number of epochs (a damaged row) falls back to the history, so
    one bad row cannot stop a page from rendering.
    """
    value = rec.metrics.get("epochs_run")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    history = rec.metrics.get("history")
    return len(history) if isinstance(history, list) and history else None


def plateau_epoch(rec: CellRecord) -> int | None:
    """The epoch whose validation accuracy ended the patience on a plateau; None if unknown or not on one.

    After it the learning rate cools down over ``cooldown_fraction`` of the epochs run
    (:class:`~medkd_bench.train.schedule.PlateauStop`), so a plateau at epoch ``p`` ends training at
    ``p + cooldown_epochs(p)``: ``p`` is the one epoch that sum maps to the epochs run (it grows
    with ``p``). A cool-down cut short by the epoch cap leaves it unknown.
    """
    train = rec.config.get("model", {}).get("train", {}) if isinstance(rec.config, dict) else {}
    fraction, run = train.get("cooldown_fraction"), epochs_run(rec)
    if stopped(rec) != "plateau" or run is None or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        return None
    return next((p for p in range(1, run) if p + cooldown_epochs(p, fraction) == run), None)


def converged(records: Sequence[CellRecord]) -> bool:
    """Whether every cell stopped on a validation plateau (the only evidence of convergence stored)."""
    return all(stopped(r) == "plateau" for r in records)


def _per_seed(values: Sequence[object]) -> str:
    return " / ".join("-" if v is None else str(v) for v in values)


def convergence_text(records: Sequence[CellRecord]) -> str:
    """``converged: stopped on a validation plateau (plateau at epoch 11; epochs run 14, the last 3 cooling the
    learning rate down; best epoch 13)``, per seed with several.

    The plateau epoch is said because the best epoch of a model that converged falls in its cool-down,
    near its last: without it a reader sees the pattern of a model stopped while still learning.
    """
    kinds = [stopped(r) for r in records]
    verdict = "converged" if converged(records) else "not shown to have converged"
    if len(set(kinds)) == 1:
        how = STOPPED_TEXT[kinds[0]]
    else:
        counts = Counter(kinds)
        how = ", ".join(f"{counts[k]} of {len(kinds)} seeds {STOPPED_SHORT[k]}" for k in STOPPED if counts[k])
    plateaus = [plateau_epoch(r) for r in records]
    runs = [epochs_run(r) for r in records]
    best = _per_seed([r.metrics.get("best_epoch") for r in records])
    if all(p is not None for p in plateaus):  # every seed's learning rate cooled down after its plateau
        cooled = (f"the last {runs[0] - plateaus[0]} cooling the learning rate down" if len(records) == 1
                  else "each ending in a learning-rate cool-down")
        epochs = f"plateau at epoch {_per_seed(plateaus)}; epochs run {_per_seed(runs)}, {cooled}; best epoch {best}"
    else:
        epochs = f"epochs run {_per_seed(runs)}, best epoch {best}"
    if len(records) > 1:
        epochs = f"seeds {_per_seed([r.seed for r in records])}: {epochs}"
    return f"{verdict}: {how} ({epochs})"


def stop_counts(records: Sequence[CellRecord]) -> str:
    """``20 on a plateau, 3 at the epoch cap, 1 on a fixed schedule``: how a set of cells stopped."""
    counts = Counter(stopped(r) for r in records)
    return ", ".join(f"{counts[k]} {STOPPED_SHORT[k]}" for k in STOPPED if counts[k])


#: The one-sided level below which a cell's test accuracy counts as above chance.
CHANCE_ALPHA = 0.05


def above_chance(rec: CellRecord, labels: Sequence[int] | None) -> bool | None:
    """Whether the cell's test accuracy beats always answering the most frequent test class; None if unknown.

    One-sided exact binomial test (alpha :data:`CHANCE_ALPHA`) of its correct test images against that
    class's share, which is 1/classes on a balanced test set. A run whose validation accuracy plateaued
    at chance stops "on a plateau" like any other, so the stopping rule alone cannot tell it apart.
    ``labels``: the test labels its stored predictions are scored against
    (:meth:`RowStats.labels <medkd_bench.report.row_stats.RowStats.labels>`, which recovers them for
    cells stored without them).
    """
    predictions = rec.metrics.get("test_predictions")
    if labels is None or not isinstance(predictions, list) or not len(labels) or len(labels) != len(predictions):
        return None
    labels = [int(y) for y in labels]
    correct = sum(int(p == y) for p, y in zip(predictions, labels, strict=True))
    majority = Counter(labels).most_common(1)[0][1] / len(labels)
    return bool(binomtest(correct, len(labels), majority, alternative="greater").pvalue < CHANCE_ALPHA)


def at_chance_text(groups: Mapping[tuple[str, str, str], Sequence[CellRecord]],
                   labels: Callable[[CellRecord], Sequence[int] | None]) -> str | None:
    """The trust section's line on cells no more accurate than chance; None when every cell beats it.

    ``groups``: the page's rows, keyed (method, teacher, student), each with its cells; ``labels``: each
    cell's test labels (see :func:`above_chance`).
    """
    found = {key: [r for r in cells if above_chance(r, labels(r)) is False] for key, cells in groups.items()}
    found = {key: cells for key, cells in found.items() if cells}
    if not found:
        return None
    rows = []
    for (method, teacher, student), cells in sorted(found.items()):
        what = describe_model(method, teacher, student)
        seeds = sorted(cells, key=lambda r: r.seed)
        rows.append(f"{what}, seed{'s' if len(seeds) > 1 else ''} {', '.join(str(r.seed) for r in seeds)}: "
                    + " / ".join(f"{100 * float(r.metrics['accuracy']):.1f}" for r in seeds) + "%")
    n = sum(len(c) for c in found.values())
    return (f"{n} cell{'s' if n > 1 else ''} no more accurate than always answering the most frequent test class "
            f"(one-sided exact binomial test, alpha {CHANCE_ALPHA}): {'; '.join(rows)}. A run whose validation "
            "accuracy stayed at chance stops on a plateau like any other: it is a training that failed (a loss "
            "that overwhelmed the labels, or a run that diverged), not a model that learned the task, and a "
            "gain or margin that includes it measures that failure")
