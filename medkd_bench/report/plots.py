"""Accuracy against cost, per leaderboard page: which models are on the Pareto front.

A reader choosing a student wants to see at a glance what accuracy each
millisecond and each parameter buys. One PNG per page, two panels: test
accuracy (mean over seeds, with its bootstrap 95% CI as an error bar) against
batch-1 latency and against parameters, both on log axes, with the Pareto
front (no other model is both cheaper and more accurate) as a step line.
A distilled student shares its teacher's marker shape and takes its method's
colour (:mod:`.pareto_marks`), so each point says where it came from; only
the teachers, one name per student architecture and the front are named,
moved apart so no two names overlap. Every distilled version of one student
architecture has that architecture's cost, so a full matrix stacks fifteen of
them in one column: such columns are also drawn pulled apart below
(:mod:`.pareto_column`). Rendered from the store with matplotlib, like the
saliency panels, and written atomically without the "Software" PNG field.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medkd_bench.files.atomic import atomic_write
from medkd_bench.files.paths import path_inside
from medkd_bench.registry import Registry
from medkd_bench.report.pages_by_settings import Page
from medkd_bench.report.pareto_column import column_panel, crowded_students
from medkd_bench.report.pareto_marks import Point, Style, errorbar
from medkd_bench.run.store import CellRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def pareto_front(costs: Sequence[float], scores: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates (cost <= and score >=, one of them strictly), by cost.

    Of several points with the same cost and score, the first is kept.
    """
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -scores[i]))
    front: list[int] = []
    best = float("-inf")
    for i in order:
        if scores[i] > best:
            front.append(i)
            best = scores[i]
    return front


#: Rows of one cost (one student architecture's cells) are spread sideways by this factor each (log
#: scale), a teacher's students side by side, an extra slot between teachers. The front is chosen on
#: exact costs.
DODGE = 1.012


def _dodged(points: Sequence[Point], cost: str, style: Style) -> list[float]:
    """Each point's x: its cost, spread a little per row among rows of the same cost (see :data:`DODGE`)."""
    groups: dict[float, list[Point]] = {}
    for p in points:
        groups.setdefault(getattr(p, cost), []).append(p)
    slot: dict[int, float] = {}
    for same in groups.values():
        position, previous = 0.0, None
        ordered = sorted(same, key=style.order)
        for p in ordered:
            group = style.order(p)[:2]
            if previous is not None:
                position += 2.0 if group != previous else 1.0
            slot[id(p)], previous = position, group
        middle = position / 2
        for p in ordered:
            slot[id(p)] -= middle
    return [getattr(p, cost) * DODGE ** slot[id(p)] for p in points]


#: Vertical room per name, and the width of one of its characters (axes fractions of a cost panel at 7.5 pt).
LABEL_GAP, NAME_CHAR = 0.065, 0.0145


#: The highest and lowest a name's centre may sit (axes fractions): inside the frame.
NAME_TOP, NAME_BOTTOM = 0.97, 0.03


def stack_names(names: Sequence[tuple[tuple[float, float], float, float]],
                marks: Sequence[tuple[float, float]]) -> list[float]:
    """Heights (axes fractions) for names that neither overlap nor cover another column's point.

    ``names``: per name, its horizontal span, its point's x and its point's y;
    ``marks``: every point. Names are stacked upwards from their points, the
    lowest first; when that stack would leave the frame (points near the top,
    such as the teachers), they are stacked downwards from the highest instead.
    Clamping an upward stack at the top once wrote two teachers' names on top
    of each other.
    """
    def stacked(order: Sequence[int], sign: int) -> dict[int, float]:
        placed: list[tuple[float, float, float]] = []  # (left, right, y) of the names written so far
        out: dict[int, float] = {}
        for i in order:
            span, fx, fy = names[i]
            others = [my for mx, my in marks if abs(mx - fx) >= 0.05 and span[0] < mx < span[1]]
            ty = fy
            for _ in range(len(placed) + len(others) + 1):  # push past what it covers until nothing is left
                clash = ([py + sign * LABEL_GAP for left, end, py in placed
                          if left < span[1] and span[0] < end and abs(ty - py) < LABEL_GAP]
                         + [my + sign * LABEL_GAP / 2 for my in others if abs(ty - my) < LABEL_GAP / 2])
                if not clash:
                    break
                ty = max(clash) if sign > 0 else min(clash)
            placed.append((*span, ty))
            out[i] = ty
        return out

    by_height = sorted(range(len(names)), key=lambda i: names[i][2])
    heights = stacked(by_height, +1)
    if heights and max(heights.values()) > NAME_TOP:
        heights = stacked(by_height[::-1], -1)
    return [min(max(heights[i], NAME_BOTTOM), NAME_TOP) for i in range(len(names))]


def _name_points(ax, named: Sequence[tuple[float, float, str]], cluster: Sequence[tuple[float, float]]) -> None:
    """Write names beside their points without overlapping: stacked to the right of the points' column.

    ``named``: (x, y) in data units and the text; ``cluster``: every point's
    (x, y), so a name clears the whole column of points it stands beside and
    never covers another column's point. Names near the right edge go to the
    left. A thin line joins a moved name to its point.
    """
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    to_axes = ax.transAxes.inverted()

    def frac(x: float, y: float) -> tuple[float, float]:
        fx, fy = to_axes.transform(ax.transData.transform((x, y)))
        return float(fx), float(fy)

    marks = [frac(x, y) for x, y in cluster]
    items: list[tuple[float, float, float, bool, str]] = []
    for x, y, text in named:
        fx, fy = frac(x, y)
        column = [c for c, _ in marks if abs(c - fx) < 0.05] or [fx]
        right = max(column) < 0.72
        items.append((fx, fy, max(column) + 0.02 if right else min(column) - 0.02, right, text))
    spans = [((tx, tx + NAME_CHAR * len(text)) if right else (tx - NAME_CHAR * len(text), tx))
             for fx, fy, tx, right, text in items]
    heights = stack_names([(span, fx, fy) for span, (fx, fy, *_) in zip(spans, items, strict=True)], marks)
    for (fx, fy, tx, right, text), ty in zip(items, heights, strict=True):
        moved = abs(ty - fy) > 0.01 or abs(tx - fx) > 0.03
        ax.annotate(text, (fx, fy), xycoords="axes fraction", xytext=(tx, ty), textcoords="axes fraction",
                    fontsize=7.5, ha="left" if right else "right", va="center",
                    # a white ground: names right of a front point sit on its line
                    bbox=dict(boxstyle="square,pad=0.15", facecolor="white", alpha=0.8, linewidth=0),
                    arrowprops=dict(arrowstyle="-", linewidth=0.5, color="dimgray") if moved else None)


def _cost_panel(ax, points: Sequence[Point], cost: str, xlabel: str, chance: float | None, style: Style,
                zoomed: Sequence[str] = ()) -> Callable[[], None]:
    """One accuracy-vs-cost panel; returns what names its points, to call once every panel sharing y is drawn.

    Names only what a reader needs to find: teachers, columns, the front. A
    student architecture's column is named once (at its label-only row); a
    distilled row on the front is named unless its column is ``zoomed``
    (pulled apart below, where its best is ringed and named). Naming fixes the
    axes' limits, so it must wait for the other panels: a latency panel drawn
    while no row was timed yet froze the shared y range before the parameters
    panel's rows were in it. Rows without this cost are left out, and said so.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    shown = [p for p in points if getattr(p, cost) is not None and getattr(p, cost) > 0]
    xs = dict(zip(map(id, shown), _dodged(shown, cost, style), strict=True))
    for p in sorted(shown, key=style.order):
        errorbar(ax, [xs[id(p)]], [p], zorder=3 if p.kind == "teacher" else 2, **style.draw(p))
    named: list[tuple[float, float, str]] = []
    if shown:
        front = pareto_front([getattr(p, cost) for p in shown], [p.accuracy for p in shown])
        ax.step([xs[id(shown[i])] for i in front], [100 * shown[i].accuracy for i in front], where="post",
                color="tab:red", linestyle="--", linewidth=1, zorder=1)
        keep = {i for i in front if shown[i].student not in zoomed or shown[i].kind == "label-only"}
        keep |= {i for i, p in enumerate(shown) if p.kind in ("teacher", "label-only")}
        named = [(xs[id(shown[i])], 100 * shown[i].accuracy,
                  shown[i].label + (" (below)" if shown[i].kind == "label-only" and shown[i].student in zoomed
                                    else "")) for i in sorted(keep)]
    if chance is not None:
        ax.axhline(100 * chance, color="gray", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.margins(x=0.18, y=0.08)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("test accuracy (%), 95% CI", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, which="both", linewidth=0.3, alpha=0.5)
    missing = len(points) - len(shown)
    if missing:
        ax.text(0.5, 0.02, f"{missing} of {len(points)} rows not timed yet" if cost == "latency_ms"
                else f"{missing} of {len(points)} rows without this figure", transform=ax.transAxes,
                ha="center", va="bottom", fontsize=7.5, color="dimgray")
    return lambda: _name_points(ax, named, [(xs[id(p)], 100 * p.accuracy) for p in shown])


def _legends(panel, style: Style, points: Sequence[Point], chance: float | None, zoomed: bool) -> None:
    """Three keys stacked in ``panel`` (a subfigure): teachers by shape, training by colour, the lines."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    teachers = [Line2D([], [], linestyle="none", label=t, **style.draw(Point(t, "teacher", 0, None, None, None, t)))
                for t in style.teachers]
    kinds = [Line2D([], [], linestyle="none", label="labels only", **style.draw(Point("", "label-only", 0, None,
                                                                                      None, None)))
             ] if any(p.kind == "label-only" for p in points) else []
    kinds += [Patch(color=style.colour(m), label=m) for m in style.methods]
    lines = [Line2D([], [], color="tab:red", linestyle="--", label="Pareto front")]
    if chance is not None:
        lines.append(Line2D([], [], color="gray", linestyle=":", label="chance"))
    if zoomed:  # the lower panels' reference lines
        lines += [Line2D([], [], color="black", linestyle="--", linewidth=1, label="labels only (below)"),
                  Patch(color="gray", alpha=0.25, linewidth=0, label="its 95% CI"),
                  Line2D([], [], color="tab:blue", linewidth=2.2, label="teacher's own\naccuracy (below)")]
    keys = [(TEACHERS_KEY, teachers), (TRAINING_KEY, kinds), ("lines", lines)]
    keys = [(title, handles) for title, handles in keys if handles]
    axes = panel.subplots(len(keys), 1, gridspec_kw={"height_ratios": [len(h) + 1.5 for _, h in keys]})
    for ax, (title, handles) in zip(np.atleast_1d(axes), keys, strict=True):
        ax.axis("off")
        legend = ax.legend(handles=handles, title=title, loc="upper left", fontsize=8, title_fontsize=8,
                           frameon=False, alignment="left")
        legend.get_title().set_fontweight("bold")


#: The keys' titles: what a marker's shape and a marker's colour say.
TEACHERS_KEY = "teacher (shape; its\nstudents share it)"
TRAINING_KEY = "student trained with\n(colour)"


def pareto_figure(points: Sequence[Point], title: str, chance: float | None = None) -> Figure:
    """The accuracy-vs-cost figure: two cost panels, one zoomed panel per crowded student column, the keys."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style = Style.of(points)
    students = crowded_students(points)
    fig = plt.figure(figsize=(11, 4.3 + 3.4 * bool(students)), layout="constrained")
    main, side = fig.subfigures(1, 2, width_ratios=[5.0, 1.0])
    top, bottom = main.subfigures(2, 1, height_ratios=[4.3, 3.4]) if students else (main, None)
    axes = top.subplots(1, 2, sharey=True)
    namers = [_cost_panel(axes[0], points, "latency_ms", "batch-1 latency (ms, log scale)", chance, style, students),
              _cost_panel(axes[1], points, "params_m", "parameters (millions, log scale)", chance, style, students)]
    for name in namers:  # the shared y range is final once both panels are drawn
        name()
    if bottom is not None:
        for ax, student in zip(np.atleast_1d(bottom.subplots(1, len(students))), students, strict=True):
            column_panel(ax, student, points, style)
    _legends(side, style, points, chance, bool(students))
    # Wrapped to the figure's width: a page's settings can run to several flags (they were cut off).
    fig.suptitle(textwrap.fill(title, width=int(fig.get_figwidth() * 14)), fontsize=10)
    return fig


def render_pareto(path: Path, points: Sequence[Point], title: str, chance: float | None = None) -> Path:
    """Write :func:`pareto_figure` as the page's PNG."""
    import matplotlib.pyplot as plt

    fig = pareto_figure(points, title, chance)
    try:  # no "Software" metadata: the PNG's bytes do not depend on matplotlib's version
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png", metadata={"Software": None}))
    finally:
        plt.close(fig)


@dataclass(frozen=True)
class ParetoFigure:
    """What the page shows: the PNG's path relative to the page, and the caption saying what its marks mean."""

    path: str
    caption: str


def caption(points: Sequence[Point]) -> str:
    """The plot's caption: the axes, the front, what shape and colour say, what is named, the spread-out panels."""
    zoomed = crowded_students(points)
    text = ("Accuracy (mean over seeds, bootstrap 95% CI) against batch-1 latency and parameters; the dashed red line "
            "is the Pareto front: for each model off it, one on it is at least as cheap and more accurate. Teachers "
            "are blue, each with its own marker shape; a distilled student has its teacher's shape and its method's "
            "colour (the learning curves' colours); the white circle is the label-only student. Rows of one "
            "architecture share its cost and are spread sideways a few percent, each teacher's students side by "
            "side. Named: the teachers, each student architecture, and the front")
    if not zoomed:
        return text + "."
    return (text + f" outside the column{'s' if len(zoomed) > 1 else ''} spread out below. Below, "
            f"{', '.join(zoomed)}: {'each' if len(zoomed) > 1 else 'its'} column pulled apart, one group per teacher "
            "(named on the axis with its best method), the methods side by side; the dashed line and grey band are "
            "the label-only accuracy and its 95% CI, the blue bar the teacher's own accuracy, the ringed mark the "
            "most accurate distilled version.")


def pareto_plot(registry: Registry, groups: Mapping[tuple[str, str, str], list[CellRecord]],
                scores: Mapping[tuple[str, str, str], dict[str, dict[str, Any]]], out_dir: Path,
                page: Page) -> ParetoFigure | None:
    """Render a page's accuracy-vs-cost plot from its rows and their scores: its path relative to the page, its caption.

    ``None`` when no row has a cost figure.
    """
    points = []
    for key, recs in groups.items():
        m, score = recs[0].metrics, scores[key]["accuracy"]
        method, teacher, student = key
        label = (teacher if method == "teacher" else student if method == "label-only"
                 else f"{student}, {method} from {teacher}")
        points.append(Point(label, method, score["mean"], tuple(score["ci"]) if score.get("ci") else None,
                            m.get("latency_ms"), m.get("params_m"), teacher, student))
    if not any(p.latency_ms or p.params_m for p in points):
        return None
    spec = registry.datasets.get(page.dataset)
    relative = f"plots/{Path(page.file).stem}.pareto.png"
    render_pareto(path_inside(out_dir, relative), points,
                  f"{page.dataset}: test accuracy against cost ({page.settings_text})",
                  1.0 / spec.num_classes if spec else None)
    return ParetoFigure(relative, caption(points))
