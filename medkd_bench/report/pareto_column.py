"""The Pareto plot's zoomed panels: one crowded student column, spread out by teacher and method.

Every distilled version of one student architecture has that architecture's
cost, so on the cost panels they share one column: three teachers and five
methods put fifteen error bars within a few pixels. Below the cost panels,
each such column gets its own panel: one group per teacher (named on the x
axis), the methods side by side within it in the cost panels' colours and the
teacher's marker shape, the label-only baseline as a dashed line with its CI
band, each teacher's own accuracy as a blue bar over its group, and the most
accurate version named. The y axis is the same accuracy, so the panel reads as
the column pulled apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from medkd_bench.report.pareto_marks import Point, Style, errorbar
from medkd_bench.specs import BASE_METHODS

#: A student architecture gets a zoomed panel from this many distilled rows: fewer fit in the column.
CROWDED = 2
#: Share of a teacher's group the methods spread over; where the x axis starts (room for a name).
GROUP_WIDTH, LEFT_ROOM = 0.72, -1.05


def _distilled(p: Point) -> bool:
    return p.kind not in ("teacher", *BASE_METHODS)


def crowded_students(points: Sequence[Point]) -> list[str]:
    """Student architectures with at least :data:`CROWDED` distilled rows, in name order."""
    counts = Counter(p.student for p in points if _distilled(p))
    return sorted(s for s, n in counts.items() if n >= CROWDED)


def column_panel(ax, student: str, points: Sequence[Point], style: Style) -> None:
    """Draw ``student``'s distilled rows grouped by teacher, against its label-only baseline."""
    distilled = [p for p in points if p.student == student and _distilled(p)]
    teachers = [t for t in style.teachers if any(p.teacher == t for p in distilled)]
    methods = [m for m in style.methods if any(p.kind == m for p in distilled)]
    own = {p.teacher: p for p in points if p.kind == "teacher"}
    step = GROUP_WIDTH / max(len(methods), 1)
    for j, teacher in enumerate(teachers):
        for p in (p for p in distilled if p.teacher == teacher):
            x = j + (methods.index(p.kind) - (len(methods) - 1) / 2) * step
            errorbar(ax, [x], [p], zorder=3, **style.draw(p))
        if teacher in own:  # the teacher's own accuracy: how far its students are from it
            ax.hlines(100 * own[teacher].accuracy, j - GROUP_WIDTH / 2 - 0.05, j + GROUP_WIDTH / 2 + 0.05,
                      color="tab:blue", linewidth=2.2, zorder=2)
            ax.annotate(f"teacher {100 * own[teacher].accuracy:.1f}", (j, 100 * own[teacher].accuracy),
                        xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=7.5,
                        color="tab:blue", bbox=dict(boxstyle="square,pad=0.1", facecolor="white", alpha=0.8,
                                                    linewidth=0))
    base = next((p for p in points if p.kind == "label-only" and p.student == student), None)
    if base is not None:  # named at the left, in room kept free of groups, so it never sits on a point
        ax.axhline(100 * base.accuracy, color="black", linestyle="--", linewidth=1, zorder=1)
        if base.ci:
            ax.axhspan(100 * base.ci[0], 100 * base.ci[1], color="gray", alpha=0.13, linewidth=0, zorder=0)
        ax.annotate(f"labels only\n{100 * base.accuracy:.1f}", (LEFT_ROOM + 0.03, 100 * base.accuracy),
                    xytext=(0, 3), textcoords="offset points", ha="left", va="bottom", fontsize=7.5)
    if distilled:  # the most accurate version ringed; each group's best named under it
        best = max(distilled, key=lambda p: p.accuracy)
        x = teachers.index(best.teacher) + (methods.index(best.kind) - (len(methods) - 1) / 2) * step
        ax.plot([x], [100 * best.accuracy], marker="o", markersize=17, markerfacecolor="none",
                markeredgecolor="black", markeredgewidth=1.2, linestyle="none", zorder=4)
    names = []
    for teacher in teachers:
        top = max((p for p in distilled if p.teacher == teacher), key=lambda p: p.accuracy)
        names.append(f"from {teacher}\nbest: {top.kind} {100 * top.accuracy:.1f}")
    ax.set_xticks(range(len(teachers)), names, fontsize=8.5)
    ax.set_xlim(LEFT_ROOM, len(teachers) - 0.4)
    ax.margins(y=0.12)
    ax.set_ylabel("test accuracy (%), 95% CI", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(True, axis="y", linewidth=0.3, alpha=0.5)
    some = base or (distilled[0] if distilled else None)
    cost = "" if some is None else ", ".join(
        text for text in (f"{some.params_m:.1f} M parameters" if some.params_m else "",
                          f"{some.latency_ms:.1f} ms" if some.latency_ms else "") if text)
    ax.set_title(f"{student}" + (f" ({cost})" if cost else "") + ": the column above, spread out by teacher "
                 "(groups, shape) and method (colour); ringed: the most accurate", fontsize=9)
