"""How the Pareto plot marks its rows: what a row is, and its shape and colour, shared by all its panels.

A distilled student shares its teacher's marker shape and takes its
method's colour (the learning curves' colour for that method), so the two
questions a reader asks of a point, "from which teacher?" and "by which
method?", each have one visual answer, in every panel of the figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medkd_bench.report.curve_plot import (
    colours,  # the learning curves' colours: one method, one colour
)


@dataclass(frozen=True)
class Point:
    """One leaderboard row on the plot."""

    label: str
    kind: str  # "teacher", "label-only" or the distillation method
    accuracy: float
    ci: tuple[float, float] | None
    latency_ms: float | None
    params_m: float | None
    teacher: str = ""  # a teacher row's own name; a distilled row's teacher; "" for label-only
    student: str = ""  # the student architecture; "" for teachers


#: Marker shape per teacher, in name order: a teacher and every student distilled from it share one,
#: so a reader can tell which teacher each student came from by shape while colour says the method.
TEACHER_MARKERS = ("s", "D", "^", "v", "P", "X", "h", "p")
@dataclass(frozen=True)
class Style:
    """How one figure draws its rows: the teachers' marker shapes and the kinds' colours, shared by every panel."""

    teachers: tuple[str, ...]
    methods: tuple[str, ...]

    @classmethod
    def of(cls, points: Sequence[Point]) -> Style:
        return cls(tuple(sorted({p.teacher for p in points if p.teacher})),
                   tuple(sorted({p.kind for p in points} - {"teacher", "label-only"})))

    def marker(self, teacher: str) -> str:
        return TEACHER_MARKERS[self.teachers.index(teacher) % len(TEACHER_MARKERS)] if teacher in self.teachers else "o"

    def colour(self, kind: str) -> object:
        return colours(self.methods)[kind]

    def draw(self, p: Point) -> dict[str, Any]:
        """Keyword arguments for ``errorbar``: teacher filled blue, label-only a white circle, distilled by method."""
        if p.kind == "teacher":
            return dict(marker=self.marker(p.teacher), color="tab:blue", markersize=8, markeredgecolor="black",
                        markeredgewidth=0.6)
        if p.kind == "label-only":
            return dict(marker="o", color="black", markerfacecolor="white", markersize=7)
        return dict(marker=self.marker(p.teacher), color=self.colour(p.kind), markersize=6, markeredgecolor="black",
                    markeredgewidth=0.4)

    def order(self, p: Point) -> tuple[int, int, int]:
        """Teachers, then label-only, then distilled grouped by teacher, methods in name order."""
        rank = {"teacher": 0, "label-only": 1}.get(p.kind, 2)
        t = self.teachers.index(p.teacher) if p.teacher in self.teachers else -1
        return rank, t, self.methods.index(p.kind) if p.kind in self.methods else -1


def errorbar(ax, x: Sequence[float], points: Sequence[Point], **kw: Any) -> None:
    """Accuracy in percent with its 95% CI as an error bar, at ``x``."""
    y = [100 * p.accuracy for p in points]
    err = [[100 * (p.accuracy - p.ci[0]) if p.ci else 0 for p in points],
           [100 * (p.ci[1] - p.accuracy) if p.ci else 0 for p in points]]
    ax.errorbar(x, y, yerr=err, linestyle="none", capsize=2, elinewidth=0.8, alpha=0.9, **kw)
