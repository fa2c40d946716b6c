"""Accuracy against cost, per leaderboard page: which models are on the Pareto front.

A reader choosing a student wants to see at a glance what accuracy each
millisecond and each parameter buys. One PNG per page, two panels: test
accuracy (mean over seeds, with its bootstrap 95% CI as an error bar) against
batch-1 latency and against parameters, both on log axes; teachers,
label-only students and distilled students are drawn apart, and the Pareto
front (no other model is both cheaper and more accurate) is drawn as a step
line with its models named. Rendered from the store with matplotlib, like the
saliency panels, and written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medkd_bench.registry import Registry
from medkd_bench.report.pages import Page
from medkd_bench.run.store import CellRecord
from medkd_bench.system.files import atomic_write, path_inside


@dataclass(frozen=True)
class Point:
    """One leaderboard row on the plot."""

    label: str
    kind: str  # "teacher", "label-only" or the distillation method
    accuracy: float
    ci: tuple[float, float] | None
    latency_ms: float | None
    params_m: float | None


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


#: Kinds (methods) of one cost (one student architecture's cells) are spread sideways by this factor
#: each, so their error bars stay readable; the caption says so. The front is chosen on exact costs.
DODGE = 1.02


def _dodged(points: Sequence[Point], cost: str) -> list[float]:
    """Each point's x: its cost, shifted a few percent (log scale) per kind among points of the same cost."""
    kinds: dict[float, list[str]] = {}
    for p in points:
        same = kinds.setdefault(getattr(p, cost), [])
        if p.kind not in same:
            same.append(p.kind)
    return [getattr(p, cost) * DODGE ** (kinds[getattr(p, cost)].index(p.kind)
                                         - (len(kinds[getattr(p, cost)]) - 1) / 2) for p in points]


def _panel(ax, points: Sequence[Point], cost: str, xlabel: str, chance: float | None) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    shown = [p for p in points if getattr(p, cost) is not None and getattr(p, cost) > 0]
    xs = dict(zip(map(id, shown), _dodged(shown, cost), strict=True))
    methods = sorted({p.kind for p in shown} - {"teacher", "label-only"})
    colours = dict(zip(methods, plt.get_cmap("tab10").colors[2:], strict=False))
    style = {"teacher": dict(marker="s", color="tab:blue", markersize=7),
             "label-only": dict(marker="o", color="black", markerfacecolor="white", markersize=7)}
    for kind in ["teacher", "label-only", *methods]:
        mine = [p for p in shown if p.kind == kind]
        if not mine:
            continue
        x = [xs[id(p)] for p in mine]
        y = [100 * p.accuracy for p in mine]
        err = [[100 * (p.accuracy - p.ci[0]) if p.ci else 0 for p in mine],
               [100 * (p.ci[1] - p.accuracy) if p.ci else 0 for p in mine]]
        kw = style.get(kind, dict(marker="o", color=colours.get(kind, "tab:gray"), markersize=5))
        label = {"teacher": "teacher", "label-only": "student, labels only"}.get(kind, f"student, {kind}")
        ax.errorbar(x, y, yerr=err, linestyle="none", capsize=2, elinewidth=0.8, alpha=0.9, label=label, **kw)
    if shown:
        front = pareto_front([getattr(p, cost) for p in shown], [p.accuracy for p in shown])
        fx = [xs[id(shown[i])] for i in front]
        fy = [100 * shown[i].accuracy for i in front]
        ax.step(fx, fy, where="post", color="tab:red", linestyle="--", linewidth=1, label="Pareto front")
        for i in sorted(set(front) | {i for i, p in enumerate(shown) if p.kind == "teacher"}):
            ax.annotate(shown[i].label, (xs[id(shown[i])], 100 * shown[i].accuracy), fontsize=6,
                        xytext=(5, -9), textcoords="offset points")
    if chance is not None:
        ax.axhline(100 * chance, color="gray", linestyle=":", linewidth=0.8, label="chance")
    ax.set_xscale("log")
    ax.margins(x=0.12)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("test accuracy (%), 95% CI", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, which="both", linewidth=0.3, alpha=0.5)


def render_pareto(path: Path, points: Sequence[Point], title: str, chance: float | None = None) -> Path:
    """Write the two-panel accuracy-vs-cost PNG for one page."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    _panel(axes[0], points, "latency_ms", "batch-1 latency (ms, log scale)", chance)
    _panel(axes[1], points, "params_m", "parameters (millions, log scale)", chance)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    try:  # no "Software" metadata: the PNG's bytes do not depend on matplotlib's version
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png", metadata={"Software": None}))
    finally:
        plt.close(fig)


def pareto_plot(registry: Registry, groups: Mapping[tuple[str, str, str], list[CellRecord]],
                scores: Mapping[tuple[str, str, str], dict[str, dict[str, Any]]], out_dir: Path,
                page: Page) -> str | None:
    """Render a page's accuracy-vs-cost plot from its rows and their scores; its path relative to the page.

    ``None`` when no row has a cost figure.
    """
    points = []
    for key, recs in groups.items():
        m, score = recs[0].metrics, scores[key]["accuracy"]
        method, teacher, student = key
        label = (teacher if method == "teacher" else student if method == "label-only"
                 else f"{student}, {method} from {teacher}")
        points.append(Point(label, method, score["mean"], tuple(score["ci"]) if score.get("ci") else None,
                            m.get("latency_ms"), m.get("params_m")))
    if not any(p.latency_ms or p.params_m for p in points):
        return None
    spec = registry.datasets.get(page.dataset)
    relative = f"plots/{Path(page.file).stem}.pareto.png"
    render_pareto(path_inside(out_dir, relative), points,
                  f"{page.dataset}: test accuracy against cost ({page.settings_text})",
                  1.0 / spec.num_classes if spec else None)
    return relative
