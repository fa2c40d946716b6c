"""Learning curves, drawn: one PNG per leaderboard page, one small multiple per (teacher, student).

Each panel shares the y axis (validation accuracy, 0..1, chance dotted) and
the x axis (epochs) with the others, so panels compare at a glance. A row's
line is its mean over seeds with a min..max band; the line turns dashed where
some of its seeds had already stopped (the mean is then over the rest), and
each seed gets a hollow circle at its best (kept) epoch and a filled marker at
its last epoch whose shape says why it stopped. Colours follow the Pareto
plot's (teacher blue, label-only black, methods by name from tab10), so a
method looks the same in both figures on a page. Written atomically without
the "Software" PNG field, so re-rendering a store gives the same bytes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from medkd_bench.files.atomic import atomic_write
from medkd_bench.files.paths import path_inside
from medkd_bench.registry import Registry
from medkd_bench.report.curves import UNRECORDED, CurveData, Key, Series, curve_data
from medkd_bench.report.pages_by_settings import Page
from medkd_bench.run.store import CellRecord

#: Marker per stop reason: X a plateau (early stop), > the epoch cap (it might have gone on), | the schedule's end.
STOP_MARKERS = {"plateau": "X", "epoch-cap": ">", "fixed": "|", UNRECORDED: "|"}
STOP_LABELS = {"plateau": "stopped: plateau", "epoch-cap": "stopped: epoch cap", "fixed": "last epoch",
               UNRECORDED: "last epoch"}
STOP_WORDS = {"plateau": "✕ stopped early on a plateau", "epoch-cap": "▶ stopped at the epoch cap",
              "fixed": "| last epoch of a fixed schedule", UNRECORDED: "| last epoch, stop reason not stored"}
#: A line marker ("|") needs more height than a filled one to be seen.
STOP_SIZES = {"X": 5.5, ">": 5.5, "|": 9.0}
PANEL_COLUMNS = 3


@dataclass(frozen=True)
class CurvesFigure:
    """What the page shows: the PNG's path relative to the page (None: nothing to plot), its caption, a note."""

    path: str | None
    caption: str
    note: str  # cells left out for want of a history ("" when none)


def colours(methods: Sequence[str]) -> dict[str, object]:
    """Colour per kind: the Pareto plot's, with more for pages with over eight methods."""
    from matplotlib import colormaps  # not pyplot: no backend chosen before render_curves picks Agg

    palette = list(colormaps["tab10"].colors[2:]) + list(colormaps["tab20"].colors[1::2])
    return {"teacher": "tab:blue", "label-only": "black",
            **{m: palette[i % len(palette)] for i, m in enumerate(methods)}}


def series_label(s: Series) -> str:
    return {"teacher": "teacher", "label-only": "student, labels only"}.get(s.kind, f"student, {s.kind}")


def _runs(values: Sequence[bool]) -> list[tuple[int, int, bool]]:
    """Maximal index ranges [start, end] whose segments share a style: solid only between two full epochs."""
    out: list[tuple[int, int, bool]] = []
    for i in range(len(values) - 1):
        solid = values[i] and values[i + 1]
        if out and out[-1][2] == solid:
            out[-1] = (out[-1][0], i + 1, solid)
        else:
            out.append((i, i + 1, solid))
    return out


def _draw(ax, s: Series, colour: object) -> None:
    x, lw = list(s.epochs), 1.4 if s.kind in ("teacher", "label-only") else 1.1
    if len(x) == 1:
        ax.plot(x, s.mean, marker=".", color=colour)
    for start, end, solid in _runs(s.full):
        ax.plot(x[start:end + 1], s.mean[start:end + 1], color=colour, linewidth=lw,
                linestyle="-" if solid else (0, (3, 2)))
    if s.seeds > 1:
        ax.fill_between(x, s.low, s.high, color=colour, alpha=0.12, linewidth=0)
    for b in s.bests:
        ax.plot([b.epoch], [b.val_accuracy], marker="o", markersize=5.5, markerfacecolor="none",
                markeredgecolor=colour, markeredgewidth=1.1, linestyle="none", zorder=4, clip_on=False)
    for m in s.stops:
        ax.plot([m.epoch], [m.val_accuracy], marker=STOP_MARKERS[m.reason], markersize=STOP_SIZES[STOP_MARKERS[m.reason]], color=colour,
                markeredgewidth=1.6, linestyle="none", zorder=5, clip_on=False)


def _handles(data: CurveData, colour: Mapping[str, object], chance: float | None) -> tuple[list, list]:
    """The legend's two rows of entries: the models, then what the markers, band and line styles mean."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    plotted = data.series
    kinds = [k for k in ("teacher", "label-only", *data.methods) if any(s.kind == k for s in plotted)]
    names = {s.kind: series_label(s) for s in plotted}
    models = [Line2D([], [], color=colour[k], linewidth=1.6, label=names[k]) for k in kinds]
    keys = [Line2D([], [], marker="o", markerfacecolor="none", markeredgecolor="dimgray", linestyle="none",
                   label="best (kept) epoch")]
    reasons = sorted({m.reason for s in plotted for m in s.stops}, key=list(STOP_MARKERS).index)
    for label in dict.fromkeys(STOP_LABELS[r] for r in reasons):
        reason = next(r for r in reasons if STOP_LABELS[r] == label)
        keys.append(Line2D([], [], marker=STOP_MARKERS[reason], markersize=STOP_SIZES[STOP_MARKERS[reason]] * 0.8,
                           color="dimgray", markeredgewidth=1.6,
                           linestyle="none", label=label))
    if any(s.seeds > 1 for s in plotted):
        keys.append(Patch(color="dimgray", alpha=0.25, linewidth=0, label="min..max over seeds"))
    if any(not all(s.full) for s in plotted):
        keys.append(Line2D([], [], color="dimgray", linestyle=(0, (3, 2)), label="some seeds had stopped"))
    if chance is not None:
        keys.append(Line2D([], [], color="gray", linestyle=":", label="chance"))
    return models, keys


#: Legend entries per row at most, the width one takes and the height of one legend row (inches).
LEGEND_COLUMNS = 8
LEGEND_ENTRY_IN = 1.65
LEGEND_ROW_IN = 0.21


def render_curves(path: Path, data: CurveData, title: str, chance: float | None = None) -> Path:
    """Write the page's learning-curve PNG: one panel per (teacher, student), shared axes, one legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    n = len(data.panels)
    rows = -(-n // PANEL_COLUMNS)
    cols = -(-n // rows)  # 4 panels: 2 x 2, not 3 + 1
    colour = colours(data.methods)
    models, keys = _handles(data, colour, chance)
    width = max(4.4 * cols, 6.5)
    per_row = min(LEGEND_COLUMNS, int(width // LEGEND_ENTRY_IN))  # a legend wider than the figure is cut off
    model_rows, key_rows = (-(-len(h) // per_row) for h in (models, keys))
    legend_in = LEGEND_ROW_IN * (model_rows + key_rows) + 0.1
    fig, axes = plt.subplots(rows, cols, figsize=(width, 3.3 * rows + legend_in + 0.35),
                             sharex=True, sharey=True, squeeze=False)
    last = max(e for s in data.series for e in s.epochs)
    for ax, panel in zip(axes.flat, data.panels, strict=False):
        for s in panel.series:
            _draw(ax, s, colour[s.kind])
        if chance is not None:
            ax.axhline(chance, color="gray", linestyle=":", linewidth=0.9)
        ax.set_title(panel.title, fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(True, linewidth=0.3, alpha=0.5)
        ax.tick_params(labelsize=7, labelbottom=True, labelleft=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("validation accuracy", fontsize=8)
    axes[0, 0].set_ylim(0, 1)
    axes[0, 0].set_xlim(0.6, last + 0.4)
    axes[0, 0].xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    height = fig.get_figheight()
    key_top = (LEGEND_ROW_IN * key_rows + 0.05) / height
    fig.legend(handles=keys, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(keys), per_row),
               fontsize=7, frameon=False)
    fig.legend(handles=models, loc="lower center", bbox_to_anchor=(0.5, key_top),
               ncol=min(len(models), per_row), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, legend_in / height, 1, 1))
    try:  # no "Software" metadata: the PNG's bytes do not depend on matplotlib's version
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png", metadata={"Software": None}))
    finally:
        plt.close(fig)


def _seeds_text(data: CurveData) -> str:
    counts = {role: sorted({s.seeds for s in data.series if (s.kind == "teacher") == (role == "teachers")})
              for role in ("teachers", "students")}
    counts = {role: c for role, c in counts.items() if c}
    if len({n for c in counts.values() for n in c}) == 1:
        n = next(iter(counts.values()))[0]
        return f"{n} seed{'s' if n > 1 else ''} per curve"
    return "seeds per curve: " + "; ".join(f"{role} {' or '.join(map(str, c))}" for role, c in counts.items())


def caption(data: CurveData, chance: float | None) -> str:
    """The figure's one-paragraph caption: what lines, bands and markers mean, and how runs stopped."""
    series = data.series
    stops = Counter(m.reason for s in series for m in s.stops)
    runs = sum(stops.values())
    parts = ["Validation accuracy per epoch, one panel per teacher with the label-only student and each method "
             f"distilled from it ({_seeds_text(data)}); an epoch is as long as each model's recipe makes it (one "
             "or more passes over its training images: see Training recipes under How the rows were made)"]
    if any(s.seeds > 1 for s in series):
        parts.append("line: mean over the seeds that ran the epoch; shaded: min..max over them"
                     + ("; dashed where some seeds had already stopped" if any(not all(s.full) for s in series)
                        else ""))
    parts.append("per seed: ○ best (kept) epoch; "
                 + ", ".join(f"{STOP_WORDS[r]} ({stops[r]} of {runs} runs)" for r in STOP_MARKERS if stops[r]))
    if chance is not None:
        parts.append(f"dotted: chance ({chance:.3f})")
    return "; ".join(parts) + "."


def curves_plot(registry: Registry, groups: Mapping[Key, Sequence[CellRecord]], out_dir: Path,
                page: Page) -> CurvesFigure:
    """Render the page's learning curves next to its Pareto plot (``plots/<page>.curves.png``)."""
    data = curve_data(groups)
    note = ("No per-epoch history stored for " + "; ".join(data.skipped) + ": left out of the curves."
            if data.skipped else "")
    if not data.panels:
        return CurvesFigure(None, "", note)
    spec = registry.datasets.get(page.dataset)
    chance = 1.0 / spec.num_classes if spec else None
    relative = f"plots/{Path(page.file).stem}.curves.png"
    render_curves(path_inside(out_dir, relative), data,
                  f"{page.dataset}: validation accuracy per epoch ({page.settings_text})", chance)
    return CurvesFigure(relative, caption(data, chance), note)
