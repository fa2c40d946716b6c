"""The accuracy-vs-cost plot: which teacher each student came from, and names that stay readable.

A full matrix puts fifteen distilled students (three teachers, five methods)
in one column, since they share one architecture's cost. The figure is
inspected as matplotlib objects: its keys, each mark's shape, and the drawn
extents of the names (no two may overlap).
"""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import pytest
from matplotlib.text import Text

from medkd_bench.report import plots
from medkd_bench.report.pareto_marks import TEACHER_MARKERS, Point

TEACHERS = {"autoformer-v2-t": (0.722, 19.7, 27.3), "vgg19": (0.689, 68.9, 139.6),
            "visformer-s": (0.911, 28.7, 39.2)}
METHODS = ["at", "cat-kd", "dkd", "fitnet", "kd"]


def _matrix() -> list[Point]:
    """Three teachers, the label-only ofa-595 and 15 distilled ofa-595s in one cost column."""
    points = [Point(t, "teacher", acc, (acc - 0.05, acc + 0.05), ms, params, teacher=t)
              for t, (acc, ms, params) in TEACHERS.items()]
    points.append(Point("ofa-595", "label-only", 0.71, (0.65, 0.76), 6.6, 7.6, student="ofa-595"))
    for k, (t, m) in enumerate(itertools.product(TEACHERS, METHODS)):
        acc = 0.42 + 0.021 * k  # distinct, and crowded: 15 rows within 32 pp
        points.append(Point(f"ofa-595, {m} from {t}", m, acc, (acc - 0.06, acc + 0.06), 6.6, 7.6,
                            teacher=t, student="ofa-595"))
    return points


@pytest.fixture
def figure():
    fig = plots.pareto_figure(_matrix(), "synthetic-cxr: test accuracy against cost", chance=1 / 3)
    fig.canvas.draw()  # lay it out, so the names' drawn extents are final
    yield fig
    plt.close(fig)


def _legend(fig, title: str):
    found = [ax.get_legend() for ax in fig.axes if ax.get_legend() and ax.get_legend().get_title().get_text() == title]
    assert len(found) == 1, title
    return found[0]


def test_one_key_entry_per_teacher_and_per_method(figure):
    teachers = _legend(figure, plots.TEACHERS_KEY)
    assert [t.get_text() for t in teachers.get_texts()] == sorted(TEACHERS)
    assert [h.get_marker() for h in teachers.legend_handles] == list(TEACHER_MARKERS[:3])
    training = _legend(figure, plots.TRAINING_KEY)
    assert [t.get_text() for t in training.get_texts()] == ["labels only", *METHODS]


def test_each_student_wears_its_teachers_shape_in_every_panel(figure):
    marker = dict(zip(sorted(TEACHERS), TEACHER_MARKERS, strict=False))
    by_accuracy = {round(100 * p.accuracy, 6): p for p in _matrix()}
    panels = [ax for ax in figure.axes if ax.containers]
    assert len(panels) == 3  # latency, parameters, and the ofa-595 column spread out
    for ax in panels:
        drawn = 0
        for container in ax.containers:
            line = container.lines[0]
            p = by_accuracy[round(float(line.get_ydata()[0]), 6)]
            if p.kind != "label-only":
                assert line.get_marker() == marker[p.teacher], p.label
                drawn += 1
        assert drawn == 18 if ax is not panels[-1] else drawn == 15


def test_a_crowded_column_is_spread_out_by_teacher_and_names_never_overlap(figure):
    cost_panels = [ax for ax in figure.axes if ax.get_xscale() == "log"]
    column = next(ax for ax in figure.axes if ax.containers and ax.get_xscale() == "linear")
    ticks = [t.get_text() for t in column.get_xticklabels()]
    assert ticks == ["from autoformer-v2-t\nbest: kd 50.4", "from vgg19\nbest: kd 60.9",
                     "from visformer-s\nbest: kd 71.4"]
    text = plots.caption(_matrix())  # the page's caption says what the marks mean
    assert "its teacher's shape and its method's colour" in text and "Below, ofa-595: its column" in text
    renderer = figure.canvas.get_renderer()
    for ax in cost_panels:
        names = [t for t in ax.texts if t.get_text()]
        # Named: the three teachers and the column (its label-only row), not fifteen students.
        assert sorted(t.get_text() for t in names) == ["autoformer-v2-t", "ofa-595 (below)", "vgg19", "visformer-s"]
        boxes = [t.get_window_extent(renderer) for t in names]
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b)


def test_a_small_matrix_has_no_spread_panel_and_names_its_front():
    points = [Point("visformer-s", "teacher", 0.9, None, 28.7, 39.2, teacher="visformer-s"),
              Point("ofa-595", "label-only", 0.6, None, 6.6, 7.6, student="ofa-595"),
              Point("ofa-595, kd from visformer-s", "kd", 0.7, None, 6.6, 7.6, teacher="visformer-s",
                    student="ofa-595")]
    fig = plots.pareto_figure(points, "quick")
    try:
        panels = [ax for ax in fig.axes if ax.containers]
        assert len(panels) == 2
        assert {t.get_text() for t in panels[0].texts} == {"visformer-s", "ofa-595",
                                                            "ofa-595, kd from visformer-s"}
        assert "Below" not in plots.caption(points)
    finally:
        plt.close(fig)


def _cxr_reference_points(latency: bool = True) -> list[Point]:
    """The reference run's synthetic-cxr rows: two teachers 12 M parameters and 0.5 pp apart, seven students."""
    def ms(value: float) -> float | None:
        return value if latency else None

    points = [Point("autoformer-v2-t", "teacher", 0.813, (0.783, 0.843), ms(95.0), 27.51, teacher="autoformer-v2-t"),
              Point("visformer-s", "teacher", 0.808, (0.777, 0.840), ms(110.3), 39.21, teacher="visformer-s"),
              Point("ofa-595", "label-only", 0.754, (0.727, 0.779), ms(29.2), 7.6, student="ofa-595")]
    for teacher, method, acc in [("visformer-s", "fitnet", 0.818), ("visformer-s", "dkd", 0.798),
                                 ("autoformer-v2-t", "cat-kd", 0.797), ("autoformer-v2-t", "dkd", 0.748),
                                 ("autoformer-v2-t", "at", 0.73), ("visformer-s", "at", 0.702),
                                 ("visformer-s", "cat-kd", 0.568)]:
        points.append(Point(f"ofa-595, {method} from {teacher}", method, acc, (acc - 0.03, acc + 0.03), ms(29.2),
                            7.6, teacher=teacher, student="ofa-595"))
    return points


def test_names_of_neighbouring_teachers_placed_on_either_side_never_overlap():
    """Found on the reference page: one teacher's name went right, its neighbour's left, over it."""
    fig = plots.pareto_figure(_cxr_reference_points(), "synthetic-cxr")
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in (ax for ax in fig.axes if ax.get_xscale() == "log"):
            names = [t for t in ax.texts if t.get_text()]
            boxes = [Text.get_window_extent(t, renderer) for t in names]  # the words, not their leader lines
            for a, b in itertools.combinations(boxes, 2):
                assert not a.overlaps(b)
            marks = [ax.transData.transform((line.get_xdata()[0], line.get_ydata()[0]))
                     for line in (c.lines[0] for c in ax.containers)]
            for box, (x, y) in itertools.product(boxes, marks):  # and no name covers another row's mark
                assert not box.contains(x, y)
    finally:
        plt.close(fig)


def test_rows_not_timed_yet_still_show_in_the_parameters_panel():
    """A pool run times its models last: interrupted before that, the page had an empty plot (y from 19 to 21)."""
    fig = plots.pareto_figure(_cxr_reference_points(latency=False), "synthetic-cxr", chance=1 / 3)
    try:
        latency, params = (ax for ax in fig.axes if ax.get_xscale() == "log")
        low, high = params.get_ylim()
        assert low < 100 * 0.727 and high > 100 * 0.843  # every row and its CI inside the axes
        assert not latency.containers
        assert any("not timed yet" in t.get_text() for t in latency.texts)
    finally:
        plt.close(fig)


def test_names_of_two_teachers_near_the_top_are_stacked_downwards_and_never_overlap():
    """Found on the synthetic-histo page (teachers 95.1 and 97.7%, students 52-74%): names pushed up past the
    frame were clamped at its top, one on the other."""
    points = [Point("autoformer-v2-t", "teacher", 0.951, (0.94, 0.96), None, 27.51, teacher="autoformer-v2-t"),
              Point("visformer-s", "teacher", 0.977, (0.97, 0.985), None, 39.21, teacher="visformer-s"),
              Point("ofa-595", "label-only", 0.575, (0.56, 0.59), None, 7.6, student="ofa-595")]
    for k, (teacher, method) in enumerate(itertools.product(["autoformer-v2-t", "visformer-s"], METHODS)):
        acc = 0.52 + 0.022 * k
        points.append(Point(f"ofa-595, {method} from {teacher}", method, acc, (acc - 0.02, acc + 0.02), None, 7.6,
                            teacher=teacher, student="ofa-595"))
    fig = plots.pareto_figure(points, "synthetic-histo", chance=1 / 5)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        params = [ax for ax in fig.axes if ax.get_xscale() == "log" and ax.containers][0]
        names = [t for t in params.texts if t.get_text() in ("autoformer-v2-t", "visformer-s")]
        assert len(names) == 2
        a, b = (Text.get_window_extent(t, renderer) for t in names)
        assert not a.overlaps(b)
        frame = params.get_window_extent(renderer)
        assert all(frame.y0 <= box.y0 and box.y1 <= frame.y1 for box in (a, b))
    finally:
        plt.close(fig)


def test_stacked_names_clear_each_other_going_up_and_going_down():
    """The stacking rule alone: low points stack upwards; points near the top stack downwards, each one name's
    height below the one above, and stay in the frame."""
    low = plots.stack_names([((0.5, 0.7), 0.5, 0.30), ((0.5, 0.7), 0.51, 0.32)], [])
    assert low[0] == pytest.approx(0.30) and low[1] == pytest.approx(0.30 + plots.LABEL_GAP)
    high = plots.stack_names([((0.5, 0.7), 0.5, 0.92), ((0.5, 0.7), 0.6, 0.94)], [])
    assert high[1] == pytest.approx(0.94) and high[0] == pytest.approx(0.94 - plots.LABEL_GAP)
    apart = plots.stack_names([((0.1, 0.3), 0.2, 0.95), ((0.6, 0.8), 0.7, 0.96)], [])  # no shared span: unmoved
    assert apart == [pytest.approx(0.95), pytest.approx(0.96)]
