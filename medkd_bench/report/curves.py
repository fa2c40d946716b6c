"""Learning curves from the store: the per-epoch series each leaderboard page plots, as plain data.

Tables show where training ended; a KD researcher also wants to see how it
got there: whether a distilled student learns faster than the label-only one,
whether a run stopped on a plateau or was cut off while still improving, and
whether the kept epoch is a lucky spike. This module turns each row's stored
``history`` (``[{"epoch", "loss", "val_accuracy"}, ...]`` per seed) into one
:class:`Series` per row and groups the series into one :class:`Panel` per
(teacher, student) pair; :mod:`medkd_bench.report.curve_plot` draws them. It
is pure (no matplotlib) so tests can check every number against a hand
computation.

Seeds need not agree: a teacher may have one seed (one teacher per dataset)
while its students have three, and seeds may stop at different epochs. The
mean at an epoch is over the seeds that ran it, the band is their min..max
(so each seed's own markers lie inside it), and ``n_seeds`` says how many
there were, so the plot can show where seeds had already stopped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from medkd_bench.report.convergence import UNKNOWN, stopped
from medkd_bench.run.cells import describe_model
from medkd_bench.run.store import CellRecord
from medkd_bench.specs import BASE_METHODS

Key = tuple[str, str, str]  # (method, teacher, student), as the leaderboard groups its rows

#: The stop reason of cells stored before it was recorded: they ran fixed schedules but say nothing,
#: so they get their own marker rather than a guess (:func:`~medkd_bench.report.convergence.stopped`).
UNRECORDED = UNKNOWN


@dataclass(frozen=True)
class Mark:
    """One seed's point on a curve: its stopping or its best (kept) epoch."""

    seed: int
    epoch: int
    val_accuracy: float  # the seed's own value at that epoch (inside the min..max band)
    reason: str = ""  # stops only: a stored stop reason or UNRECORDED


@dataclass(frozen=True)
class Series:
    """One leaderboard row's validation accuracy per epoch, over the seeds that stored a history."""

    key: Key
    epochs: tuple[int, ...]
    mean: tuple[float, ...]
    low: tuple[float, ...]  # min over the seeds that ran the epoch
    high: tuple[float, ...]  # max over the same seeds
    n_seeds: tuple[int, ...]  # how many seeds ran each epoch
    stops: tuple[Mark, ...]  # per seed, by seed
    bests: tuple[Mark, ...]  # per seed, by seed

    @property
    def kind(self) -> str:
        """``teacher``, ``label-only`` or the distillation method."""
        return self.key[0]

    @property
    def seeds(self) -> int:
        return len(self.stops)

    @property
    def full(self) -> tuple[bool, ...]:
        """Per epoch: whether every seed of the row still ran it (else the mean is over fewer)."""
        return tuple(n == self.seeds for n in self.n_seeds)


@dataclass(frozen=True)
class Panel:
    """One small multiple: a teacher's curve, the label-only student's and each method's from that teacher."""

    teacher: str  # "" on a page without teachers
    student: str  # "" on a page without students
    series: tuple[Series, ...]  # teacher, label-only, then methods by name

    @property
    def title(self) -> str:
        if self.teacher and self.student:
            return f"teacher {self.teacher} → student {self.student}"
        return f"teacher {self.teacher}" if self.teacher else f"student {self.student} (no teacher)"


@dataclass(frozen=True)
class CurveData:
    """Everything one page's learning-curve figure shows, and the cells it could not."""

    panels: tuple[Panel, ...]
    methods: tuple[str, ...]  # distillation methods on the page, by name (their colours follow this order)
    skipped: tuple[str, ...]  # cells without a usable history: "kd from vgg19 -> ofa-595, seed 1"

    @property
    def series(self) -> list[Series]:
        """Each plotted row once (a teacher appears in every student's panels)."""
        seen: dict[Key, Series] = {}
        for panel in self.panels:
            for s in panel.series:
                seen.setdefault(s.key, s)
        return list(seen.values())


def history_points(record: CellRecord) -> dict[int, float]:
    """A cell's stored ``{epoch: val_accuracy}``; entries that are not a whole epoch and a finite number are left out.

    Stores are files people keep for years: a malformed entry costs its point, not the page.
    """
    points: dict[int, float] = {}
    history = record.metrics.get("history")
    for row in history if isinstance(history, list) else []:
        if not isinstance(row, dict):
            continue
        epoch, value = row.get("epoch"), row.get("val_accuracy")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or isinstance(value, bool):
            continue
        if isinstance(value, int | float) and math.isfinite(value):
            points[epoch] = float(value)
    return points


def _stop(record: CellRecord, points: dict[int, float]) -> Mark:
    """The last epoch run and why the run stopped there (``stopped``; UNRECORDED for older cells).

    The mark sits where the seed's drawn history ends: the trainer stores one
    history row per epoch run, so that is ``epochs_run`` whenever it is stored,
    and a mark drawn off the line's end would only confuse.
    """
    epoch = max(points)
    return Mark(record.seed, epoch, points[epoch], stopped(record))


def _best(record: CellRecord, points: dict[int, float]) -> Mark:
    """The kept epoch: ``best_epoch`` when stored and in the history, else the last epoch with the top value.

    The last, because training keeps a later epoch that ties the best (``val_acc >= best``).
    """
    best = record.metrics.get("best_epoch")
    if not (isinstance(best, int) and best in points):
        top = max(points.values())
        best = max(e for e, v in points.items() if v == top)
    return Mark(record.seed, best, points[best])


def curve_series(key: Key, records: Sequence[CellRecord]) -> Series | None:
    """The row's mean, min..max band and seed count per epoch, with each seed's marks (None: no history)."""
    runs = sorted(((r, p) for r in records if (p := history_points(r))), key=lambda rp: rp[0].seed)
    if not runs:
        return None
    epochs = sorted({e for _, p in runs for e in p})
    values = [[p[e] for _, p in runs if e in p] for e in epochs]
    return Series(
        key=key,
        epochs=tuple(epochs),
        mean=tuple(math.fsum(v) / len(v) for v in values),
        low=tuple(min(v) for v in values),
        high=tuple(max(v) for v in values),
        n_seeds=tuple(len(v) for v in values),
        stops=tuple(_stop(r, p) for r, p in runs),
        bests=tuple(_best(r, p) for r, p in runs),
    )


def cell_label(record: CellRecord) -> str:
    """How a skipped cell is named in the page's note."""
    return f"{describe_model(record.method, record.teacher, record.student)}, seed {record.seed}"


def curve_data(groups: Mapping[Key, Sequence[CellRecord]]) -> CurveData:
    """One page's panels: per student, one per teacher on the page (a page without students: one per teacher)."""
    series = {key: s for key, recs in groups.items() if (s := curve_series(key, recs)) is not None}
    skipped = tuple(cell_label(r) for key in sorted(groups) for r in sorted(groups[key], key=lambda r: r.seed)
                    if not history_points(r))
    methods = tuple(sorted({k[0] for k in series} - set(BASE_METHODS)))
    teachers = sorted({k[1] for k in series if k[0] != "label-only"})
    students = sorted({k[2] for k in series if k[0] != "teacher"})
    panels = []
    for student in students or [""]:
        for teacher in teachers or [""]:
            keys = [("teacher", teacher, ""), ("label-only", "", student),
                    *((m, teacher, student) for m in methods)]
            shown = tuple(series[k] for k in keys if k in series)
            if shown:
                panels.append(Panel(teacher, student, shown))
    return CurveData(tuple(panels), methods, skipped)
